"""--fix as a property: on any mix of fixable and unfixable statements, fixing is idempotent,
the result parses, and only the fixable findings go away."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounded.audit import Project
from bounded.audit.core import Edit
from bounded.audit.fix import apply_edits, fix_findings

_STATEMENTS = [
    "loop = asyncio.get_event_loop()",
    "loop = aio.get_event_loop()",
    "print(asyncio.get_event_loop().time())",
    "loop = get_event_loop()",  # from-import: message only
    "asyncio.create_task(work())",
    "asyncio.ensure_future(work())  # note",
    "if x: asyncio.create_task(work())",  # shares its line: message only
    "task = asyncio.create_task(work())",  # a local nothing reads: message only
    "x = 1; asyncio.create_task(work())",  # shares its line: message only
    "asyncio.create_task(\n        work(),\n    )",
]
_HEADER = (
    "import asyncio\nimport asyncio as aio\nfrom asyncio import get_event_loop\n\n"
    "_tasks = set()\n\n\nasync def work():\n    pass\n\n\n"
)


def _module(statements: list[str]) -> str:
    body = "\n".join(f"    {s}" for s in statements) or "    pass"
    return (
        f"{_HEADER}async def handler(x):\n{body}\n\n\n"
        "def keep(t):\n    t.add_done_callback(_tasks.discard)\n"
    )


def _findings(path: Path) -> list[tuple[str, str]]:
    project = Project(["BND009", "BND010"])
    found = project.check(path.read_bytes(), str(path)) + project.finish()
    return sorted((f.code, f.message) for f in found)


def _fix(path: Path) -> int:
    project = Project(["BND009", "BND010"])
    found = project.check(path.read_bytes(), str(path)) + project.finish()
    result = fix_findings(found)
    result.write()
    return len(result.fixed)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_STATEMENTS), max_size=8))
def test_fix_is_idempotent_and_keeps_code_parsing(tmp_path: Path, statements: list[str]) -> None:
    path = tmp_path / "mod.py"
    path.write_text(_module(statements))
    before = _findings(path)
    for _ in range(5):  # an edit that overlapped another waits a pass
        if not _fix(path):
            break
    once = path.read_text()
    ast.parse(once)
    assert _fix(path) == 0
    assert path.read_text() == once
    after = _findings(path)
    assert len(after) <= len(before)
    # what stays is exactly what has no safe rewrite
    unfixable = sum(
        s
        in (
            "loop = get_event_loop()",
            "if x: asyncio.create_task(work())",
            "task = asyncio.create_task(work())",
        )
        or s.startswith("x = 1;")
        for s in statements
    )
    assert len(after) == unfixable


def test_overlapping_edits_apply_one_per_pass() -> None:
    source = b"abcdef\n"
    edits = [Edit(1, 0, 1, 3, "X"), Edit(1, 2, 1, 5, "Y"), Edit(1, 5, 1, 6, "Z")]
    out, applied = apply_edits(source, edits)
    assert out == b"XdeZ\n"
    assert sorted(applied) == [0, 2]
