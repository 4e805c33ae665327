"""Concurrent writers on the file datastore: many processes released at once, nothing lost, no block
handed out twice.

The processes are forked (see `run_together`): a fresh `python -c` per writer pays for the interpreter
and its imports, which on a shared two-core machine dwarfs the test; forked children are real processes
all the same, with their own file descriptors and flocks. test_ctl.py runs real `tortiectl` processes.
"""

from __future__ import annotations

import ipaddress
import itertools
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datastore import FileDatastore
from datastore.ipam import assign_block
from proto.resources import Node, load_model, load_resources

SEED = (Path(__file__).resolve().parents[2] / "configs" / "seed-cluster.yaml").read_text()


def run_together(targets: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Run every target in its own forked process, released at once; returns their results in order.

    A target that raises fails the call with the child's exception text.
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(targets))
    results: multiprocessing.Queue[tuple[int, bool, Any]] = ctx.Queue()

    def child(index: int, target: Callable[[], Any]) -> None:
        barrier.wait(timeout=timeout)
        try:
            results.put((index, True, target()))
        except BaseException as exc:
            results.put((index, False, f"{type(exc).__name__}: {exc}"))

    procs = [ctx.Process(target=child, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    for p in procs:
        p.start()
    collected: dict[int, Any] = {}
    try:
        for _ in procs:
            index, ok, value = results.get(timeout=timeout)
            if not ok:
                raise AssertionError(f"process {index} failed: {value}")
            collected[index] = value
    finally:
        for p in procs:
            p.join(timeout=timeout)
            if p.is_alive():
                p.kill()
    return [collected[i] for i in range(len(targets))]


@pytest.fixture
def seeded(tmp_path: Path) -> FileDatastore:
    store = FileDatastore(tmp_path / "cluster.yaml")
    store.apply(load_resources(SEED, "seed").resources)
    return store


def test_concurrent_apply_from_many_processes_loses_nothing(seeded: FileDatastore) -> None:
    procs, per_proc = 10, 2

    def writer(i: int) -> Callable[[], int]:
        def run() -> int:
            store = FileDatastore(seeded.path)
            for j in range(per_proc):
                store.apply([Node(name=f"n{i}-{j}", ipv4_address=ipaddress.IPv4Interface(f"10.9.{i}.{j + 1}/24"))])
            return per_proc
        return run

    assert run_together([writer(i) for i in range(procs)]) == [per_proc] * procs
    model = seeded.load()
    expected = {f"n{i}-{j}" for i in range(procs) for j in range(per_proc)}
    assert expected <= {x.name for x in model.nodes}
    assert model.revision == 1 + procs * per_proc


def test_concurrent_block_assignment_never_hands_out_a_block_twice(seeded: FileDatastore) -> None:
    procs, per_proc = 10, 2
    nodes = ["master", "worker-1", "worker-2", "worker-3"]

    def allocator(node: str) -> Callable[[], list[str]]:
        def run() -> list[str]:
            store = FileDatastore(seeded.path)
            return [str(assign_block(store, node).cidr) for _ in range(per_proc)]
        return run

    handed_out = list(itertools.chain.from_iterable(run_together([allocator(nodes[i % 4]) for i in range(procs)])))
    assert len(handed_out) == len(set(handed_out)) == procs * per_proc
    model = seeded.load()
    cidrs = [b.cidr for b in model.blocks]
    seed_blocks = len(load_model(SEED).blocks)  # the seed's IPv4 and IPv6 blocks
    assert len(cidrs) == seed_blocks + procs * per_proc and len(set(cidrs)) == len(cidrs)
    assert {str(c) for c in cidrs} >= set(handed_out)
    # exactly the lowest blocks of the pool were taken, none skipped (the seed's blocks lie higher)
    seed = {b.cidr for b in load_model(SEED).blocks}
    lowest = set(itertools.islice(model.pool("default-ipv4-ippool").blocks(), procs * per_proc))
    assert set(cidrs) - seed == lowest


def test_a_failing_child_fails_the_run() -> None:
    def boom() -> None:
        raise ValueError("boom")
    with pytest.raises(AssertionError, match="process 1 failed: ValueError: boom"):
        run_together([lambda: 1, boom])


def test_without_the_lock_updates_are_lost(seeded: FileDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control experiment: two writers that both read before either writes lose an update when the
    lock is taken away, which is exactly what the tests above would catch."""
    import contextlib

    monkeypatch.setattr(FileDatastore, "locked", lambda self: contextlib.nullcontext())
    both_read = multiprocessing.get_context("fork").Barrier(2)

    def writer(i: int) -> Callable[[], int]:
        def run() -> int:
            def change(model):  # type: ignore[no-untyped-def]
                both_read.wait(timeout=30)  # the other writer has read the same revision by now
                return model.apply([Node(name=f"racer-{i}", ipv4_address=ipaddress.IPv4Interface(f"10.8.0.{i + 1}/24"))])
            return FileDatastore(seeded.path).transact(change).revision
        return run

    revisions = run_together([writer(0), writer(1)])
    assert revisions == [2, 2]
    names = {n.name for n in seeded.load().nodes}
    assert len({"racer-0", "racer-1"} & names) == 1  # one update lost
