"""The documentation's relative links resolve, and it names no file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """`text` without code blocks and code spans (links there are examples)."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return _INLINE.findall(text) + _REFERENCE.findall(text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    out: set[str] = set()
    for heading in _HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def dead_links(path: Path, root: Path = ROOT) -> list[str]:
    dead = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:, ...
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            dead.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            dead.append(f"{target} (no heading #{anchor})")
        elif root not in resolved.parents and resolved != root:
            dead.append(f"{target} (outside the repository)")
    return dead


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert dead_links(path) == []


def test_the_checker_finds_a_dead_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A title\n")
    page.write_text(
        "[ok](there.md) [ok](there.md#a-title) [web](https://example.com)\n"
        "`[code](missing.md)`\n```\n[block](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](there.md#nope)\n[ref]: ./also-missing.md\n"
    )
    assert dead_links(page, tmp_path) == [
        "missing.md (no such file)",
        "there.md#nope (no heading #nope)",
        "./also-missing.md (no such file)",
    ]
    page.write_text("[up](../outside.md)\n")
    (tmp_path.parent / "outside.md").write_text("x\n")
    assert dead_links(page, tmp_path) == ["../outside.md (outside the repository)"]


def test_no_text_names_the_private_design_files() -> None:
    # The contract and peer figures live outside the repository: users cannot read them.
    names = ("DESIGN" + ".md", "ANCHORS" + ".md")
    found = []
    for folder in ("docs", "src", "bench"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".md", ".py", ".yaml", ".yml", ".json", ".toml"}:
                text = path.read_text(encoding="utf-8", errors="replace")
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n in text]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found += [f"README.md: {n}" for n in names if n in readme]
    assert found == []
