"""Invariants of the transport's parsing: any body, any chunking of a stream."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from hypothesis import given
from hypothesis import strategies as st

from bounded.llm import ProviderLimits, request_cost
from bounded.llm.transport import _SettlingStream

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "messages",
        "input",
        "instructions",
        "system",
        "max_tokens",
        "max_output_tokens",
        "max_completion_tokens",
        "stream",
        "content",
        "text",
    ]
)
BODIES = st.dictionaries(KEYS, JSON, max_size=6) | JSON
PATHS = st.sampled_from(
    ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/embeddings", "/v1/models"]
)


@given(body=BODIES, path=PATHS)
def test_request_cost_never_raises_and_is_never_negative(body: Any, path: str) -> None:
    cost = request_cost("POST", path, body)
    if cost is not None:
        assert cost[0] >= 0
        assert cost[1] >= 0


def _events() -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"content": "w "}}]}] * 5
    events.append({**chunk, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


class _Chunks(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(_events())), max_size=30))
async def test_stream_usage_is_found_however_the_bytes_are_split(cuts: list[int]) -> None:
    data = _events()
    points = sorted({0, len(data), *cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    limits = ProviderLimits(tpm=10_000, name="p")
    reservation = await limits.acquire(7, 500)
    stream = _SettlingStream(_Chunks(chunks), reservation)
    passed = b"".join([chunk async for chunk in stream])
    assert passed == data  # the stream goes through unchanged
    assert reservation.settled
    assert limits.limiters["tokens"].stats().available == 10_000 - 12
