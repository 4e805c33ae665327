"""bgpd's feed server and felixd's feed client over a real Unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bgpd.feed_server import FeedServer
from felixd.feed_client import FeedClient
from felixd.feed_table import FeedTable
from proto import prefix as pf
from proto.feed import EndOfSnapshot, FeedDecoder, FeedRoute, RouteUpdate, SnapshotBegin, encode_frame
from proto.feed_wire import WireDecoder, WireFrame


def r(prefix: str, nh: str = "10.30.0.56", node: str | None = "worker-2") -> FeedRoute:
    return FeedRoute(prefix=prefix, next_hop=nh, node=node)


def P(text: str) -> bytes:  # a prefix, as felixd's tables key it
    return pf.parse(text)


def keys(*texts: str) -> set[bytes]:
    return {pf.parse(t) for t in texts}


def wire(*frames: object) -> list[WireFrame]:
    """Frames as felixd's decoder turns them out."""
    dec = WireDecoder()
    dec.receive_data(b"".join(encode_frame(f) for f in frames))  # type: ignore[arg-type]
    return dec.frames()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[set[bytes], bool]] = []

    def __call__(self, changed: dict[bytes, None], full: bool) -> None:
        self.calls.append((set(changed), full))


async def test_snapshot_then_deltas(tmp_path: Path) -> None:
    best = {p: r(p) for p in ("192.168.133.192/26", "192.168.97.192/26")}
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: list(best.values()))
    await server.start()
    rec = Recorder()
    client = FeedClient(server.path, rec)
    client.start()
    try:
        await until(lambda: client.table.synced)
        assert set(client.table.routes) == keys(*best)
        assert rec.calls[-1][1] is True  # the end of a snapshot asks for a full resync
        server.publish({"192.168.219.64/26": r("192.168.219.64/26", "10.30.0.10", "master"),
                        "192.168.97.192/26": None})
        await until(lambda: P("192.168.219.64/26") in client.table.routes)
        await until(lambda: P("192.168.97.192/26") not in client.table.routes)
        assert client.table.routes[P("192.168.219.64/26")] == pf.parse_address("10.30.0.10")
        assert rec.calls[-1] == (keys("192.168.219.64/26", "192.168.97.192/26"), False)
    finally:
        await client.close()
        await server.close()


async def test_slow_reader_gets_coalesced_changes(tmp_path: Path) -> None:
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: [])
    await server.start()
    reader, writer = await asyncio.open_unix_connection(server.path)
    try:
        await until(lambda: len(server.readers) == 1)
        # The reader is not reading: once its socket and the transport's buffer are full (bgpd writes
        # what they take at once), 50,000 changes to 10 prefixes pile up as at most 10 pending entries.
        for i in range(50_000):
            p = f"10.{i % 10}.0.0/24"
            server.publish({p: r(p, f"10.30.0.{(i % 200) + 1}")})
            if i % 500 == 0:
                await asyncio.sleep(0)
        assert server.lag <= 10
        decoder = FeedDecoder()
        frames: list[object] = []
        final = {f"10.{k}.0.0/24": f"10.30.0.{((49_990 + k) % 200) + 1}" for k in range(10)}
        latest: dict[str, str] = {}
        while latest != final:
            decoder.receive_data(await asyncio.wait_for(reader.read(1 << 16), 5))
            for f in decoder.frames():
                frames.append(f)
                if isinstance(f, RouteUpdate):
                    latest[f.route.prefix] = f.route.next_hop
        routes = [f for f in frames if isinstance(f, RouteUpdate)]
        assert len(routes) < 50_000  # coalesced: fewer frames than changes
        assert isinstance(frames[0], SnapshotBegin) and isinstance(frames[1], EndOfSnapshot)
        seqs = [f.seq for f in frames]  # type: ignore[attr-defined]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        writer.close()
        await server.close()


async def test_a_change_is_written_when_published_not_a_loop_turn_later(tmp_path: Path) -> None:
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: [])
    await server.start()
    reader, writer = await asyncio.open_unix_connection(server.path)
    try:
        decoder = FeedDecoder()
        frames: list[object] = []
        while not any(isinstance(f, EndOfSnapshot) for f in frames):
            decoder.receive_data(await asyncio.wait_for(reader.read(1 << 16), 5))
            frames += decoder.frames()
        await until(lambda: bool(server._streaming))
        server.publish({"10.1.0.0/24": r("10.1.0.0/24")})
        # written by publish() itself (bgpd's after-service hook): nothing waits for the writer's task,
        # which takes a few loop turns to wake while bgpd keeps reading UPDATEs
        assert server.lag == 0
        decoder.receive_data(await asyncio.wait_for(reader.read(1 << 16), 5))
        (frame,) = decoder.frames()
        assert isinstance(frame, RouteUpdate) and frame.route.prefix == "10.1.0.0/24"
    finally:
        writer.close()
        await server.close()


async def test_bgpd_restart_keeps_routes_stale_then_cleans_up(tmp_path: Path) -> None:
    path = str(tmp_path / "feed.sock")
    first = {p: r(p) for p in ("192.168.133.192/26", "192.168.97.192/26", "192.168.219.64/26")}
    server = FeedServer(path, lambda: list(first.values()))
    await server.start()
    rec = Recorder()
    client = FeedClient(path, rec, retry_min=0.01, retry_max=0.05)
    client.start()
    try:
        await until(lambda: client.table.synced and len(client.table.routes) == 3)
        await server.close()  # bgpd goes away
        await until(lambda: not client.connected)
        assert set(client.table.routes) == keys(*first)  # nothing removed
        assert client.table.stale == keys(*first)
        # bgpd comes back knowing two of the three routes: the end marker removes the third
        second = {p: first[p] for p in ("192.168.133.192/26", "192.168.219.64/26")}
        server = FeedServer(path, lambda: list(second.values()))
        await server.start()
        await until(lambda: client.connected and not client.table.stale and len(client.table.routes) == 2)
        assert set(client.table.routes) == keys(*second)
        # the end marker reported the removed route (with the refreshed ones) and asked for a resync
        assert any(full and P("192.168.97.192/26") in changed for changed, full in rec.calls[1:])
    finally:
        await client.close()
        await server.close()


def test_stale_routes_expire_after_the_restart_time() -> None:
    table = FeedTable(stale_time=120)
    changed: dict[bytes, None] = {}
    assert table.receive(wire(SnapshotBegin(1, 7), RouteUpdate(2, r("192.168.133.192/26")), EndOfSnapshot(3, 1)),
                         changed)
    table.disconnected(now=10)
    assert table.expire(now=129) == set()
    assert table.routes
    assert table.expire(now=130) == keys("192.168.133.192/26")
    assert not table.routes and table.stale_deadline is None


def test_withdraw_and_refresh_clear_staleness() -> None:
    from proto.feed import Withdraw

    table = FeedTable()
    a, b = "10.1.0.0/16", "10.2.0.0/16"
    table.receive(wire(RouteUpdate(1, r(a)), RouteUpdate(2, r(b))), {})
    table.disconnected(now=0)
    changed: dict[bytes, None] = {}
    assert not table.receive(wire(SnapshotBegin(1, 8), RouteUpdate(2, r(a))), changed)
    assert set(changed) == keys(a)  # same route, but it is no longer stale: felixd must know
    changed = {}
    assert not table.receive(wire(Withdraw(3, b)), changed)
    assert set(changed) == keys(b)
    changed = {}
    assert table.receive(wire(EndOfSnapshot(4, 1)), changed) and changed == {}
    assert set(table.routes) == keys(a)


def test_only_a_next_hop_change_is_a_change() -> None:
    """Local preference or AS-path length do not change the kernel route: no write for them."""
    table = FeedTable()
    changed: dict[bytes, None] = {}
    table.receive(wire(RouteUpdate(1, r("10.1.0.0/16"))), changed)
    assert set(changed) == keys("10.1.0.0/16")
    changed = {}
    table.receive(wire(RouteUpdate(2, FeedRoute("10.1.0.0/16", "10.30.0.56", "worker-2", local_pref=50))), changed)
    assert changed == {}
    table.receive(wire(RouteUpdate(3, r("10.1.0.0/16", nh="10.30.0.57"))), changed)
    assert set(changed) == keys("10.1.0.0/16")


async def test_several_readers(tmp_path: Path) -> None:
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: [r("192.168.133.192/26")])
    await server.start()
    clients = [FeedClient(server.path, Recorder()) for _ in range(3)]
    for c in clients:
        c.start()
    try:
        await until(lambda: all(c.table.synced for c in clients))
        server.publish({"192.168.133.192/26": None})
        await until(lambda: all(not c.table.routes for c in clients))
        assert len(server.readers) == 3
    finally:
        for c in clients:
            await c.close()
        await server.close()


async def test_readers_wait_for_a_whole_rib_before_their_snapshot(tmp_path: Path) -> None:
    """A restarting bgpd gates its snapshot: an early end marker would make felixd drop every route."""
    ready = asyncio.Event()
    best = {"192.168.133.192/26": r("192.168.133.192/26")}
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: list(best.values()), ready=ready)
    await server.start()
    rec = Recorder()
    client = FeedClient(server.path, rec)
    client.table.routes[P("192.168.97.192/26")] = pf.parse_address("10.30.0.56")  # kept from before the restart
    client.start()
    try:
        await until(lambda: client.connected and len(server.readers) == 1)
        server.publish({"192.168.219.64/26": r("192.168.219.64/26")})  # queued behind the snapshot
        for _ in range(20):  # the loop runs many times; still no snapshot and nothing removed
            await asyncio.sleep(0)
        assert not client.table.synced
        assert all(reader.seq == 1 for reader in server.readers)  # not a single frame sent yet
        assert P("192.168.97.192/26") in client.table.routes
        ready.set()
        await until(lambda: client.table.synced and P("192.168.219.64/26") in client.table.routes)
        assert P("192.168.97.192/26") not in client.table.routes
        assert P("192.168.133.192/26") in client.table.routes
    finally:
        await client.close()
        await server.close()


async def test_a_paused_client_changes_nothing_until_resumed(tmp_path: Path) -> None:
    """While felixd compares the kernel with its feed table (a full sync), the table must not change:
    bytes that arrive meanwhile wait, and are applied on resume."""
    server = FeedServer(str(tmp_path / "feed.sock"), lambda: [r("192.168.133.192/26")])
    await server.start()
    rec = Recorder()
    client = FeedClient(server.path, rec)
    client.start()
    try:
        await until(lambda: client.table.synced)
        client.resume.clear()
        server.publish({"192.168.97.192/26": r("192.168.97.192/26")})
        await until(lambda: server.lag == 0)  # written to the socket
        for _ in range(50):  # the loop runs many times: the frame is read, but not applied
            await asyncio.sleep(0)
        assert P("192.168.97.192/26") not in client.table.routes
        client.resume.set()
        await until(lambda: P("192.168.97.192/26") in client.table.routes)
        assert rec.calls[-1] == (keys("192.168.97.192/26"), False)
    finally:
        await client.close()
        await server.close()
