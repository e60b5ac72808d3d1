"""TaskManager (strong references, failure accounting, shutdown, limit) and to_thread."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import weakref
from types import TracebackType
from typing import Any

import pytest

import bounded
from bounded.errors import BulkheadFull
from bounded.tasks import TaskManager, TaskManagerStats, to_thread


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


# ---------------------------------------------------------------- TaskManager


@pytest.mark.looptime
async def test_spawn_keeps_a_strong_reference() -> None:
    tm = TaskManager("refs")
    done: list[str] = []

    async def job() -> None:
        await asyncio.sleep(5)
        done.append("ok")

    ref = weakref.ref(tm.spawn(job(), name="job"))
    gc.collect()
    assert ref() is not None
    assert len(tm) == 1
    await asyncio.sleep(6)
    assert done == ["ok"]
    assert len(tm) == 0  # removed once done
    gc.collect()
    assert ref() is None
    assert tm.stats() == TaskManagerStats("refs", 0, None, 1, 0)


async def test_failures_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    tm = TaskManager("workers")

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("broken pipe")

    async def cancelled() -> None:
        await asyncio.sleep(10)

    with caplog.at_level(logging.ERROR, logger="bounded.tasks"):
        t1 = tm.spawn(fail(), name="refresh-cache")
        t2 = tm.spawn(cancelled(), name="waiter")
        await asyncio.sleep(0)
        t2.cancel()
        await asyncio.wait([t1, t2])
    assert tm.stats().failed_total == 1  # cancellation is not a failure
    assert tm.stats().spawned_total == 2
    records = [r for r in caplog.records if r.name == "bounded.tasks"]
    assert len(records) == 1
    assert "refresh-cache" in records[0].getMessage()
    assert "workers" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ValueError


@pytest.mark.looptime
async def test_shutdown_cancels_and_reports_stragglers(caplog: pytest.LogCaptureFixture) -> None:
    tm = TaskManager("agents")
    seen: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            seen.append("polite")
            raise

    give_up = False

    async def stubborn() -> None:
        while not give_up:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                seen.append("stubborn")  # swallows it and keeps going

    before = other_tasks()
    tm.spawn(polite(), name="polite")
    straggler = tm.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(1)
    with caplog.at_level(logging.WARNING, logger="bounded.tasks"):
        left = await tm.shutdown(timeout=2.0)
    assert left == [straggler]
    assert sorted(seen) == ["polite", "stubborn"]
    assert asyncio.get_running_loop().time() == pytest.approx(3.0)
    assert any(
        r.levelno == logging.WARNING and "'stubborn'" in r.getMessage() for r in caplog.records
    )
    assert other_tasks() - before == {straggler}  # only the reported straggler remains
    assert len(tm) == 1
    with pytest.raises(RuntimeError, match="shut down"):
        tm.spawn(polite())
    give_up = True  # the test cleans up what the manager could not
    straggler.cancel()
    await straggler
    assert len(tm) == 0


async def test_shutdown_with_nothing_running_and_context_manager() -> None:
    before = other_tasks()
    async with TaskManager() as tm:
        assert tm.name.startswith("taskmanager-")
        ev = asyncio.Event()
        t = tm.spawn(ev.wait())
        await asyncio.sleep(0)
    assert t.cancelled()
    assert tm.closed
    assert other_tasks() == before
    assert await TaskManager().shutdown() == []


def test_spawn_after_shutdown_closes_coroutine() -> None:
    async def main() -> None:
        tm = TaskManager()
        await tm.shutdown()

        async def job() -> None:
            pass

        coro = job()
        with pytest.raises(RuntimeError, match="shut down"):
            tm.spawn(coro)
        assert coro.cr_frame is None  # closed, so no "never awaited" warning

    asyncio.run(main())
    gc.collect()


@pytest.mark.looptime
async def test_limit_spawn_raises_and_spawn_wait_queues_fifo() -> None:
    tm = TaskManager("limited", limit=2)
    order: list[int] = []

    async def job(i: int, d: float) -> None:
        await asyncio.sleep(d)
        order.append(i)

    tm.spawn(job(1, 5))
    tm.spawn(job(2, 10))
    coro = job(99, 0)
    with pytest.raises(BulkheadFull) as err:
        tm.spawn(coro)
    assert err.value.resource == "limited"
    assert err.value.retry_after is None
    assert coro.cr_frame is None

    loop = asyncio.get_running_loop()
    waits = [asyncio.create_task(tm.spawn_wait(job(i, 1))) for i in (3, 4, 5)]
    await asyncio.sleep(0)
    assert len(tm) == 2
    started = await asyncio.gather(*waits)
    # 3 gets the slot freed at t=5, 4 the one freed at t=6 (3 done), 5 at t=7.
    assert loop.time() == pytest.approx(7.0)
    assert len(tm) <= 2
    await asyncio.wait(started)
    await asyncio.sleep(10 - loop.time())
    assert order == [1, 3, 4, 5, 2]
    assert tm.stats().spawned_total == 5
    await tm.shutdown()


@pytest.mark.looptime
async def test_spawn_wait_cancelled_waiter_passes_room_on() -> None:
    tm = TaskManager(limit=1)
    ev = asyncio.Event()
    tm.spawn(ev.wait())
    w1 = asyncio.create_task(tm.spawn_wait(asyncio.sleep(1)))
    w2 = asyncio.create_task(tm.spawn_wait(asyncio.sleep(1)))
    await asyncio.sleep(0)
    ev.set()
    while len(tm):  # the running task ends; its room is handed to w1 ...
        await asyncio.sleep(0)
    assert not w1.done()
    w1.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await w1
    t2 = await asyncio.wait_for(w2, 10)  # the room went on to w2 instead of leaking
    assert len(tm) == 1
    await t2
    assert len(tm) == 0
    # And shutdown fails waiters still queued.
    tm.spawn(asyncio.sleep(5))
    w3 = asyncio.create_task(tm.spawn_wait(asyncio.sleep(1)))
    await asyncio.sleep(0)
    await tm.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await w3


def test_validation() -> None:
    with pytest.raises(ValueError, match="limit"):
        TaskManager(limit=0)

    async def main() -> None:
        with pytest.raises(ValueError, match="timeout"):
            await TaskManager().shutdown(timeout=-1)

    asyncio.run(main())


def test_lazy_exports() -> None:
    assert bounded.TaskManager is TaskManager
    assert bounded.to_thread is to_thread


# ---------------------------------------------------------------- to_thread


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_to_thread_runs_in_a_thread_with_context() -> None:
    var.set("copied")

    def work(a: int, *, b: int) -> tuple[str, str, int]:
        return threading.current_thread().name, var.get(), a + b

    name, value, total = await to_thread(work, 1, b=2)
    assert name != threading.current_thread().name
    assert value == "copied"
    assert total == 3
    name, value, total = await to_thread(work, 3, b=4, limiter=asyncio.Semaphore(1))
    assert (value, total) == ("copied", 7)


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def exit(self) -> None:
        with self.lock:
            self.now -= 1


async def test_to_thread_bounded_by_limiter() -> None:
    gauge = Gauge()
    sem = asyncio.Semaphore(3)

    def work(i: int) -> int:
        gauge.enter()
        try:
            threading.Event().wait(0.01)
            return i
        finally:
            gauge.exit()

    out = await asyncio.gather(*(to_thread(work, i, limiter=sem) for i in range(20)))
    assert out == list(range(20))
    assert gauge.max == 3


async def test_to_thread_exception_releases_limiter() -> None:
    sem = asyncio.Semaphore(1)

    def boom() -> None:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        await to_thread(boom, limiter=sem)
    assert not sem.locked()


class ExitOnly:
    """A limiter with no synchronous release(): only the async context manager protocol."""

    def __init__(self) -> None:
        self.sem = asyncio.Semaphore(1)
        self.exits = 0

    async def __aenter__(self) -> None:
        await self.sem.acquire()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exits += 1
        self.sem.release()


async def _wait_until(cond: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("kind", ["semaphore", "exit-only", "bulkhead"])
async def test_cancelled_to_thread_keeps_slot_until_thread_ends(kind: str) -> None:
    limiter: Any
    if kind == "semaphore":
        limiter = asyncio.Semaphore(1)
    elif kind == "exit-only":
        limiter = ExitOnly()
    else:
        bulkhead = pytest.importorskip("bounded.bulkhead")
        limiter = bulkhead.Bulkhead(1)
    gauge = Gauge()
    release_first = threading.Event()
    started: list[str] = []

    def work(tag: str, gate: threading.Event | None) -> str:
        gauge.enter()
        started.append(tag)
        try:
            if gate is not None:
                assert gate.wait(5)
            return tag
        finally:
            gauge.exit()

    first = asyncio.create_task(to_thread(work, "first", release_first, limiter=limiter))
    await _wait_until(lambda: started == ["first"])
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first  # the caller is released at once ...
    second = asyncio.create_task(to_thread(work, "second", None, limiter=limiter))
    await asyncio.sleep(0.05)
    assert started == ["first"]  # ... but the slot is not: the second thread must wait
    assert not second.done()
    release_first.set()
    assert await asyncio.wait_for(second, 5) == "second"
    assert started == ["first", "second"]
    assert gauge.max == 1
    if kind == "exit-only":
        assert limiter.exits == 2


async def test_to_thread_cancelled_before_its_thread_starts_never_runs() -> None:
    sem = asyncio.Semaphore(1)
    ran: list[int] = []
    gate = threading.Event()
    loop = asyncio.get_running_loop()
    # Fill the default executor so the next call queues inside it.
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    try:
        blocker = loop.run_in_executor(None, gate.wait, 5)
        task = asyncio.create_task(to_thread(ran.append, 1, limiter=sem))
        await asyncio.sleep(0.02)
        assert sem.locked()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not sem.locked()  # released at once: its thread had not started
        gate.set()
        await blocker
        await asyncio.sleep(0.02)
        assert ran == []
    finally:
        gate.set()
        executor.shutdown(wait=True)


# -------------------------------------------------------------------- waiting for tasks


@pytest.mark.looptime
async def test_wait_returns_when_every_task_is_done_including_late_spawns() -> None:
    tm = TaskManager()
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(3)
        done.append("child")

    async def parent() -> None:
        await asyncio.sleep(1)
        tm.spawn(child())
        done.append("parent")

    tm.spawn(parent())
    loop = asyncio.get_running_loop()
    start = loop.time()
    await tm.wait()
    assert loop.time() - start == pytest.approx(4)
    assert done == ["parent", "child"]
    assert not tm.closed  # waiting does not shut it down
    await tm.shutdown()


@pytest.mark.looptime
async def test_default_exit_cancels_unfinished_tasks() -> None:
    finished: list[int] = []

    async def work() -> None:
        await asyncio.sleep(5)
        finished.append(1)

    async with TaskManager() as tm:
        assert tm.on_exit == "cancel"
        task = tm.spawn(work())
    assert task.cancelled()
    assert finished == []


@pytest.mark.looptime
async def test_on_exit_wait_behaves_like_a_task_group() -> None:
    finished: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(n)
        finished.append(n)

    loop = asyncio.get_running_loop()
    start = loop.time()
    async with TaskManager(on_exit="wait") as tm:
        for n in (2, 1, 3):
            tm.spawn(work(n))
    assert loop.time() - start == pytest.approx(3)
    assert finished == [1, 2, 3]
    assert tm.closed


@pytest.mark.looptime
async def test_on_exit_wait_cancels_when_the_block_raises() -> None:
    async def work() -> None:
        await asyncio.sleep(5)

    spawned: list[asyncio.Task[None]] = []

    async def body() -> None:
        async with TaskManager(on_exit="wait") as tm:
            spawned.append(tm.spawn(work()))
            raise KeyError("body failed")

    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(KeyError):
        await body()
    assert spawned[0].cancelled()
    assert loop.time() - start == pytest.approx(0)


@pytest.mark.looptime
async def test_on_exit_wait_cancelled_while_waiting_cancels_the_tasks() -> None:
    async def work() -> None:
        await asyncio.sleep(50)

    inner: list[asyncio.Task[None]] = []

    async def owner() -> None:
        async with TaskManager(on_exit="wait") as tm:
            inner.append(tm.spawn(work()))

    outer = asyncio.create_task(owner())
    await asyncio.sleep(1)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner[0].cancelled()


def test_on_exit_is_validated() -> None:
    with pytest.raises(ValueError, match="on_exit"):
        TaskManager(on_exit="later")  # type: ignore[arg-type]
