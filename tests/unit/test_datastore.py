"""The file datastore: revisions, atomic writes under a lock, concurrent writers, watch notifications."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from datastore import FileDatastore, WatchEvent, inotify, open_datastore
from datastore.filestore import revision_of
from datastore.ipam import IpamError, assign_block, free_blocks, pool_usage
from proto.resources import IPPool, Node, NotFoundError, ValidationError, load_model, load_resources
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
SEED = (ROOT / "configs" / "seed-cluster.yaml").read_text()
WAIT = 10.0  # seconds: an upper bound for a notification, never a sleep


def node(name: str, address: str) -> Node:
    import ipaddress
    return Node(name=name, ipv4_address=ipaddress.IPv4Interface(address))


@pytest.fixture
def store(tmp_path: Path) -> FileDatastore:
    return FileDatastore(tmp_path / "etc" / "cluster.yaml")


@pytest.fixture
def seeded(store: FileDatastore) -> FileDatastore:
    store.apply(load_resources(SEED, "seed").resources)
    return store


def test_apply_creates_the_file_and_bumps_revisions(store: FileDatastore) -> None:
    with pytest.raises(FileNotFoundError):
        store.load()
    assert store.load(missing_ok=True).resources == ()
    first = store.apply([node("a", "10.0.0.1/24")])
    assert first.revision == 1 and revision_of(store.path.read_text()) == 1
    second = store.apply([node("b", "10.0.0.2/24")])
    assert second.revision == 2 and [n.name for n in store.load().nodes] == ["a", "b"]
    assert store.apply([node("b", "10.0.0.2/24")]).revision == 2  # no change, no write
    assert store.delete([("Node", "a")]).revision == 3
    assert [n.name for n in store.load().nodes] == ["b"]


def test_failed_validation_writes_nothing(seeded: FileDatastore) -> None:
    before = seeded.path.read_text()
    bad = IPPool(name="other", cidr=__import__("ipaddress").ip_network("192.168.128.0/20"), block_size=26)
    with pytest.raises(ValidationError, match="overlaps IPPool default-ipv4-ippool"):
        seeded.apply([bad])
    with pytest.raises(NotFoundError):
        seeded.delete([("Node", "nope")])
    assert seeded.path.read_text() == before


def test_crash_mid_write_leaves_the_old_file(seeded: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
    before = seeded.path.read_text()

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        seeded.apply([node("new", "10.30.0.99/24")])
    monkeypatch.undo()
    assert seeded.path.read_text() == before
    assert sorted(p.name for p in seeded.path.parent.iterdir()) == ["cluster.yaml", "cluster.yaml.lock"]


def test_file_mode_is_kept(seeded: FileDatastore) -> None:
    os.chmod(seeded.path, 0o640)
    seeded.apply([node("new", "10.30.0.99/24")])
    assert seeded.path.stat().st_mode & 0o777 == 0o640


def test_invalid_file_is_reported_with_its_name(store: FileDatastore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(SEED.replace("ipipMode: Always", "ipipMode: Sometimes"))
    with pytest.raises(ValidationError) as info:
        store.load()
    assert str(info.value).startswith(f"{store.path}: document 6 (IPPool default-ipv4-ippool), line ")


def test_assign_block_takes_the_lowest_free_block(seeded: FileDatastore) -> None:
    import ipaddress
    first = assign_block(seeded, "master")
    assert str(first.cidr) == "192.168.0.0/26" and first.name == "master-192-168-0-0-26"
    assert str(assign_block(seeded, "worker-1").cidr) == "192.168.0.64/26"
    seeded.delete([("BlockAffinity", first.name)])
    assert str(assign_block(seeded, "worker-2").cidr) == "192.168.0.0/26"  # freed blocks are reused
    model = seeded.load()
    assert ipaddress.ip_network("192.168.0.0/26") in [b.cidr for b in model.blocks_for("worker-2")]
    usage = pool_usage(model)[0]
    assert (usage.total, usage.used, usage.free) == (1024, 6, 1018)
    with pytest.raises(NotFoundError):
        assign_block(seeded, "nope")
    with pytest.raises(NotFoundError):
        assign_block(seeded, "master", "nope")


def test_assign_block_respects_pool_state(store: FileDatastore) -> None:
    text = SEED.split("---\napiVersion: projectcalico.org/v3\nkind: BlockAffinity")[0]
    text = "\n---\n".join(d for d in text.split("\n---\n") if "name: default-ipv6-ippool" not in d)  # IPv4 only
    store.apply(load_resources(text.replace("cidr: 192.168.0.0/16", "cidr: 192.168.0.0/25"), "x").resources)
    assert str(assign_block(store, "master").cidr) == "192.168.0.0/26"
    assert str(assign_block(store, "master").cidr) == "192.168.0.64/26"
    with pytest.raises(IpamError, match="has no free /26 block"):
        assign_block(store, "master")
    pool = store.load().pool("default-ipv4-ippool")
    store.apply([__import__("dataclasses").replace(pool, disabled=True)])
    with pytest.raises(IpamError, match="disabled"):
        assign_block(store, "worker-1", "default-ipv4-ippool")
    with pytest.raises(IpamError, match="no enabled IPPool selects node worker-1"):
        assign_block(store, "worker-1")


def test_free_blocks_of_a_huge_ipv6_pool_are_lazy() -> None:
    model = load_model("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\n"
                       "spec: {cidr: 'fd00::/48'}\n")
    assert str(next(free_blocks(model, model.pool("v6")))) == "fd00::/122"


# --- watch ------------------------------------------------------------------------------------

BACKENDS = ["poll", pytest.param("inotify", marks=pytest.mark.skipif(not inotify.available(),
                                                                       reason="no inotify"))]


def write_by_hand(path: Path, text: str) -> None:
    """An editor's save: write a temporary file and rename it over the original."""
    tmp = path.with_name(".edit.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_delivers_new_model_and_keeps_last_good_on_error(seeded: FileDatastore, backend: str) -> None:
    with seeded.watch(backend=backend, poll_interval=0.02) as watch:
        assert watch.backend == backend and watch.current.revision == 1
        seeded.apply([node("worker-4", "10.30.1.67/24")])
        event = watch.get(timeout=WAIT)
        assert event.ok and event.model.revision == 2 and event.model.node("worker-4")

        good = seeded.path.read_text()
        write_by_hand(seeded.path, good.replace("ipipMode: Always", "ipipMode: Sometimes"))
        event = watch.get(timeout=WAIT)
        assert isinstance(event.error, ValidationError) and "spec.ipipMode: 'Sometimes'" in str(event.error)
        assert event.model.revision == 2 and event.model.pool("default-ipv4-ippool").ipip_mode == "Always"
        assert watch.current is event.model

        write_by_hand(seeded.path, good.replace("ipipMode: Always", "ipipMode: CrossSubnet"))
        event = watch.get(timeout=WAIT)
        assert event.ok and event.model.pool("default-ipv4-ippool").ipip_mode == "CrossSubnet"

        with open(seeded.path, "a") as f:  # an in-place edit (no rename) is seen too
            f.write("---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: w5}\n")
        event = watch.get(timeout=WAIT)
        assert event.ok and event.model.node("w5")

        seeded.path.unlink()
        event = watch.get(timeout=WAIT)
        assert isinstance(event.error, FileNotFoundError) and event.model.node("w5")


def test_watch_ignores_other_files_and_unchanged_rewrites(seeded: FileDatastore) -> None:
    with seeded.watch(backend="inotify" if inotify.available() else "poll", poll_interval=0.02) as watch:
        (seeded.path.parent / "other.yaml").write_text("x: 1\n")
        write_by_hand(seeded.path, seeded.path.read_text())  # same content: no event
        seeded.apply([node("worker-4", "10.30.1.67/24")])
        event = watch.get(timeout=WAIT)
        assert event.model.revision == 2  # the first event is the real change
        with pytest.raises(TimeoutError):
            watch.get(timeout=0.05)


def test_watch_callbacks_asyncio_and_check_now(seeded: FileDatastore) -> None:
    seen: list[WatchEvent] = []

    async def scenario() -> WatchEvent:
        with seeded.watch(poll_interval=0.02) as watch:
            watch.add_callback(seen.append)
            queue = watch.asyncio_queue()
            await asyncio.to_thread(seeded.apply, [node("worker-4", "10.30.1.67/24")])
            event = await asyncio.wait_for(queue.get(), WAIT)
            forced = watch.check_now()
            assert forced is not None and forced.ok and forced.model.revision == 2
            return event

    event = asyncio.run(scenario())
    assert event.model.revision == 2 and seen[0] is event


def test_an_asyncio_queue_takes_over_from_get_and_nothing_waits_for_get(seeded: FileDatastore) -> None:
    """A daemon reads its watch through an asyncio queue only. Events were also kept for `get`, which
    no daemon calls: each held a whole model, and a daemon grew by one model per reload for its
    life. What `get` had not read moves to the queue (in order); later events go to the queue only."""

    async def scenario() -> None:
        with seeded.watch(poll_interval=0.02) as watch:
            seeded.apply([node("worker-4", "10.30.1.67/24")])  # delivered before the queue exists
            await asyncio.to_thread(wait_for, lambda: watch.current.revision == 2, WAIT, "the first change")
            queue = watch.asyncio_queue()
            first = await asyncio.wait_for(queue.get(), WAIT)
            assert first.ok and first.model.revision == 2
            await asyncio.to_thread(seeded.apply, [node("worker-5", "10.30.1.68/24")])
            second = await asyncio.wait_for(queue.get(), WAIT)
            assert second.ok and second.model.node("worker-5")
            with pytest.raises(TimeoutError):  # nothing was kept for a `get`
                watch.get(timeout=0.05)

    asyncio.run(scenario())


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_from_an_earlier_load_delivers_a_write_made_before_it(seeded: FileDatastore, backend: str) -> None:
    """A daemon loads the model, starts up, then watches with that model: a write landing in between
    (the e2e lab applies a pool right after starting the daemons) reaches the daemon's callback. It
    was once lost: the watch took the file as it was at its own start for the model it was given."""
    loaded = seeded.load()
    FileDatastore(seeded.path).apply([node("worker-4", "10.30.1.67/24")])  # another process, meanwhile
    with seeded.watch(backend=backend, poll_interval=0.02, initial=loaded) as watch:
        assert watch.current is loaded
        seen: list[WatchEvent] = []
        watch.add_callback(seen.append)
        event = watch.get(timeout=WAIT)
        assert event.ok and event.model.revision == 2 and event.model.node("worker-4")
        assert seen == [event] and watch.current is event.model


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_works_with_descriptors_past_1024(seeded: FileDatastore, backend: str) -> None:
    """A reflector's thousand sessions and BFD sockets push the watch's descriptors past select()'s
    limit; the watch thread once failed there on every turn (and spun, logging)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    null = os.open(os.devnull, os.O_RDONLY)
    held = [os.dup(null) for _ in range(1100)]
    try:
        with seeded.watch(backend=backend, poll_interval=0.02) as watch:
            seeded.apply([node("worker-4", "10.30.1.67/24")])
            event = watch.get(timeout=WAIT)
            assert event.ok and event.model.revision == 2
    finally:
        for fd in (*held, null):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_from_an_unchanged_load_delivers_nothing(seeded: FileDatastore, backend: str) -> None:
    loaded = seeded.load()
    with seeded.watch(backend=backend, poll_interval=0.02, initial=loaded) as watch:
        watch.add_callback(lambda _event: None)
        with pytest.raises(TimeoutError):
            watch.get(timeout=0.2)
        seeded.apply([node("worker-4", "10.30.1.67/24")])
        assert watch.get(timeout=WAIT).model.revision == 2


def test_inotify_binding(tmp_path: Path) -> None:
    if not inotify.available():
        pytest.skip("no inotify in this libc")
    ino = inotify.Inotify()
    try:
        ino.add_watch(tmp_path, inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO)
        assert list(ino.read()) == []
        (tmp_path / "a.yaml").write_text("x")
        import select
        assert select.select([ino], [], [], WAIT)[0]
        events = list(ino.read())
        assert [(e.name, bool(e.mask & inotify.IN_CLOSE_WRITE)) for e in events] == [("a.yaml", True)]
        with pytest.raises(OSError):
            ino.add_watch(tmp_path / "missing", inotify.IN_CLOSE_WRITE)
    finally:
        ino.close()


def test_open_datastore_is_a_file_store(tmp_path: Path) -> None:
    store = open_datastore(tmp_path / "c.yaml")
    assert isinstance(store, FileDatastore) and store.name == str(tmp_path / "c.yaml")


def test_watch_warns_once_per_resource_and_field(seeded: FileDatastore, caplog: pytest.LogCaptureFixture) -> None:
    """A Node address without its prefix length warns when it appears, not again on every reload."""
    import logging

    caplog.set_level(logging.WARNING, logger="tortie.datastore")
    with seeded.watch(poll_interval=0.02) as watch:
        seeded.apply([node("worker-4", "10.30.1.67/32")])
        assert watch.get(timeout=WAIT).ok
        seeded.apply([node("worker-5", "10.30.1.68/24")])
        assert watch.get(timeout=WAIT).ok
    warned = [r.getMessage() for r in caplog.records if "worker-4" in r.getMessage()]
    assert len(warned) == 1 and "spec.bgp.ipv4Address: 10.30.1.67/32 is a /32" in warned[0]
