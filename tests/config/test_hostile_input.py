"""Files no one should write, read safely: alias bombs, deep nesting, bad bytes, FIFOs.

Every one of them is a `ConfigErrors` (never a traceback, a hang or a memory blow-up).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bounded.config import ConfigErrors, load_dict, load_file
from bounded.config.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, parse_yaml

from .conftest import ConfigCheck


def alias_bomb(size: int, levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" document of exactly `size` bytes: width**levels nodes expanded."""
    names = "abcdefghijklmnop"
    lines = ["a: &a [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * width) + "]")
    lines.append(f"bulkheads: {{x: {{limit: *{names[levels - 1]}}}}}")
    text = "\n".join(lines) + "\n"
    assert len(text) < size
    return text + "#" * (size - len(text) - 1) + "\n"


@pytest.mark.parametrize("size", [393, 441])
def test_alias_bomb_is_refused_before_anything_is_expanded(
    size: int, config_check: ConfigCheck
) -> None:
    """Issue 8 item 4: 393 bytes took 12 s and 300 MB, 441 bytes 114 s and 2.3 GB."""
    text = alias_bomb(size, levels=9 if size == 393 else 10)
    assert len(text.encode()) == size
    with pytest.raises(ConfigErrors, match="alias bomb"):
        parse_yaml(text)
    result = config_check(text)
    assert result.exit_code == 1
    assert "more than 10,000 nodes" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_aliases_within_the_budget_still_work() -> None:
    text = (
        "x-common: &common {limit: 4, max_wait: 2}\n"
        "bulkheads:\n"
        "  a: *common\n"
        "  b: {<<: *common, limit: 8}\n"
    )
    config = load_dict({k: v for k, v in parse_yaml(text).items() if k != "x-common"}, env={})
    assert (config.bulkheads["a"].limit, config.bulkheads["a"].max_wait) == (4, 2)
    assert (config.bulkheads["b"].limit, config.bulkheads["b"].max_wait) == (8, 2)


def test_the_node_budget_counts_expanded_aliases() -> None:
    # Each of these is small on its own; the aliases make the document too big.
    ok = "a: &a [" + ",".join(["1"] * 99) + "]\nb: [" + ",".join(["*a"] * 90) + "]\n"
    assert len(parse_yaml(ok)["b"]) == 90
    bad = "a: &a [" + ",".join(["1"] * 99) + "]\nb: [" + ",".join(["*a"] * 101) + "]\n"
    with pytest.raises(ConfigErrors, match=f"more than {MAX_NODES:,} nodes"):
        parse_yaml(bad)


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigErrors, match="recursive alias"):
        parse_yaml("a: &a [*a]\nbulkheads: *a\n")
    with pytest.raises(ConfigErrors, match="recursive alias"):
        parse_yaml("a: &a {b: *a}\n")


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(ConfigErrors, match=f"nested more than {MAX_DEPTH} levels"):
        parse_yaml("[" * 5000 + "]" * 5000)
    assert parse_yaml("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]


def test_an_alias_bomb_in_an_override_is_not_expanded() -> None:
    levels = [f"&l0 [{','.join(['lol'] * 9)}]"]
    levels += [f"&l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "[" + ", ".join(levels) + "]"  # one flow-style line, 9**9 nodes expanded
    with pytest.raises(ConfigErrors) as info:
        load_dict({}, env={"BOUNDED_ALERT_THRESHOLD": bomb})
    assert [p.path for p in info.value.problems] == ["alert_threshold"]


def test_non_utf8_file_is_a_config_error(config_check: ConfigCheck) -> None:
    """Issue 8 item 5: byte 0xE9 gave a UnicodeDecodeError traceback."""
    content = b"bulkheads:\n  llm:\n    limit: 3\n# caf\xe9\n"
    with pytest.raises(ConfigErrors, match=r"not valid UTF-8 \(byte 0xe9 at line 4\)"):
        parse_yaml(content)
    result = config_check(content)
    assert result.exit_code == 1
    assert "not valid UTF-8" in result.output
    assert "Traceback" not in result.output


def test_utf8_with_bom_and_non_ascii_text_is_fine(tmp_path: Path) -> None:
    file = tmp_path / "bounded.yaml"
    file.write_bytes("\ufeff# café\nbulkheads: {llm: {limit: 3}}\n".encode())
    assert load_file(file, env={}).bulkheads["llm"].limit == 3


def test_control_characters_are_a_config_error() -> None:
    with pytest.raises(ConfigErrors, match="invalid YAML"):
        parse_yaml(b"bulkheads: {llm: {limit: 3}}\x00\n")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "bounded.yaml"
    file.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigErrors, match="larger than 1024 KiB"):
        load_file(file, env={})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "bounded.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigErrors, match="not a regular file"):
        load_file(fifo, env={})


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="cannot read"):
        load_file(tmp_path, env={})


def test_unusable_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="embedded null byte"):
        load_file(str(tmp_path / "bad\0name.yaml"), env={})
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(ConfigErrors, match="cannot read"):
        load_file(loop, env={})
