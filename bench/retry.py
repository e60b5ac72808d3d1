"""Retry wrappers on a call that succeeds the first time: overhead per call."""

from __future__ import annotations

import asyncio

import stamina
import tenacity

from bench._harness import Row, Section, Target, Timed, interleaved, timed_calls
from bounded.retry import Retry

ATTEMPTS = 5


async def ok() -> int:
    return 1


async def hand_written() -> int:
    for attempt in range(ATTEMPTS):
        try:
            return await ok()
        except Exception:
            if attempt == ATTEMPTS - 1:
                raise
            # The hand-written loop the peers are measured against, jitter-less on purpose.
            await asyncio.sleep(0.5 * 2**attempt)  # bounded: ignore[BND008]
    raise AssertionError("unreachable")


async def tenacity_async_retrying() -> int:
    # A fresh AsyncRetrying per call: a shared one is not safe under concurrency.
    async for attempt in tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(initial=0.5, max=30),
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=True,
    ):
        with attempt:
            return await ok()
    raise AssertionError("unreachable")


@tenacity.retry(
    stop=tenacity.stop_after_attempt(ATTEMPTS),
    wait=tenacity.wait_exponential_jitter(initial=0.5, max=30),
    retry=tenacity.retry_if_exception_type(Exception),
    reraise=True,
)
async def tenacity_decorated() -> int:
    return await ok()


async def stamina_context() -> int:
    async for attempt in stamina.retry_context(on=Exception, attempts=ATTEMPTS):
        with attempt:
            return await ok()
    raise AssertionError("unreachable")


@stamina.retry(on=Exception, attempts=ATTEMPTS)
async def stamina_decorated() -> int:
    return await ok()


def run() -> list[Section]:
    return [asyncio.run(_run())]


async def _run() -> Section:
    floor = "bare await (floor)"
    cases: dict[str, Timed] = {
        floor: timed_calls(ok),
        "hand-written try/except loop": timed_calls(hand_written),
    }
    r = Retry(on=Exception, attempts=ATTEMPTS)
    cases["bounded.Retry(on=Exception).call(fn)"] = timed_calls(lambda: r.call(ok))
    cases["@bounded.Retry(on=Exception)"] = timed_calls(r(ok))
    cases |= {
        "tenacity.AsyncRetrying (async for)": timed_calls(tenacity_async_retrying),
        "@tenacity.retry": timed_calls(tenacity_decorated),
        "stamina.retry_context (async for)": timed_calls(stamina_context),
        "@stamina.retry": timed_calls(stamina_decorated),
    }
    ns = await interleaved(cases)
    base = ns[floor]
    rows = [
        Row(name, v / 1000, extra={"overhead us": f"{(v - base) / 1000:.2f}"})
        for name, v in ns.items()
    ]
    targets = []
    for k in ("bounded.Retry(on=Exception).call(fn)", "@bounded.Retry(on=Exception)"):
        over = (ns[k] - base) / 1000
        targets.append(Target(f"{k}: <= 1 us overhead per call", over <= 1.0, f"{over:.2f} us"))
    return Section(
        title=f"Retry on a call that succeeds first time (attempts={ATTEMPTS})",
        unit="us/call",
        reference=None,
        rows=rows,
        targets=targets,
        columns=["overhead us"],
        notes=["overhead = time per call minus the bare await of the same coroutine function."],
        value_format="{:.2f}",
    )
