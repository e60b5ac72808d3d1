"""What both navigator builds share: the request, the prompts, the query, the calls of
the fan-out and synthesis stages, and the answer.

Nothing here handles concurrency: the builds differ only in how they call the provider
and the database with these pieces (the calls take the build's SDK client).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ASPECTS",
    "CATEGORIES",
    "CHAT_MODEL",
    "CLAUDE_MODEL",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_MODEL",
    "KNN_SQL",
    "TOP_K",
    "Answer",
    "Chunk",
    "Request",
    "Stopwatch",
    "category_of",
    "classifier_messages",
    "normalise",
    "research",
    "subquestion_messages",
    "subquestions",
    "synthesis_messages",
    "synthesise",
    "vector_literal",
]

CHAT_MODEL = "gpt-mock"
CLAUDE_MODEL = "claude-mock"
EMBEDDING_MODEL = "embedding-mock"
EMBEDDING_DIMENSIONS = 64
TOP_K = 4
CLASSIFIER_MAX_TOKENS = 8
SUBANSWER_MAX_TOKENS = 48
SYNTHESIS_MAX_TOKENS = 96
MAX_QUESTION_CHARS = 2_000

CATEGORIES = ("coverage", "claims", "pharmacy", "providers", "appeals", "billing")
ASPECTS = (
    "eligibility",
    "deductible",
    "copay",
    "prior authorization",
    "network",
    "referrals",
    "formulary",
    "appeal deadline",
    "out-of-pocket maximum",
    "coordination of benefits",
    "exclusions",
    "documentation",
)

# k nearest chunks by cosine distance; $1 is the query vector in pgvector's text form.
KNN_SQL = (
    "SELECT id, plan, section, body FROM navigator_chunks "
    "ORDER BY embedding <=> $1::vector LIMIT $2"
)


@dataclass(frozen=True, slots=True)
class Request:
    """A validated question and how many sub-questions to research (3-12)."""

    question: str
    subquestions: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrieved plan-document chunk."""

    id: int
    plan: str
    section: str
    body: str


@dataclass(slots=True)
class Answer:
    """The navigator's answer, and seconds spent per stage."""

    category: str
    chunk_ids: tuple[int, ...]
    sub_answers: tuple[str, ...]
    strategy: str
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        category: str,
        chunks: Sequence[Chunk],
        sub_answers: Sequence[str],
        strategy: str,
        timings: dict[str, float],
    ) -> Answer:
        """The answer made of the stages' results."""
        return cls(category, tuple(c.id for c in chunks), tuple(sub_answers), strategy, timings)

    def content(self) -> tuple[Any, ...]:
        """Everything but the timings: equal for equal questions whatever the build."""
        return (self.category, self.chunk_ids, self.sub_answers, self.strategy)


class Stopwatch:
    """Accumulates wall-clock seconds per stage name."""

    __slots__ = ("timings",)

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block under `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start


def normalise(question: str, subquestions: int) -> Request:
    """Validate and normalise a question (whitespace collapsed); ValueError when invalid."""
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, got {type(question).__name__}")
    text = " ".join(question.split())
    if not text:
        raise ValueError("question must not be empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValueError(f"question must be at most {MAX_QUESTION_CHARS} characters")
    if isinstance(subquestions, bool) or not isinstance(subquestions, int):
        raise ValueError(f"subquestions must be an int, got {subquestions!r}")
    if not 3 <= subquestions <= len(ASPECTS):
        raise ValueError(f"subquestions must be in [3, {len(ASPECTS)}], got {subquestions}")
    return Request(text, subquestions)


def classifier_messages(request: Request) -> list[dict[str, str]]:
    """The classifier's chat messages."""
    return [
        {"role": "system", "content": "Classify the member question: " + ", ".join(CATEGORIES)},
        {"role": "user", "content": request.question},
    ]


def category_of(reply: str) -> str:
    """The category a classifier reply stands for (stable for the same reply)."""
    digest = hashlib.sha256(reply.encode()).digest()
    return CATEGORIES[digest[0] % len(CATEGORIES)]


def subquestions(request: Request, category: str) -> list[str]:
    """The sub-questions to research, one per aspect."""
    return [
        f"For a {category} question, what does the plan say about {aspect}? "
        f"Member asks: {request.question}"
        for aspect in ASPECTS[: request.subquestions]
    ]


def _context(chunks: Sequence[Chunk]) -> str:
    return "\n".join(f"[{c.id}] {c.plan} / {c.section}: {c.body}" for c in chunks)


def subquestion_messages(question: str, chunks: Sequence[Chunk]) -> list[dict[str, str]]:
    """The chat messages researching one sub-question over the retrieved chunks."""
    return [
        {"role": "system", "content": "Answer from these plan excerpts only.\n" + _context(chunks)},
        {"role": "user", "content": question},
    ]


def synthesis_messages(
    request: Request, category: str, chunks: Sequence[Chunk], sub_answers: Sequence[str]
) -> tuple[str, list[dict[str, str]]]:
    """The Anthropic messages call of the strategy synthesis: (system, messages)."""
    notes = "\n".join(f"- {a}" for a in sub_answers)
    system = f"You are a patient navigator. Category: {category}.\n{_context(chunks)}"
    user = f"Question: {request.question}\nResearch notes:\n{notes}\nPropose a strategy."
    return system, [{"role": "user", "content": user}]


def vector_literal(vector: Sequence[float]) -> str:
    """A vector in pgvector's text form, so no codec needs registering."""
    return "[" + ",".join(f"{v:.6f}" for v in vector) + "]"


async def research(client: Any, question: str, chunks: Sequence[Chunk]) -> str:
    """One sub-question's chat completion; `client` is an ``openai.AsyncOpenAI``."""
    reply = await client.chat.completions.create(
        model=CHAT_MODEL,
        messages=subquestion_messages(question, chunks),
        max_tokens=SUBANSWER_MAX_TOKENS,
    )
    return str(reply.choices[0].message.content or "")


async def synthesise(
    client: Any,
    request: Request,
    category: str,
    chunks: Sequence[Chunk],
    sub_answers: Sequence[str],
) -> str:
    """The strategy: one messages call; `client` is an ``anthropic.AsyncAnthropic``."""
    system, messages = synthesis_messages(request, category, chunks, sub_answers)
    reply = await client.messages.create(
        model=CLAUDE_MODEL, system=system, messages=messages, max_tokens=SYNTHESIS_MAX_TOKENS
    )
    return "".join(getattr(block, "text", "") for block in reply.content)
