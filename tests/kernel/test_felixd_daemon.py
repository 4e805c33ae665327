"""tortie-felixd as a process against a real namespace, fed by a route feed the test serves: every
mode switch both ways, restart without churn, stale routes across a bgpd restart, drift repaired on a
netlink event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bgpd.feed_server import FeedServer
from lab.netns import Netns, NetnsSet
from proto.feed import FeedRoute
from runtime.control import call
from tests.conftest import require_root
from tests.kernel.felix_support import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BIN = Path(sys.executable).parent
HEAD = "apiVersion: projectcalico.org/v3\n"
NODES = {"worker-1": "10.30.0.206/24", "worker-2": "10.30.0.56/24", "worker-3": "10.30.1.66/24"}
BLOCKS = {"worker-1": "192.168.226.64/26", "worker-2": "192.168.133.192/26", "worker-3": "192.168.97.192/26"}
MODES = {  # name -> (ipipMode, vxlanMode)
    "direct": ("Never", "Never"),
    "vxlan": ("Never", "Always"),
    "vxlan-cross": ("Never", "CrossSubnet"),
    "ipip": ("Always", "Never"),
}


def cluster(mode: str) -> str:
    ipip, vxlan = MODES[mode]
    docs = [f"{HEAD}kind: Node\nmetadata: {{name: {n}}}\nspec: {{bgp: {{ipv4Address: {a}}}}}\n" for n, a in NODES.items()]
    docs.append(f"{HEAD}kind: IPPool\nmetadata: {{name: default-ipv4-ippool}}\n"
                f"spec: {{cidr: 192.168.0.0/16, ipipMode: {ipip}, vxlanMode: {vxlan}, natOutgoing: true}}\n")
    docs += [f"{HEAD}kind: BlockAffinity\nmetadata: {{name: {n}}}\nspec: {{node: {n}, cidr: {b}}}\n"
             for n, b in BLOCKS.items()]
    return "---\n".join(docs)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def feed_routes() -> list[FeedRoute]:
    return [FeedRoute(BLOCKS[n], NODES[n].split("/")[0], n) for n in ("worker-2", "worker-3")]


@dataclass
class Host:
    ns: Netns
    run_dir: Path
    config: Path
    tmp: Path
    nss: NetnsSet
    proc: subprocess.Popen[bytes] | None = None
    server: FeedServer | None = None
    routes: list[FeedRoute] | None = None

    def start(self, *extra: str) -> None:
        log = open(self.tmp / "felixd.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = self.nss.spawn(self.ns, str(BIN / "tortie-felixd"), "--config", str(self.config), "--node",
                                   "worker-1", "--run-dir", str(self.run_dir), "--resync-interval", "3600",
                                   "--metrics-port", "0", *extra, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0
        self.proc = None

    async def serve(self, routes: list[FeedRoute]) -> FeedServer:
        self.routes = list(routes)
        self.server = FeedServer(str(self.run_dir / "feed.sock"), lambda: list(self.routes or []))
        await self.server.start()
        return self.server

    def kernel(self) -> str:
        return self.ns.ip("route", "show").stdout

    def links(self) -> str:
        return self.ns.ip("-o", "link", "show").stdout



def status(h: Host) -> dict[str, Any]:
    return call(str(h.run_dir / "felixd.sock"), "status")  # type: ignore[no-any-return]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Host]:
    require_root()
    tmp = tmp_path_factory.mktemp("felixd")
    with NetnsSet(prefix="tfd") as nss:
        ns, gw = nss.add("host"), nss.add("gw")
        nss.veth(ns, "eth0", gw, "up0")
        ns.ip("addr", "add", "10.30.0.206/24", "dev", "eth0")
        gw.ip("addr", "add", "10.30.0.1/24", "dev", "up0")
        ns.ip("route", "add", "default", "via", "10.30.0.1")
        config = tmp / "cluster.yaml"
        config.write_text(cluster("vxlan"))
        h = Host(ns, tmp / "run", config, tmp, nss)
        h.run_dir.mkdir()
        await h.serve(feed_routes())
        h.start()
        try:
            await until(lambda: status(h)["feed_synced"], 30, "felixd synced",
                        lambda: (tmp / "felixd.log").read_text()[-3000:])
            yield h
        finally:
            if h.server is not None:
                await h.server.close()


def shape(h: Host, mode: str) -> bool:
    """The kernel looks like `mode` on worker-1, and nothing of any other mode is left."""
    routes, links = h.kernel(), h.links()
    w2, w3 = BLOCKS["worker-2"], BLOCKS["worker-3"]
    vx2, vx3 = f"{w2} via 192.168.133.192 dev vxlan.calico proto 80 onlink", \
        f"{w3} via 192.168.97.192 dev vxlan.calico proto 80 onlink"
    d2, d3 = f"{w2} via 10.30.0.56 dev eth0 proto 80", f"{w3} via 10.30.0.1 dev eth0 proto 80"
    has_vx = "vxlan.calico" in links
    if mode == "direct":
        return d2 in routes and d3 in routes and not has_vx
    if mode == "vxlan":
        return vx2 in routes and vx3 in routes and has_vx
    if mode == "vxlan-cross":
        return d2 in routes and vx3 in routes and has_vx and vx2 not in routes
    # ipip on a kernel without it: no tunnel routes and no VXLAN left; remote blocks are not routed
    return w2 not in routes and w3 not in routes and not has_vx and "blackhole 192.168.226.64/26" in routes


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in MODES for b in MODES if a != b])
async def test_mode_switch(host: Host, first: str, second: str) -> None:
    for mode in (first, second):
        write_atomic(host.config, cluster(mode))
        await until(lambda m=mode: shape(host, m), 30, f"kernel in {mode} shape",
                    lambda: host.kernel() + host.links())


async def test_restart_changes_nothing_in_the_kernel(host: Host) -> None:
    write_atomic(host.config, cluster("vxlan"))
    await until(lambda: shape(host, "vxlan"), 30, "vxlan shape")
    # a device that just came up still gets its IPv6 link-local address (DAD): let that settle first
    await until(lambda: "fe80" in host.ns.ip("-6", "addr", "show", "dev", "vxlan.calico").stdout
                and "tentative" not in host.ns.ip("-6", "addr", "show", "dev", "vxlan.calico").stdout,
                30, "vxlan.calico's link-local address settled")
    mon = subprocess.Popen(["ip", "-n", host.ns.name, "monitor", "route", "link", "neigh"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        await asyncio.to_thread(host.stop)
        host.start()
        await until(lambda: status(host)["ready"] and status(host)["feed_synced"], 30, "felixd back")
        # one more full pass while the monitor still listens
        await asyncio.to_thread(call, str(host.run_dir / "felixd.sock"), "resync")
        # proof that the monitor was listening: a change of our own must show up in its output
        host.ns.ip("route", "add", "10.99.0.0/24", "via", "10.30.0.1")
        await until(lambda: True, 1, "")
        host.ns.ip("route", "del", "10.99.0.0/24")
    finally:
        mon.send_signal(signal.SIGTERM)
        out, _ = mon.communicate(timeout=10)
    assert "10.99.0.0/24" in out, "ip monitor saw nothing: the check below would prove nothing"
    ours = [line for line in out.splitlines() if "192.168." in line or "vxlan.calico" in line]
    assert ours == [], "felixd changed the kernel on a restart over an unchanged kernel:\n" + "\n".join(ours)
    assert shape(host, "vxlan")


async def test_drift_is_repaired_on_the_netlink_event(host: Host) -> None:
    write_atomic(host.config, cluster("direct"))
    await until(lambda: shape(host, "direct"), 30, "direct shape")
    host.ns.ip("route", "del", BLOCKS["worker-2"])
    host.ns.ip("route", "replace", BLOCKS["worker-3"], "via", "10.30.0.99", "dev", "eth0", "proto", "80")
    # resync interval is an hour: only the netlink event can bring this back quickly
    await until(lambda: shape(host, "direct"), 15, "drift repaired", host.kernel)


async def test_device_drift_is_repaired_on_the_netlink_event(host: Host) -> None:
    """Someone else changing felixd's own device (its MTU, its address) is repaired by the event alone."""
    write_atomic(host.config, cluster("vxlan"))
    await until(lambda: shape(host, "vxlan"), 30, "vxlan shape")
    host.ns.ip("link", "set", "vxlan.calico", "mtu", "1400")
    await until(lambda: "mtu 1450" in host.ns.ip("link", "show", "vxlan.calico").stdout, 15, "MTU repaired")
    host.ns.ip("-4", "addr", "flush", "dev", "vxlan.calico")
    await until(lambda: "192.168.226.64/32" in host.ns.ip("-4", "addr", "show", "dev", "vxlan.calico").stdout, 15,
                "tunnel address repaired")
    assert shape(host, "vxlan")


async def test_bgpd_restart_keeps_routes_then_cleans_up(host: Host) -> None:
    write_atomic(host.config, cluster("direct"))
    await until(lambda: shape(host, "direct"), 30, "direct shape")
    assert host.server is not None
    await host.server.close()  # bgpd goes away
    await until(lambda: not status(host)["feed_connected"], 15, "feed down")
    assert shape(host, "direct"), "a route went away while bgpd was restarting"
    assert status(host)["stale"] == 2
    # bgpd comes back knowing only worker-2's block: the snapshot's end removes worker-3's
    await host.serve(feed_routes()[:1])
    await until(lambda: BLOCKS["worker-3"] not in host.kernel() and status(host)["stale"] == 0, 30,
                "stale route removed", host.kernel)
    assert f"{BLOCKS['worker-2']} via 10.30.0.56 dev eth0 proto 80" in host.kernel()
    # and a delta from the feed reaches the kernel
    host.server.publish({BLOCKS["worker-3"]: feed_routes()[1]})
    await until(lambda: shape(host, "direct"), 15, "delta applied", host.kernel)


async def test_stale_routes_expire_when_bgpd_does_not_return(host: Host) -> None:
    await asyncio.to_thread(host.stop)
    host.start("--stale-time", "2")
    await until(lambda: status(host)["feed_synced"], 30, "felixd synced")
    assert host.server is not None
    await host.server.close()
    await until(lambda: not status(host)["feed_connected"], 15, "feed down")
    t0 = time.monotonic()
    await until(lambda: BLOCKS["worker-2"] not in host.kernel(), 20, "stale routes removed", host.kernel)
    assert time.monotonic() - t0 >= 1.0  # kept for the stale time, not dropped at once
    assert "blackhole 192.168.226.64/26" in host.kernel()  # local state is not the feed's
    await host.serve(feed_routes())
