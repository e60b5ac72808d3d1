"""The mock provider's models: rate-limit buckets, capacity gate, latency and replies."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque

__all__ = ["MODELS", "CapacityGate", "TokenBucket", "make_reply"]


class TokenBucket:
    """A bucket of `limit` units refilled continuously over `window` seconds.

    `remaining` is what may be taken now; `reset` the seconds until the bucket is full
    again, the meaning OpenAI and Anthropic give their reset headers.
    """

    __slots__ = ("_last", "_tokens", "limit", "window")

    def __init__(self, limit: int, window: float, now: float) -> None:
        self.limit = limit
        self.window = window
        self._tokens = float(limit)
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(
                float(self.limit), self._tokens + (now - self._last) * self.limit / self.window
            )
            self._last = now

    def available(self, now: float) -> float:
        """Units that may be taken at `now`."""
        self._refill(now)
        return self._tokens

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` units are available (0 if they are now)."""
        self._refill(now)
        missing = cost - self._tokens
        return 0.0 if missing <= 0 else missing * self.window / self.limit

    def take(self, cost: float, now: float) -> None:
        """Remove `cost` units (callers check `wait` first)."""
        self._refill(now)
        self._tokens -= cost

    def give_back(self, amount: float, now: float) -> None:
        """Return unused units, never above `limit`."""
        self._refill(now)
        self._tokens = min(float(self.limit), self._tokens + amount)

    def remaining(self, now: float) -> int:
        """Whole units available now (never negative)."""
        return max(0, int(self.available(now)))

    def reset(self, now: float) -> float:
        """Seconds until the bucket is full."""
        self._refill(now)
        return max(0.0, (self.limit - self._tokens) * self.window / self.limit)


class CapacityGate:
    """At most `limit` requests in service; the rest wait FIFO, up to `max_queue`."""

    __slots__ = ("_waiters", "in_service", "limit", "max_queue", "peak_in_service")

    def __init__(self, limit: int | None, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.in_service = 0
        self.peak_in_service = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def _enter(self) -> None:
        self.in_service += 1
        self.peak_in_service = max(self.peak_in_service, self.in_service)

    async def acquire(self) -> bool:
        """Take a slot, waiting if needed; False when the queue is full (overloaded)."""
        if self.limit is None or (self.in_service < self.limit and not self._waiters):
            self._enter()
            return True
        if len(self._waiters) >= self.max_queue:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted, then cancelled: pass the slot on
            else:
                self._waiters.remove(fut)
            raise
        return True

    def release(self) -> None:
        """Free a slot and admit waiters while there is room."""
        self.in_service -= 1
        self.wake()

    def wake(self) -> None:
        """Admit waiters while there is room (also after `limit` grew)."""
        while self._waiters and (self.limit is None or self.in_service < self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self._enter()
                fut.set_result(None)


# Every word is at most 4 characters, so each counts as exactly one token.
#: The model names ``GET /v1/models`` lists (any name is accepted in requests).
MODELS = ("mock-model", "gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small")

_VOCAB = [
    "the",
    "a",
    "and",
    "to",
    "of",
    "in",
    "is",
    "it",
    "on",
    "at",
    "by",
    "as",
    "or",
    "if",
    "so",
    "we",
    "you",
    "can",
    "will",
    "not",
    "more",
    "less",
    "each",
    "all",
    "rate",
    "pool",
    "slot",
    "wait",
    "task",
    "loop",
    "time",
    "call",
    "try",
    "cap",
    "fair",
    "fast",
    "slow",
    "data",
    "work",
    "flow",
    "load",
    "safe",
    "open",
    "done",
    "ok",
    "yes",
    "mock",
    "word",
    "text",
    "lots",
    "few",
    "one",
    "two",
    "four",
    "five",
    "six",
    "ten",
    "next",
    "last",
    "best",
    "good",
]


def make_reply(
    seed: int, model: str, prompt: str, max_tokens: int, fixed_tokens: int | None = None
) -> tuple[str, int, bool]:
    """A deterministic reply to `prompt`: (text, output tokens, cut short by max_tokens).

    The same seed, model and prompt always give the same text. Its natural length is
    `fixed_tokens`, or 8-47 tokens derived from the prompt.
    """
    digest = hashlib.sha256(f"{seed}\x00{model}\x00{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    natural = fixed_tokens if fixed_tokens is not None else 8 + digest[8] % 40
    n = max(0, min(natural, max_tokens))
    return " ".join(rng.choice(_VOCAB) for _ in range(n)), n, natural > max_tokens
