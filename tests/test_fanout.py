"""bounded.gather / map / stream: order, bound, laziness, failure and cancellation cleanup."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bounded
from bounded import fanout


class Probe:
    """Counts concurrent calls and records what happened to each item."""

    def __init__(self) -> None:
        self.running = 0
        self.max_running = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def call(self, i: int, delay: float = 0.0, fail: bool = False, yields: int = 0) -> int:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.append(i)
        try:
            if delay:
                await asyncio.sleep(delay)
            for _ in range(yields):
                await asyncio.sleep(0)
            if fail:
                raise ValueError(i)
            return i * 10
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise
        finally:
            self.running -= 1
            self.finished.append(i)


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


# ---------------------------------------------------------------- gather


@pytest.mark.looptime
async def test_gather_input_order_and_limit() -> None:
    p = Probe()
    delays = [5, 1, 4, 2, 3, 1, 2, 5, 1, 1]
    loop = asyncio.get_running_loop()
    out = await bounded.gather(*(p.call(i, d) for i, d in enumerate(delays)), limit=3)
    assert out == [i * 10 for i in range(len(delays))]
    assert p.max_running == 3
    # 25 s of work on 3 lanes, greedily packed in input order.
    assert loop.time() == pytest.approx(10.0)


async def test_gather_empty_and_fewer_than_limit() -> None:
    assert await bounded.gather(limit=5) == []
    p = Probe()
    assert await bounded.gather(p.call(1), p.call(2), limit=100) == [10, 20]


@pytest.mark.looptime
async def test_gather_first_error_cancels_running_and_closes_unstarted() -> None:
    p = Probe()
    before = other_tasks()
    coros = [p.call(i, delay=1 if i == 1 else 10, fail=i == 1) for i in range(10)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="1"):
            await bounded.gather(*coros, limit=3)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert sorted(p.started) == [0, 1, 2]  # only the first `limit` ever started
    assert sorted(p.cancelled) == [0, 2]
    assert p.running == 0
    for c in coros:
        assert c.cr_frame is None  # finished or closed, none left suspended
    assert other_tasks() == before
    assert asyncio.get_running_loop().time() == pytest.approx(1.0)


@pytest.mark.looptime
async def test_gather_return_exceptions_in_place() -> None:
    p = Probe()
    out = await bounded.gather(
        *(p.call(i, delay=1, fail=i % 3 == 0) for i in range(7)),
        limit=2,
        return_exceptions=True,
    )
    assert [type(x) for x in out] == [
        ValueError,
        int,
        int,
        ValueError,
        int,
        int,
        ValueError,
    ]
    assert out[1] == 10
    assert p.cancelled == []


@pytest.mark.looptime
async def test_gather_caller_cancellation_cleans_up() -> None:
    p = Probe()
    before = other_tasks()
    coros = [p.call(i, delay=10) for i in range(6)]
    task = asyncio.create_task(bounded.gather(*coros, limit=2, return_exceptions=True))
    await asyncio.sleep(1)
    assert p.running == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # never swallowed, not even with return_exceptions=True
    assert sorted(p.cancelled) == [0, 1]
    assert p.started == [0, 1]
    assert all(c.cr_frame is None for c in coros)
    assert other_tasks() == before


@pytest.mark.looptime
async def test_gather_waits_for_slow_cancellation_even_if_cancelled_again() -> None:
    done: list[str] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(5)  # cleanup that takes a while
            done.append("cleanup")
            raise

    before = other_tasks()
    task = asyncio.create_task(bounded.gather(stubborn(), stubborn(), limit=2))
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["cleanup", "cleanup"]
    assert asyncio.get_running_loop().time() == pytest.approx(6.0)
    assert other_tasks() == before


@pytest.mark.looptime
async def test_gather_cancels_tasks_passed_in() -> None:
    p = Probe()
    running = [asyncio.create_task(p.call(i, delay=10)) for i in range(3)]

    async def boom() -> int:
        await asyncio.sleep(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await bounded.gather(boom(), *running, limit=2)
    assert all(t.cancelled() for t in running)
    assert sorted(p.cancelled) == [0, 1, 2]


@pytest.mark.looptime
async def test_gather_task_passed_in_failing_early_fails_at_once() -> None:
    p = Probe()

    async def boom() -> int:
        await asyncio.sleep(1)
        raise KeyError("early")

    slow = p.call(0, delay=10)
    failing = asyncio.create_task(boom())
    with pytest.raises(KeyError):
        await bounded.gather(slow, failing, limit=1)  # no worker ever awaits `failing`
    assert asyncio.get_running_loop().time() == pytest.approx(1.0)
    assert p.cancelled == [0]


async def test_gather_child_cancelled_error_is_a_failure() -> None:
    async def self_cancel() -> int:
        raise asyncio.CancelledError

    p = Probe()
    with pytest.raises(asyncio.CancelledError):
        await bounded.gather(self_cancel(), p.call(1, yields=3), limit=2)
    out = await bounded.gather(self_cancel(), p.call(2), limit=2, return_exceptions=True)
    assert isinstance(out[0], asyncio.CancelledError)
    assert out[1] == 20


def test_gather_limit_validation_names_limit_and_closes_coroutines() -> None:
    async def main() -> None:
        p = Probe()
        coros = [p.call(1), p.call(2)]
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="limit"):
                await bounded.gather(*coros, limit=bad)
        assert all(c.cr_frame is None for c in coros)
        assert p.started == []
        with pytest.raises(ValueError, match="limit"):
            await bounded.map(p.call, [1], limit=0)
        with pytest.raises(ValueError, match="limit"):
            bounded.stream(p.call, [1], limit=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        gc.collect()


# ---------------------------------------------------------------- map


@pytest.mark.looptime
async def test_map_order_and_limit() -> None:
    p = Probe()
    delays = {i: (i * 7) % 5 + 1 for i in range(20)}
    out = await bounded.map(lambda i: p.call(i, delays[i]), range(20), limit=4)
    assert out == [i * 10 for i in range(20)]
    assert p.max_running == 4


async def test_map_endless_generator_is_consumed_lazily() -> None:
    limit, k = 5, 37
    pulled = 0
    completed = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        i = 0
        while True:
            pulled += 1
            assert pulled - completed <= limit  # never more than `limit` taken ahead
            yield i
            i += 1

    async def fn(i: int) -> int:
        nonlocal completed
        await asyncio.sleep(0)
        if i == k:
            raise RuntimeError("stop")
        completed += 1
        return i

    before = other_tasks()
    with pytest.raises(RuntimeError, match="stop"):
        await bounded.map(fn, endless(), limit=limit)
    # Items finish out of order, so the bound is on what is in flight when it stops:
    # the failed one and at most `limit - 1` others, cancelled.
    assert k < pulled <= completed + limit
    assert other_tasks() == before


async def test_map_endless_async_generator_is_consumed_lazily() -> None:
    limit, k = 4, 25
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal pulled
        i = 0
        while True:
            await asyncio.sleep(0)
            pulled += 1
            yield i
            i += 1

    async def fn(i: int) -> int:
        await asyncio.sleep(0)
        if i == k:
            raise RuntimeError("stop")
        return i

    gen = endless()
    with pytest.raises(RuntimeError, match="stop"):
        await bounded.map(fn, gen, limit=limit)
    assert k < pulled <= k + limit
    await gen.aclose()


@pytest.mark.looptime
async def test_map_async_iterable_order_and_limit() -> None:
    async def items() -> AsyncIterator[int]:
        for i in range(12):
            await asyncio.sleep(0.5)
            yield i

    p = Probe()
    out = await bounded.map(lambda i: p.call(i, delay=(12 - i)), items(), limit=3)
    assert out == [i * 10 for i in range(12)]
    assert p.max_running == 3


async def test_map_return_exceptions_and_iterator_errors() -> None:
    p = Probe()
    out = await bounded.map(
        lambda i: p.call(i, yields=i % 2, fail=i == 2), range(4), limit=2, return_exceptions=True
    )
    assert out[:2] == [0, 10]
    assert isinstance(out[2], ValueError)
    assert out[3] == 30

    def broken() -> Iterator[int]:
        yield 1
        raise OSError("source failed")

    p = Probe()
    with pytest.raises(OSError, match="source failed"):
        await bounded.map(lambda i: p.call(i, delay=1), broken(), limit=3)
    assert p.cancelled == [1]


@pytest.mark.looptime
async def test_map_caller_cancellation() -> None:
    p = Probe()
    before = other_tasks()
    task = asyncio.create_task(bounded.map(lambda i: p.call(i, delay=5), range(100), limit=3))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(p.cancelled) == [0, 1, 2]
    assert p.started == [0, 1, 2]
    assert other_tasks() == before


async def test_map_few_items_start_few_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    created = 0
    real_spawn = fanout._Pool.spawn

    def counting_spawn(self: fanout._Pool) -> None:
        nonlocal created
        before = self.started
        real_spawn(self)
        created += self.started - before

    monkeypatch.setattr(fanout._Pool, "spawn", counting_spawn)
    p = Probe()
    assert await bounded.map(lambda i: p.call(i, yields=1), [1, 2], limit=1000) == [10, 20]
    assert created == 3  # one per item, plus one that finds the input exhausted


# ---------------------------------------------------------------- stream


@pytest.mark.looptime
async def test_stream_yields_as_completed() -> None:
    loop = asyncio.get_running_loop()
    delays = [3.0, 1.0, 2.0, 0.5]
    seen: list[tuple[int, float]] = []
    p = Probe()
    async with bounded.stream(lambda i: p.call(i, delays[i]), range(4), limit=4) as results:
        async for r in results:
            seen.append((r, loop.time()))
    assert seen == [(30, 0.5), (10, 1.0), (20, 2.0), (0, 3.0)]


@pytest.mark.looptime
async def test_stream_ordered() -> None:
    delays = [3.0, 1.0, 2.0, 0.5, 0.1, 4.0]
    p = Probe()
    async with bounded.stream(
        lambda i: p.call(i, delays[i]), range(6), limit=3, ordered=True
    ) as results:
        out = [r async for r in results]
    assert out == [0, 10, 20, 30, 40, 50]
    assert p.max_running <= 3


@pytest.mark.looptime
@pytest.mark.parametrize("ordered", [True, False])
async def test_stream_window_bounded_with_slow_first_item(ordered: bool) -> None:
    limit = 4
    pulled = 0
    yielded = 0
    worst = 0
    pulled_when_first_done = 0

    def items() -> Iterator[int]:
        nonlocal pulled, worst
        for i in range(50):
            pulled += 1
            worst = max(worst, pulled - yielded)  # in flight + buffered
            yield i

    async def fn(i: int) -> int:
        nonlocal pulled_when_first_done
        await asyncio.sleep(100 if i == 0 else 1)
        if i == 0:
            pulled_when_first_done = pulled
        return i

    out: list[int] = []
    async with bounded.stream(fn, items(), limit=limit, ordered=ordered) as results:
        async for r in results:
            yielded += 1
            out.append(r)
            await asyncio.sleep(0.5)  # a slow consumer too
    assert worst == 2 * limit  # the window: `limit` running and as many buffered
    assert sorted(out) == list(range(50))
    if ordered:
        assert out == list(range(50))
        # Item 0 holds up the window: nothing beyond the first 2 * limit items is taken
        # before it is done.
        assert pulled_when_first_done == 2 * limit
    else:
        # Unordered, the slow item only takes one lane; the rest flow past it.
        assert pulled_when_first_done == 50
        assert out[-1] == 0


@pytest.mark.looptime
async def test_stream_leaving_early_cancels_in_flight() -> None:
    p = Probe()
    before = other_tasks()
    async with bounded.stream(lambda i: p.call(i, delay=1 + i), range(1000), limit=5) as results:
        async for r in results:
            assert r == 0
            break
    assert p.running == 0
    # The worker that finished item 0 took item 5 before the consumer ran.
    assert p.started == [0, 1, 2, 3, 4, 5]
    assert sorted(p.cancelled) == [1, 2, 3, 4, 5]
    assert other_tasks() == before


@pytest.mark.looptime
async def test_stream_exception_in_body_cancels_in_flight() -> None:
    p = Probe()
    before = other_tasks()
    with pytest.raises(LookupError):  # noqa: PT012
        async with bounded.stream(lambda i: p.call(i, delay=1 + i), range(10), limit=3) as results:
            async for _ in results:
                raise LookupError
    assert sorted(p.cancelled) == [1, 2, 3]
    assert other_tasks() == before


@pytest.mark.looptime
async def test_stream_fn_error_propagates_and_cancels_rest() -> None:
    p = Probe()
    before = other_tasks()
    got: list[int] = []
    with pytest.raises(ValueError, match="3"):  # noqa: PT012
        async with bounded.stream(
            lambda i: p.call(i, delay=i, fail=i == 3), range(1, 20), limit=3
        ) as results:
            async for r in results:
                got.append(r)
    assert got == [10, 20]
    assert sorted(p.cancelled) == [4, 5]
    assert other_tasks() == before


@pytest.mark.looptime
async def test_stream_return_exceptions_and_async_input() -> None:
    async def items() -> AsyncIterator[int]:
        for i in range(6):
            yield i

    p = Probe()
    async with bounded.stream(
        lambda i: p.call(i, delay=1, fail=i == 2), items(), limit=2, return_exceptions=True
    ) as results:
        out = [r async for r in results]
    assert len(out) == 6
    assert sum(isinstance(r, ValueError) for r in out) == 1
    assert sorted(r for r in out if isinstance(r, int)) == [0, 10, 30, 40, 50]


@pytest.mark.looptime
async def test_stream_consumer_cancelled() -> None:
    p = Probe()
    before = other_tasks()

    async def consume() -> None:
        async with bounded.stream(lambda i: p.call(i, delay=10), range(10), limit=3) as results:
            async for _ in results:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(p.cancelled) == [0, 1, 2]
    assert other_tasks() == before


async def test_stream_must_be_entered() -> None:
    s = bounded.stream(Probe().call, [1], limit=1)
    with pytest.raises(RuntimeError, match="async with"):
        await s.__anext__()
    async with s as results:
        assert [r async for r in results] == [10]
    with pytest.raises(RuntimeError, match="once"):
        async with s:
            pass


# ---------------------------------------------------------------- property


Item = tuple[int, bool]  # (yields before finishing, fails?)


async def _check_run(kind: str, items: list[Item], limit: int, return_exceptions: bool) -> None:
    p = Probe()
    before = other_tasks()

    def call(i: int) -> Coroutine[Any, Any, int]:
        yields, fail = items[i]
        return p.call(i, yields=yields, fail=fail)

    expected_fail = not return_exceptions and any(f for _, f in items)
    out: list[Any] = []
    raised: BaseException | None = None
    coros: list[Coroutine[Any, Any, int]] = []
    try:
        if kind == "gather":
            coros = [call(i) for i in range(len(items))]
            out = await bounded.gather(*coros, limit=limit, return_exceptions=return_exceptions)
        elif kind in ("map", "map-iter"):
            # A range is sized (result list allocated up front), an iterator is not.
            source = range(len(items)) if kind == "map" else iter(range(len(items)))
            out = await bounded.map(call, source, limit=limit, return_exceptions=return_exceptions)
        else:
            async with bounded.stream(
                call,
                range(len(items)),
                limit=limit,
                ordered=True,
                return_exceptions=return_exceptions,
            ) as results:
                out = [r async for r in results]
    except ValueError as exc:
        raised = exc

    assert p.max_running <= limit
    assert p.running == 0
    assert other_tasks() == before
    assert all(c.cr_frame is None for c in coros)
    assert sorted(p.finished) == sorted(p.started)
    if expected_fail:
        assert raised is not None
        assert items[raised.args[0]][1]
    else:
        assert raised is None
        assert len(out) == len(items)
        for i, r in enumerate(out):
            if items[i][1]:
                assert isinstance(r, ValueError)
                assert r.args == (i,)
            else:
                assert r == i * 10


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["gather", "map", "map-iter", "stream"]),
    items=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 9).map(lambda x: x == 0)), max_size=30
    ),
    limit=st.integers(1, 8),
    return_exceptions=st.booleans(),
)
def test_property_bound_order_and_cleanup(
    kind: str, items: list[Item], limit: int, return_exceptions: bool
) -> None:
    asyncio.run(_check_run(kind, items, limit, return_exceptions))


async def _cancel_item_two(x: int) -> int:
    if x == 2:
        raise asyncio.CancelledError  # the item's own cancellation, not the caller's
    await asyncio.sleep(0)
    return x * 10


async def test_map_and_stream_return_an_items_own_cancellation_as_its_result() -> None:
    out = await bounded.map(_cancel_item_two, range(4), limit=2, return_exceptions=True)
    assert [r for i, r in enumerate(out) if i != 2] == [0, 10, 30]
    assert isinstance(out[2], asyncio.CancelledError)
    async with bounded.stream(
        _cancel_item_two, range(4), limit=2, ordered=True, return_exceptions=True
    ) as results:
        streamed = [r async for r in results]
    assert isinstance(streamed[2], asyncio.CancelledError)
    assert streamed[:2] + streamed[3:] == [0, 10, 30]


@pytest.mark.looptime
async def test_map_with_return_exceptions_still_propagates_the_callers_cancellation() -> None:
    started = asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(10)
        return x

    task = asyncio.create_task(bounded.map(slow, range(5), limit=2, return_exceptions=True))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- leaving early, quietly


class LoopErrors:
    """Collects what the loop's exception handler and the unraisable hook receive."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.reports.append(f"{context.get('message')}: {context.get('exception')!r}")

    def unraisable(self, info: Any) -> None:
        self.reports.append(f"unraisable: {info.exc_value!r}")


async def _run_quietly(scenario: Callable[[], Awaitable[None]]) -> list[str]:
    """Run `scenario`, then collect garbage: what the loop or the hook reported."""
    errors = LoopErrors()
    loop = asyncio.get_running_loop()
    old_handler, old_hook = loop.get_exception_handler(), sys.unraisablehook
    loop.set_exception_handler(errors.handler)
    sys.unraisablehook = errors.unraisable
    try:
        await scenario()
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(old_handler)
        sys.unraisablehook = old_hook
    return errors.reports


async def _ten(x: int) -> int:
    await asyncio.sleep(0)
    return x * 10


async def _fail_at_one(x: int) -> int:
    await asyncio.sleep(0)
    if x == 1:
        raise ValueError(x)
    return x


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3])
@pytest.mark.parametrize("take", [1, 2, 5])
@pytest.mark.parametrize("pause", [0, 4])
async def test_stream_break_leaves_no_unretrieved_exception(
    ordered: bool, limit: int, take: int, pause: int
) -> None:
    """Issue 8 item 10: `break` logged "Task exception was never retrieved" (deque.remove).

    It took a worker handed a permit and another one parked, both cancelled on exit: a
    consumer that pauses lets the window fill so that workers park.
    """
    before = other_tasks()

    async def scenario() -> None:
        async with bounded.stream(_ten, range(20), limit=limit, ordered=ordered) as results:
            n = 0
            async for _ in results:
                n += 1
                if n == take:
                    break
                for _ in range(pause):
                    await asyncio.sleep(0)

    assert await _run_quietly(scenario) == []
    assert other_tasks() == before


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3, 8])
async def test_stream_fn_error_leaves_no_unretrieved_exception(ordered: bool, limit: int) -> None:
    async def consume() -> None:
        async with bounded.stream(_fail_at_one, range(20), limit=limit, ordered=ordered) as rs:
            async for _ in rs:
                pass

    async def scenario() -> None:
        with pytest.raises(ValueError, match="1"):
            await consume()

    assert await _run_quietly(scenario) == []


async def test_errors_after_the_first_are_retrieved_not_logged() -> None:
    """A second failure while the first one cancels the rest is dropped quietly, as by gather."""

    async def fails_twice(x: int) -> int:
        try:
            await asyncio.sleep(0 if x == 0 else 1)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        raise ValueError(x)

    async def consume() -> None:
        async with bounded.stream(fails_twice, range(4), limit=4) as results:
            async for _ in results:
                pass

    async def scenario() -> None:
        with pytest.raises(ValueError, match="0"):
            await bounded.map(fails_twice, range(4), limit=4)
        with pytest.raises(ValueError, match="0"):
            await bounded.gather(*(fails_twice(i) for i in range(4)), limit=4)
        with pytest.raises(ValueError, match="0"):
            await consume()

    assert await _run_quietly(scenario) == []


async def test_gather_retrieves_errors_of_tasks_it_cancelled() -> None:
    """A task passed in that fails while being cancelled is not logged as never retrieved."""

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("first")

    async def bad_cleanup() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    async def scenario() -> None:
        for order in (0, 1):
            tasks = [asyncio.ensure_future(fails()), asyncio.ensure_future(bad_cleanup())]
            with pytest.raises(ValueError, match="first"):
                await bounded.gather(*(tasks if order == 0 else tasks[::-1]), limit=1)
            assert all(t.done() for t in tasks)
            del tasks

    assert await _run_quietly(scenario) == []


async def _stream_window(yields: list[int], limit: int, pauses: list[int], ordered: bool) -> int:
    """The most items taken and not yet yielded at any time during a consumed stream."""
    pulled = yielded = worst = 0

    def items() -> Iterator[int]:
        nonlocal pulled, worst
        for i in range(len(yields)):
            pulled += 1
            worst = max(worst, pulled - yielded)
            yield i

    async def fn(i: int) -> int:
        for _ in range(yields[i]):
            await asyncio.sleep(0)
        return i

    out = []
    async with bounded.stream(fn, items(), limit=limit, ordered=ordered) as results:
        async for r in results:
            yielded += 1
            out.append(r)
            for _ in range(pauses[len(out) % len(pauses)]):
                await asyncio.sleep(0)
    assert sorted(out) == list(range(len(yields)))
    if ordered:
        assert out == list(range(len(yields)))
    return worst


@settings(max_examples=60, deadline=None)
@given(
    yields=st.lists(st.integers(0, 5), max_size=40),
    limit=st.integers(1, 6),
    pauses=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    ordered=st.booleans(),
)
def test_property_stream_window_is_at_most_twice_the_limit(
    yields: list[int], limit: int, pauses: list[int], ordered: bool
) -> None:
    assert asyncio.run(_stream_window(yields, limit, pauses, ordered)) <= 2 * limit
