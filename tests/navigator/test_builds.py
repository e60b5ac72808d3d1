"""Both navigator builds against real parts: PostgreSQL + pgvector (``DATABASE_URL`` when
its server has the extension, else the embedded server) and the mock provider in a
child process. And `bounded audit` on each build."""

from __future__ import annotations

from pathlib import Path

import openai

from bounded.audit import audit
from bounded.navigator import corpus
from bounded.navigator import guarded as guarded_module
from bounded.navigator import unguarded as unguarded_module
from bounded.navigator.guarded import GuardedNavigator
from bounded.navigator.services import MockProvider, ProviderSettings, pgvector_database
from bounded.navigator.unguarded import UnguardedNavigator

QUESTIONS = [
    ("Is my MRI covered if the imaging center is out of network?", 3),
    ("Why was my physical therapy claim denied?", 7),
    ("Which tier is my insulin on?", 12),
]


async def test_both_builds_give_the_same_answer_at_light_load() -> None:
    async with pgvector_database() as (dsn, _), MockProvider(ProviderSettings()) as mock:
        async with openai.AsyncOpenAI(
            base_url=mock.url + "/v1", api_key="test", max_retries=0
        ) as client:
            assert await corpus.load(dsn, client, size=500) == 500
            assert await corpus.load(dsn, client, size=500) == 500  # already there
        await mock.apply_limits()
        env = {
            "NAVIGATOR_DSN": dsn,
            "NAVIGATOR_RPM": "300",
            "NAVIGATOR_PERIOD": "10",
            "NAVIGATOR_RPS": "100",  # light load: admission never waits
        }
        plain = UnguardedNavigator(mock.url, dsn)
        async with GuardedNavigator(mock.url, env=env) as guarded:
            for question, n in QUESTIONS:
                before = await plain.answer(question, n)
                after = await guarded.answer(question, n)
                assert after.content() == before.content()
                assert len(after.sub_answers) == n
                assert len(after.chunk_ids) == 4
                assert after.strategy
                assert set(after.timings) == {"input", "retrieval", "fanout", "synthesis"}
            pool = guarded.manager.database("corpus")
            assert (pool.min_size, pool.max_size) == (5, 20)
        assert [q for q, _ in guarded.audit_log] == [q for q, _ in QUESTIONS]
        stats = await mock.stats()
        # classifier + embedding + n sub-questions + synthesis, per question and build
        assert stats["requests_total"] == 2 * sum(n + 3 for _, n in QUESTIONS)
        assert stats.get("rate_limited_total", 0) == 0


def _source_line(module: object, snippet: str) -> int:
    lines = Path(module.__file__).read_text().splitlines()  # type: ignore[attr-defined]
    [found] = [i for i, line in enumerate(lines, 1) if snippet in line]
    return found


def test_audit_reports_every_fm043_pattern_in_the_unguarded_build() -> None:
    m = unguarded_module
    expected = {
        # At most one task per entry of the 12-aspect tuple: no evidence the size comes
        # from data, so the default BND001 leaves it to its opt-in tier, BND015.
        ("BND015", _source_line(m, "await asyncio.gather(*[self.sub_answer")),
        ("BND002", _source_line(m, "await asyncpg.connect(")),
        ("BND014", _source_line(m, "threading.Thread(target=work, daemon=True)")),
        ("BND003", _source_line(m, "worker.join(CLASSIFIER_TIMEOUT)")),
        # In a coroutine the loop fetched is the running one: BND010 (off by default, a
        # style finding); BND004 is kept for get_event_loop() where no loop runs.
        ("BND010", _source_line(m, "asyncio.get_event_loop()")),
        ("BND005", _source_line(m, "self.sync_openai.embeddings.create(")),
        ("BND006", _source_line(m, "writer = anthropic.AsyncAnthropic(")),
        ("BND007", _source_line(m, "category = await self.classify_unprotected(request)")),
        ("BND008", _source_line(m, "await asyncio.sleep(RETRY_DELAY)")),
        ("BND009", _source_line(m, "asyncio.create_task(self.write_audit_log(")),
    }
    report = audit([m.__file__], select=["BND", "BND010", "BND014", "BND015"])
    assert {(f.code, f.line) for f in report.findings} == expected
    by_default = {(f.code, f.line) for f in audit([m.__file__]).findings}
    assert by_default == {f for f in expected if f[0] not in ("BND010", "BND014", "BND015")}
    family = {"BND010": "BND004", "BND014": "BND003", "BND015": "BND001"}
    every_pattern = {f"BND00{i}" for i in range(1, 10)}
    assert {family.get(code, code) for code, _ in expected} == every_pattern


def test_audit_finds_nothing_in_the_guarded_build() -> None:
    package = Path(guarded_module.__file__).parent
    files = [p for p in package.glob("*.py") if p.name != "unguarded.py"]
    assert len(files) >= 4
    report = audit(files)
    assert report.errors == []
    assert report.findings == []


def test_the_project_audit_leaves_out_only_the_unguarded_build() -> None:
    package = Path(unguarded_module.__file__).parent
    report = audit([package])  # with pyproject.toml's [tool.bounded.audit]
    assert report.findings == []
    assert report.files == len(list(package.glob("*.py"))) - 1
