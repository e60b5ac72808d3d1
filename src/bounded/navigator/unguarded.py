"""The navigator as FM-043 found it: every concurrency pattern the incident named.

Do not copy this module; it exists to be measured and audited. `bounded audit` reports
each pattern (the audit config in pyproject.toml leaves it out of the project's own
check). The stages and prompts are those of the guarded build (`workflow.py`).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg

from bounded._extras import import_extra
from bounded.breaker import CircuitBreaker
from bounded.navigator import workflow as wf

with import_extra("bounded.navigator"):
    import anthropic
    import openai

__all__ = ["UnguardedNavigator"]

CLASSIFIER_TIMEOUT = 5.0
RETRIES = 3
RETRY_DELAY = 1.0

classifier_breaker = CircuitBreaker(name="navigator-classifier")


class UnguardedNavigator:
    """Answers questions; the FM-043 way (no limits, no pool, no jitter, nothing closed)."""

    def __init__(self, provider_url: str, dsn: str, api_key: str = "navigator") -> None:
        self.dsn = dsn
        self.provider_url = provider_url
        self.api_key = api_key
        self.audit_log: list[tuple[str, float]] = []
        self.openai = openai.AsyncOpenAI(
            base_url=provider_url + "/v1", api_key=api_key, max_retries=0
        )
        self.sync_openai = openai.OpenAI(
            base_url=provider_url + "/v1", api_key=api_key, max_retries=0
        )

    async def answer(self, question: str, subquestions: int) -> wf.Answer:
        """Answer one member question."""
        watch = wf.Stopwatch()
        with watch.stage("input"):
            request = wf.normalise(question, subquestions)
            category = await self.classify_unprotected(request)
        with watch.stage("retrieval"):
            chunks = await self.retrieve(request.question)
        with watch.stage("fanout"):
            subs = wf.subquestions(request, category)
            sub_answers = await asyncio.gather(*[self.sub_answer(q, chunks) for q in subs])
        with watch.stage("synthesis"):
            # A client per synthesis, never closed: its connections leak with every request.
            writer = anthropic.AsyncAnthropic(
                base_url=self.provider_url, api_key=self.api_key, max_retries=0
            )
            strategy = await wf.synthesise(writer, request, category, chunks, sub_answers)
        answer = wf.Answer.of(category, chunks, sub_answers, strategy, watch.timings)
        asyncio.create_task(self.write_audit_log(request, answer))  # noqa: RUF006
        return answer

    @classifier_breaker
    async def classify(self, request: wf.Request) -> str:
        """The classifier behind the breaker (which the workflow does not call)."""
        return await self.classify_unprotected(request)

    async def classify_unprotected(self, request: wf.Request) -> str:
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["reply"] = self.sync_openai.chat.completions.create(
                    model=wf.CHAT_MODEL,
                    messages=wf.classifier_messages(request),  # type: ignore[arg-type]
                    max_tokens=wf.CLASSIFIER_MAX_TOKENS,
                )
            except Exception as exc:
                box["error"] = exc

        worker = threading.Thread(target=work, daemon=True)
        worker.start()

        def wait() -> None:
            worker.join(CLASSIFIER_TIMEOUT)

        loop = asyncio.get_event_loop()
        await loop.run_in_executor(None, wait)
        if worker.is_alive():
            raise TimeoutError(f"classifier gave no answer within {CLASSIFIER_TIMEOUT:g} s")
        if "error" in box:
            raise box["error"]
        return wf.category_of(box["reply"].choices[0].message.content or "")

    async def retrieve(self, question: str) -> list[wf.Chunk]:
        embedded = self.sync_openai.embeddings.create(
            model=wf.EMBEDDING_MODEL, input=question, dimensions=wf.EMBEDDING_DIMENSIONS
        )
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                wf.KNN_SQL, wf.vector_literal(embedded.data[0].embedding), wf.TOP_K
            )
        finally:
            await conn.close()
        return [wf.Chunk(r["id"], r["plan"], r["section"], r["body"]) for r in rows]

    async def sub_answer(self, question: str, chunks: list[wf.Chunk]) -> str:
        for attempt in range(RETRIES):
            try:
                return await wf.research(self.openai, question, chunks)
            except openai.APIError:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(RETRY_DELAY)
        raise AssertionError("unreachable")

    async def write_audit_log(self, request: wf.Request, answer: wf.Answer) -> None:
        await asyncio.sleep(0)
        self.audit_log.append((request.question, sum(answer.timings.values())))
