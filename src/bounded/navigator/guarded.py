"""The navigator through `bounded`: the same stages as FM-043's, inside its limits.

One `ConcurrencyManager`, configured by the shipped ``guarded.yaml``, owns every limit:
workflow admission (a rate limiter in provider requests and a bulkhead), the provider's
budget with header resync, policies with deadline, jittered retry with a budget,
breakers and per-attempt timeouts, the connection pool, monitoring and metrics. The
official SDK clients send through `bounded.llm.http_client`, so each HTTP request goes
through a policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from bounded._extras import import_extra
from bounded.fanout import map as bounded_map
from bounded.llm import http_client
from bounded.manager import ConcurrencyManager
from bounded.navigator import workflow as wf
from bounded.tasks import TaskManager

with import_extra("bounded.navigator"):
    import anthropic
    import openai

__all__ = ["AUDIT_LOG_DRAIN", "CONFIG", "FANOUT_LIMIT", "GuardedNavigator"]

#: The shipped configuration (``${NAVIGATOR_*}`` variables, see the file).
CONFIG = Path(str(resources.files("bounded.navigator").joinpath("guarded.yaml")))
#: Sub-questions researched at once per workflow.
FANOUT_LIMIT = 4
#: Seconds that closing waits for audit-log writes still pending.
AUDIT_LOG_DRAIN = 5.0


class GuardedNavigator:
    """Answers questions within the limits of ``guarded.yaml``; use ``async with``.

    `env` fills the file's variables (``NAVIGATOR_DSN`` is required); default
    `os.environ`.
    """

    def __init__(
        self,
        provider_url: str,
        *,
        env: Mapping[str, str] | None = None,
        config: str | os.PathLike[str] = CONFIG,
        api_key: str = "navigator",
    ) -> None:
        self.manager = ConcurrencyManager.from_file(config, watch=False, env=env)
        self.audit_log: list[tuple[str, float]] = []
        self._tasks = TaskManager(name="navigator-audit-log")
        self._audit_log_idle = asyncio.Event()
        self._audit_log_idle.set()
        self._openai = self._openai_client(provider_url, api_key, "llm_call")
        self._classifier = self._openai_client(provider_url, api_key, "classifier_call")
        self._anthropic = anthropic.AsyncAnthropic(
            base_url=provider_url,
            api_key=api_key,
            max_retries=0,
            http_client=http_client(policy=self.manager.policy("llm_call")),
        )

    def _openai_client(self, url: str, api_key: str, policy: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=url + "/v1",
            api_key=api_key,
            max_retries=0,
            http_client=http_client(policy=self.manager.policy(policy)),
        )

    async def __aenter__(self) -> GuardedNavigator:
        await self.manager.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._drain_audit_log()
            await self._tasks.shutdown()
            await self._openai.close()
            await self._classifier.close()
            await self._anthropic.close()
        finally:
            await self.manager.close()

    async def _drain_audit_log(self) -> None:
        """Let pending audit-log writes finish (for up to `AUDIT_LOG_DRAIN` seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AUDIT_LOG_DRAIN):
                await self._audit_log_idle.wait()

    def _audit_log_write_done(self, _: asyncio.Task[None]) -> None:
        if not len(self._tasks):  # the TaskManager forgot the task first
            self._audit_log_idle.set()

    async def answer(self, question: str, subquestions: int) -> wf.Answer:
        """Answer one member question, or raise a classified error: a `bounded.Rejected`
        (shed with `retry_after`), `TimeoutError`, or the SDK's error for the provider's."""
        request = wf.normalise(question, subquestions)
        # Admission in provider requests: what is admitted can be served in time.
        await self.manager.rate_limiter("admission").acquire(request.subquestions + 3)
        answer: wf.Answer = await self.manager.policy("workflow").call(self._answer, request)
        return answer

    async def _answer(self, request: wf.Request) -> wf.Answer:
        watch = wf.Stopwatch()
        with watch.stage("input"):
            category = await self._classify(request)
        with watch.stage("retrieval"):
            chunks = await self._retrieve(request.question)
        with watch.stage("fanout"):

            async def research(question: str) -> str:
                return await wf.research(self._openai, question, chunks)

            subs = wf.subquestions(request, category)
            sub_answers = await bounded_map(research, subs, limit=FANOUT_LIMIT)
        with watch.stage("synthesis"):
            strategy = await wf.synthesise(self._anthropic, request, category, chunks, sub_answers)
        answer = wf.Answer.of(category, chunks, sub_answers, strategy, watch.timings)
        self._audit_log_idle.clear()
        task = self._tasks.spawn(self._write_audit_log(request, answer))
        task.add_done_callback(self._audit_log_write_done)
        return answer

    async def _classify(self, request: wf.Request) -> str:
        reply = await self._classifier.chat.completions.create(
            model=wf.CHAT_MODEL,
            messages=wf.classifier_messages(request),  # type: ignore[arg-type]
            max_tokens=wf.CLASSIFIER_MAX_TOKENS,
        )
        return wf.category_of(reply.choices[0].message.content or "")

    async def _retrieve(self, question: str) -> list[wf.Chunk]:
        embedded = await self._openai.embeddings.create(
            model=wf.EMBEDDING_MODEL, input=question, dimensions=wf.EMBEDDING_DIMENSIONS
        )
        vector = wf.vector_literal(embedded.data[0].embedding)
        rows: list[Any] = await self.manager.policy("retrieval").call(
            self.manager.database("corpus").fetch, wf.KNN_SQL, vector, wf.TOP_K
        )
        return [wf.Chunk(r["id"], r["plan"], r["section"], r["body"]) for r in rows]

    async def _write_audit_log(self, request: wf.Request, answer: wf.Answer) -> None:
        self.audit_log.append((request.question, sum(answer.timings.values())))
