"""`bounded audit` on real code: recall against what independent readers listed.

From round 11 on, each round of ``bench.audit_corpus`` was read for faults by readers who
had not seen the audit. Their lists are in ``bench/audit_readers/`` (one table row per
fault: id, class, ``file:line``, what, confidence). This scores today's default findings
against them: an entry is found when a true finding (``bench/audit_labels.json``) of its
rule lies within three lines of one of the lines it names, or is one of the findings
``matches.json`` ties to it by hand (the same fault reported a few lines away or by
another rule). An entry whose only findings are labelled false is disputed and set
aside. Run with ``python -m bench.audit_recall`` after ``python -m bench.audit_corpus``
has downloaded the corpus.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.audit_corpus import LABELS, READ_ROUNDS, corpus_dir, fetch, label_of
from bounded.audit import audit

READERS = Path(__file__).with_name("audit_readers")
CLASSES = {
    "FANOUT": "BND001",
    "CONN_PER_OP": "BND002",
    "THREAD_TIMEOUT": "BND003",
    "GET_EVENT_LOOP": "BND004",
    "BLOCKING": "BND005",
    "UNCLOSED": "BND006",
    "BREAKER_BYPASS": "BND007",
    "RETRY_NO_JITTER": "BND008",
    "DROPPED_TASK": "BND009",
}
_PLACE = re.compile(r"`?([^:`]+\.py):(\d+)")
_MORE_LINES = re.compile(r"(?<![\w.]):(\d+)")
_ANY_PLACE = re.compile(r"`?[^:`]+\.\w+:\d+")  # a file of any kind, with a line


@dataclass(frozen=True)
class Entry:
    """One fault a reader listed."""

    key: str  # "<project>:<reader's id>"
    project: str
    code: str
    path: str
    lines: frozenset[int]
    confidence: str


def entries(round_: int, roots: dict[str, Path]) -> list[Entry]:
    """The readers' entries of one round, each tied to the project whose files it names."""
    found: list[Entry] = []
    for sheet in sorted(READERS.glob(f"round{round_}-*.md")):
        for row in sheet.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if len(cells) < 5 or cells[1].strip("`* ") not in CLASSES:
                continue
            place = _PLACE.match(cells[2])
            if place is None:
                continue
            [project] = [p for p in READ_ROUNDS[round_] if (roots[p] / place[1]).is_file()]
            found.append(
                Entry(
                    key=f"{project}:{cells[0]}",
                    project=project,
                    code=CLASSES[cells[1].strip("`* ")],
                    path=place[1],
                    lines=frozenset(
                        {int(place[2])} | {int(n) for n in _MORE_LINES.findall(cells[3])}
                    ),
                    confidence=cells[4].split()[0].strip("*(").lower(),
                )
            )
    return found


def unread_rows(round_: int) -> int:
    """The readers' rows of one round that name a file the audit does not read (a Cython
    ``.pyx`` source): left out of the score."""
    count = 0
    for sheet in sorted(READERS.glob(f"round{round_}-*.md")):
        for row in sheet.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if len(cells) >= 5 and cells[1].strip("`* ") in CLASSES:
                count += _PLACE.match(cells[2]) is None and _ANY_PLACE.match(cells[2]) is not None
    return count


def score(round_: int, roots: dict[str, Path], labels: dict[str, dict[str, list[str]]]) -> None:
    """Print one round's recall: overall, by confidence, by rule and by project."""
    matches: dict[str, list[str]] = json.loads((READERS / "matches.json").read_text())
    labelled: dict[str, dict[str, str | None]] = {}  # project -> "path:line:code" -> label
    for project in READ_ROUNDS[round_]:
        root = roots[project]
        labelled[project] = {}
        for f in audit([root], use_config=False).findings:
            key = f"{Path(f.path).relative_to(root).as_posix()}:{f.line}:{f.code}"
            labelled[project][key] = label_of(labels, project, key)
    found: set[str] = set()
    disputed: set[str] = set()
    listed = entries(round_, roots)
    for e in listed:
        keys = [
            key
            for key in labelled[e.project]
            if key.startswith(e.path + ":")
            and key.endswith(":" + e.code)
            and any(abs(int(key.split(":")[-2]) - line) <= 3 for line in e.lines)
        ] + [key for key in matches.get(e.key, []) if key in labelled[e.project]]
        verdicts = {labelled[e.project][key] for key in keys}
        if "tp" in verdicts:
            found.add(e.key)
        elif verdicts == {"fp"}:
            disputed.add(e.key)

    def line(title: str, pool: list[Entry]) -> str:
        kept = [e for e in pool if e.key not in disputed]
        hits = sum(e.key in found for e in kept)
        share = f"{hits / len(kept):.1%}" if kept else "-"
        return f"  {title}: {hits} of {len(kept)} ({share}); {len(pool) - len(kept)} disputed"

    unread = unread_rows(round_)
    skipped = f" ({unread} more name files the audit does not read)" if unread else ""
    print(f"round {round_}: {len(listed)} entries{skipped}")
    print(line("all", listed))
    print(line("high and medium", [e for e in listed if e.confidence in ("high", "medium")]))
    print(line("high", [e for e in listed if e.confidence == "high"]))
    by_rule: Counter[str] = Counter()
    hits_by_rule: Counter[str] = Counter()
    for e in listed:
        if e.key not in disputed:
            by_rule[e.code] += 1
            hits_by_rule[e.code] += e.key in found
    print("  by rule: " + ", ".join(f"{c} {hits_by_rule[c]}/{by_rule[c]}" for c in sorted(by_rule)))
    for project in READ_ROUNDS[round_]:
        print(line(project, [e for e in listed if e.project == project]))


def main() -> None:
    roots = fetch(corpus_dir())
    labels: dict[str, dict[str, list[str]]] = json.loads(LABELS.read_text())
    for round_ in READ_ROUNDS:
        score(round_, roots, labels)


if __name__ == "__main__":
    main()
