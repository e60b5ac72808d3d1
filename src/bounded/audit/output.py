"""Report formats: text (rich colour on a terminal), JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from bounded.audit.rules import RULES

if TYPE_CHECKING:
    from bounded.audit import AuditReport

__all__ = ["FORMATS", "render", "to_json", "to_sarif", "write_text"]

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def write_text(report: AuditReport, stream: TextIO, *, colour: bool | None = None) -> None:
    """``path:line:col: CODE message`` plus a one-line fix per finding, then a summary."""
    if colour is None:
        colour = stream.isatty()
    if colour:
        from rich.console import Console
        from rich.markup import escape

        console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=True)
        for f in report.findings:
            console.print(
                f"[bold]{escape(f.path)}[/]:{f.line}:{f.column}: [bold red]{f.code}[/] "
                f"{escape(f.message)}\n    [green]fix:[/] {escape(f.fix)}"
            )
        for e in report.errors:
            console.print(f"[bold]{escape(e.path)}[/]: [red]error:[/] {escape(e.message)}")
        console.print(f"[bold]{_summary(report)}[/]")
        return
    for f in report.findings:
        stream.write(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}\n    fix: {f.fix}\n")
    for e in report.errors:
        stream.write(f"{e.path}: error: {e.message}\n")
    stream.write(_summary(report) + "\n")


def _summary(report: AuditReport) -> str:
    files = f"{report.files} file{'s' if report.files != 1 else ''}"
    if not report.findings and not report.errors:
        return f"No findings in {files}."
    text = f"{len(report.findings)} finding{'s' if len(report.findings) != 1 else ''} in {files}"
    if report.errors:
        text += f", {len(report.errors)} error{'s' if len(report.errors) != 1 else ''}"
    return text + "."


def to_json(report: AuditReport) -> dict[str, Any]:
    """``{"findings": [{path, line, column, code, message}], "files": N, "errors": [...]}``."""
    return {
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "code": f.code,
                "message": f.message,
                "fix": f.fix,
            }
            for f in report.findings
        ],
        "files": report.files,
        "errors": [{"path": e.path, "message": e.message} for e in report.errors],
    }


def _artifact_uri(path: str) -> tuple[str, bool]:
    """A URI for `path`: relative to the working directory when inside it, else file://."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute.startswith(cwd + os.sep):
        rel = os.path.relpath(absolute, cwd).replace(os.sep, "/")
        return quote(rel), True
    return Path(absolute).as_uri(), False


def _level(code: str) -> str:
    if code == "BND000":
        return "error"
    return "warning" if RULES[code].default else "note"


def to_sarif(report: AuditReport, version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run, ready for code-scanning upload."""
    codes = sorted(RULES)
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "name": RULES[code].name,
            "shortDescription": {"text": RULES[code].summary},
            "fullDescription": {"text": RULES[code].summary},
            "help": {
                "text": f"Fix: {RULES[code].fix}",
                "markdown": f"**Fix:** {RULES[code].fix}\n\nSee docs/rules/{RULES[code].slug}.md.",
            },
            "defaultConfiguration": {"level": _level(code)},
            "properties": {"tags": ["concurrency", "reliability", "FM-043"]},
        }
        for code in codes
    ]
    results = []
    for f in report.findings:
        uri, relative = _artifact_uri(f.path)
        location: dict[str, Any] = {"uri": uri}
        if relative:
            location["uriBaseId"] = "%SRCROOT%"
        results.append(
            {
                "ruleId": f.code,
                "ruleIndex": index[f.code],
                "level": _level(f.code),
                "message": {"text": f"{f.message}. Fix: {f.fix}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": location,
                            "region": {"startLine": f.line, "startColumn": f.column},
                        }
                    }
                ],
            }
        )
    notifications = []
    for e in report.errors:
        uri, relative = _artifact_uri(e.path)
        location = {"uri": uri}
        if relative:
            location["uriBaseId"] = "%SRCROOT%"
        notifications.append(
            {
                "level": "error",
                "message": {"text": e.message},
                "locations": [{"physicalLocation": {"artifactLocation": location}}],
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bounded-audit",
                        "semanticVersion": version,
                        "version": version,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(os.getcwd()).as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
            }
        ],
    }


def render(report: AuditReport, fmt: str, stream: TextIO, *, version: str = "0") -> None:
    """Write `report` to `stream` in format `fmt` (one of FORMATS)."""
    if fmt == "text":
        write_text(report, stream)
    elif fmt == "json":
        json.dump(to_json(report), stream, indent=2)
        stream.write("\n")
    elif fmt == "sarif":
        json.dump(to_sarif(report, version), stream, indent=2)
        stream.write("\n")
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
