"""The synthetic corpus of plan-document chunks, and its loading into PostgreSQL + pgvector.

The chunks are generated deterministically from a seed; their embeddings come from the
provider's ``/v1/embeddings`` endpoint, so retrieval compares vectors of one model.
"""

from __future__ import annotations

import random
from typing import Any

from bounded.db import DatabasePool
from bounded.navigator.workflow import (
    ASPECTS,
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MODEL,
    Chunk,
    vector_literal,
)

__all__ = ["CORPUS_SIZE", "generate", "has_pgvector", "load"]

CORPUS_SIZE = 3_000
_BATCH = 500
_PLANS = tuple(
    f"{tier} {kind} plan"
    for tier in ("Bronze", "Silver", "Gold", "Platinum", "Basic", "Select")
    for kind in ("HMO", "PPO", "EPO", "POS", "HDHP")
)
_WORDS = (
    "member",
    "pays",
    "covers",
    "requires",
    "within",
    "days",
    "after",
    "before",
    "network",
    "provider",
    "claim",
    "form",
    "visit",
    "specialist",
    "generic",
    "brand",
    "tier",
    "annual",
    "limit",
    "waived",
    "submit",
    "notice",
    "denial",
    "review",
    "emergency",
    "urgent",
    "care",
    "hospital",
    "therapy",
    "supply",
    "mail",
    "pharmacy",
    "written",
    "approval",
)


def generate(size: int = CORPUS_SIZE, seed: int = 0) -> list[Chunk]:
    """`size` chunks: plans x sections, bodies drawn from a fixed vocabulary."""
    rng = random.Random(seed)
    chunks = []
    for i in range(size):
        plan = _PLANS[i % len(_PLANS)]
        section = ASPECTS[(i // len(_PLANS)) % len(ASPECTS)]
        words = " ".join(rng.choice(_WORDS) for _ in range(18))
        chunks.append(Chunk(i + 1, plan, section, f"{section}: {words}."))
    return chunks


async def has_pgvector(dsn: str) -> bool:
    """Whether the server at `dsn` answers and offers the `vector` extension."""
    try:
        async with DatabasePool(dsn, min_size=1, max_size=1, application_name="navigator") as pool:
            return bool(
                await pool.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
                )
            )
    except Exception:  # unreachable, refused, bad credentials: not usable
        return False


async def load(dsn: str, openai_client: Any, size: int = CORPUS_SIZE, seed: int = 0) -> int:
    """Create the table and load the corpus unless it is already there; returns its size.

    `openai_client` is an ``openai.AsyncOpenAI`` pointed at the provider.
    """
    chunks = generate(size, seed)
    async with (
        DatabasePool(dsn, min_size=1, max_size=1, application_name="navigator-load") as pool,
        pool.connection() as conn,
        conn.transaction(),
    ):
        await conn.execute("SELECT pg_advisory_xact_lock(4_300_043)")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS navigator_chunks (id int PRIMARY KEY, plan text, "
            f"section text, body text, embedding vector({EMBEDDING_DIMENSIONS}))"
        )
        loaded = await conn.fetchval("SELECT count(*) FROM navigator_chunks")
        if loaded == size and await conn.fetchval(
            "SELECT body FROM navigator_chunks WHERE id = $1", size
        ) == (chunks[-1].body):
            return size
        await conn.execute("TRUNCATE navigator_chunks")
        for start in range(0, size, _BATCH):
            batch = chunks[start : start + _BATCH]
            reply = await openai_client.embeddings.create(
                model=EMBEDDING_MODEL,
                input=[c.body for c in batch],
                dimensions=EMBEDDING_DIMENSIONS,
            )
            await conn.execute(
                "INSERT INTO navigator_chunks (id, plan, section, body, embedding) "
                "SELECT i, p, s, b, e::vector FROM "
                "unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[]) "
                "AS t(i, p, s, b, e)",
                [c.id for c in batch],
                [c.plan for c in batch],
                [c.section for c in batch],
                [c.body for c in batch],
                [vector_literal(d.embedding) for d in reply.data],
            )
    return size
