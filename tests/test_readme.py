"""The README's Python examples run, in order, as one program (on virtual time)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import looptime

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    # ```python blocks are the runnable tour; ```py blocks show the FM-043 code it replaces.
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_a_runnable_tour() -> None:
    assert len(python_blocks()) >= 5


def test_readme_examples_run() -> None:
    source = "\n".join(python_blocks())
    code = compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {}
    loop = looptime.new_event_loop(start=0)
    try:
        coroutine = eval(code, namespace)  # a coroutine, because of top-level await
        loop.run_until_complete(coroutine)
    finally:
        loop.close()
