"""The hot-reload watcher (real watchfiles, real time) survives any save and ignores other files."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import bounded.manager
from bounded.manager import ConcurrencyManager

from .test_hostile_input import alias_bomb

BASE = {"bulkheads": {"llm": {"limit": 10}}}


async def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.02)


def write(path: Path, limit: int) -> None:
    path.write_text(yaml.safe_dump({"bulkheads": {"llm": {"limit": limit}}}))


async def test_watcher_survives_bad_saves_and_applies_later_good_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8 items 4 and 5: a non-UTF-8 save killed the watcher; a bomb froze the loop."""
    path = tmp_path / "bounded.yaml"
    write(path, 10)
    manager = ConcurrencyManager.from_file(path, env={})
    caplog.set_level(logging.ERROR, logger="bounded.manager")
    async with manager:
        await asyncio.sleep(0.3)  # let the watcher settle
        bad_saves = [
            b"bulkheads:\n  llm:\n    limit: 3\n# caf\xe9\n",
            alias_bomb(441, levels=10).encode(),
            b"[" * 5000 + b"]" * 5000,
            b"a: &a [*a]\n",
            b"\x00\x01\x02",
        ]
        for n, content in enumerate(bad_saves, start=1):
            path.write_bytes(content)
            await wait_for(lambda n=n: manager.failed_reloads == n)  # type: ignore[misc]
            write(path, 10 + n)
            await wait_for(lambda n=n: manager.bulkhead("llm").limit == 10 + n)  # type: ignore[misc]
        assert manager._watch_task is not None
        assert not manager._watch_task.done()
    assert manager.reloads == len(bad_saves)
    assert "not valid UTF-8 (byte 0xe9 at line 4)" in caplog.text
    assert "alias bomb" in caplog.text
    assert "recursive alias" in caplog.text
    assert "Traceback" not in caplog.text


async def test_watcher_ignores_other_files_in_the_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 9 item 7: a log written next to bounded.yaml gave 196 '1 change detected' lines."""
    path = tmp_path / "bounded.yaml"
    write(path, 10)
    log = tmp_path / "app.log"
    manager = ConcurrencyManager.from_file(path, env={})
    caplog.set_level(logging.DEBUG, logger="watchfiles")
    async with manager:
        await asyncio.sleep(0.3)
        with log.open("a") as out:
            for i in range(20):
                out.write(f"line {i}\n")
                out.flush()
                await asyncio.sleep(0.05)
        (tmp_path / "other.yaml").write_text("x: 1\n")
        await asyncio.sleep(0.5)
        assert "change detected" not in caplog.text
        assert "changes detected" not in caplog.text
        write(path, 20)  # the config file itself still counts
        await wait_for(lambda: manager.bulkhead("llm").limit == 20)
    assert manager.reloads == 1
    assert manager.failed_reloads == 0


async def test_watcher_follows_an_editor_style_replace(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    write(path, 10)
    manager = ConcurrencyManager.from_file(path, env={})
    async with manager:
        await asyncio.sleep(0.3)
        tmp = tmp_path / ".bounded.yaml.swp"
        write(tmp, 30)
        tmp.replace(path)
        await wait_for(lambda: manager.bulkhead("llm").limit == 30)


async def test_reload_of_a_large_file_leaves_the_loop_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing runs in a thread: the loop keeps turning while a large file is parsed."""
    path = tmp_path / "bounded.yaml"
    write(path, 10)
    manager = ConcurrencyManager.from_file(path, watch=False, env={})
    path.write_text("# " + "c" * 900_000 + "\nbulkheads: {llm: {limit: 12}}\n")
    loop_thread = threading.get_ident()
    turned = threading.Event()  # set by the loop while the parse is under way
    seen: dict[str, object] = {}
    real_load_text = bounded.manager.load_text

    def load_text(*args: Any, **kwargs: Any) -> Any:
        seen["thread"] = threading.get_ident()
        seen["loop turned"] = turned.wait(timeout=30)  # on the loop thread: never set
        return real_load_text(*args, **kwargs)

    monkeypatch.setattr(bounded.manager, "load_text", load_text)
    ticks = 0
    finished = False

    async def ticker() -> None:
        nonlocal ticks
        while not (turned.is_set() or finished):
            ticks += "thread" in seen  # turns of the loop once the parse has begun
            if ticks >= 100:
                turned.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    assert await manager.reload()
    finished = True
    await task
    assert manager.bulkhead("llm").limit == 12
    assert seen["thread"] != loop_thread
    assert seen["loop turned"] is True
