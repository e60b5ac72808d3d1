"""Each rule against its fixture: exact lines and codes, findings and look-alikes alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bounded.audit import RULES, check_source

FIXTURES = Path(__file__).parent / "fixtures"
_EXPECT = re.compile(r"#\s*expect:\s*(BND\d{3}(?:\s*,\s*BND\d{3})*)")


def expected(source: str) -> list[tuple[int, str]]:
    """(line, code) pairs marked with ``# expect: BNDxxx`` in a fixture."""
    found = []
    for lineno, line in enumerate(source.splitlines(), 1):
        match = _EXPECT.search(line)
        if match:
            found.extend((lineno, code.strip()) for code in match.group(1).split(","))
    return sorted(found)


_COMPLEMENT = {
    "BND004": {"BND010"},
    "BND010": {"BND004"},
    # an opt-in code holds the weaker evidence of its parent rule's check
    "BND001": {"BND011", "BND015"},
    "BND011": {"BND001", "BND015"},
    "BND015": {"BND001", "BND011"},
    "BND005": {"BND012"},
    "BND012": {"BND005"},
    "BND008": {"BND013"},
    "BND013": {"BND008"},
    "BND003": {"BND014"},
    "BND014": {"BND003"},
    # a client built and closed (or leaked) inside a coroutine is also one per call
    "BND006": {"BND002"},
}
CHECKED = [code for code in RULES if code != "BND000"]


@pytest.mark.parametrize("code", CHECKED)
def test_fixture_reports_exactly_the_marked_lines(code: str) -> None:
    path = FIXTURES / f"{RULES[code].slug}.py"
    source = path.read_text(encoding="utf-8")
    marked = expected(source)
    # every fixture has both findings and look-alikes
    assert marked, f"{path.name} marks no finding"
    assert all(c == code for _, c in marked), "a fixture only marks its own rule"
    assert "look_alikes" in source or "Not findings" in source
    # checked as application code (fixtures live under tests/, where BND007 is off)
    findings = check_source(source, f"app/{path.name}", is_test=False, codes=RULES)
    assert sorted((f.line, f.code) for f in findings if f.code == code) == marked
    # look-alikes of one rule may be another rule's findings only where the pair is
    # designed so (BND004: no loop running; BND010: the running loop, style only)
    others = {f.code for f in findings} - {code}
    assert others <= _COMPLEMENT.get(code, set()), others


def test_rule_module_fixture_and_docs_page_share_a_name() -> None:
    from bounded.audit.rules import MODULES

    docs = Path(__file__).resolve().parents[2] / "docs" / "rules"
    for module in MODULES:
        slug = module.RULE.slug
        assert module.__name__.rsplit(".", 1)[-1] == slug
        assert (docs / f"{slug}.md").is_file(), slug
        if module.RULE.code != "BND000":
            assert (FIXTURES / f"{slug}.py").is_file(), slug


def test_rules_off_by_default_run_only_when_named() -> None:
    from bounded.audit import expand_codes

    source = "import asyncio\n\nasync def f():\n    return asyncio.get_event_loop()\n"
    assert check_source(source, "app/m.py") == []
    [finding] = check_source(source, "app/m.py", codes=["BND010"])
    assert finding.code == "BND010"
    assert "BND010" not in expand_codes(["ALL"]) | expand_codes(["BND"])
    assert expand_codes(["BND010"]) == {"BND010"}
    assert "BND010" in expand_codes(["BND01"], every=True)  # --ignore BND01 ignores it


def test_columns_are_one_based_and_point_at_the_call() -> None:
    source = (
        "import asyncio\n\nasync def f(db):\n"
        "    await asyncio.gather(*[g(x) for x in await db.list()])\n"
    )
    [finding] = check_source(source, "app/m.py")
    assert (finding.line, finding.column, finding.code) == (4, 11, "BND001")


def test_columns_count_characters_not_utf8_bytes() -> None:
    source = 'import time\n\nasync def f():\n    s = "é"; time.sleep(1)\n'
    [finding] = check_source(source, "app/m.py")
    assert (finding.line, finding.column) == (4, 14)


@pytest.mark.parametrize("code", CHECKED)
def test_every_rule_is_off_in_test_code(code: str) -> None:
    source = (FIXTURES / f"{RULES[code].slug}.py").read_text(encoding="utf-8")
    assert check_source(source, "app/search.py", codes=[code]) != []
    for path in (
        "tests/app/test_x.py",
        "pkg/test/harness.py",
        "pkg/testing/utils.py",
        "pkg/test_search.py",
        "pkg/search_test.py",
        "conftest.py",
    ):
        assert check_source(source, path, codes=[code]) == []


def test_names_are_matched_by_import_not_by_spelling() -> None:
    source = (
        "import mylib as asyncio\n"
        "from mylib import sleep as time_sleep\n"
        "async def f(xs, requests):\n"
        "    await asyncio.gather(*[g(x) for x in xs])\n"  # not the real asyncio
        "    requests.get('x')\n"  # a parameter, not the module
        "    asyncio.create_task(g())\n"
        "    time_sleep(1)\n"
    )
    assert check_source(source, "app/m.py") == []


def test_aliased_and_from_imports_are_resolved() -> None:
    source = (
        "import asyncio as aio\n"
        "from time import sleep as nap\n"
        "import urllib.request\n"
        "async def f():\n"
        "    nap(1)\n"
        "    aio.ensure_future(f())\n"
        "    urllib.request.urlopen('http://x')\n"
    )
    got = [(f.line, f.code) for f in check_source(source, "app/m.py")]
    assert got == [(5, "BND005"), (6, "BND009"), (7, "BND005")]


def test_suppression_comment_silences_only_the_named_code_on_that_line() -> None:
    source = (
        "import asyncio, time\n"
        "async def f(xs):\n"
        "    await asyncio.gather(*[g(x) for x in xs])  # bounded: ignore[BND001]\n"
        "    time.sleep(1)  # bounded: ignore[BND001]\n"
        "    time.sleep(2)  # bounded: ignore[BND005, BND001]\n"
        "    time.sleep(3)  # bounded: ignore\n"
        "    time.sleep(4)\n"
    )
    got = [(f.line, f.code) for f in check_source(source, "app/m.py")]
    assert got == [(4, "BND005"), (7, "BND005")]


def test_syntax_error_is_bnd000_with_the_message() -> None:
    [finding] = check_source("def f(:\n    pass\n", "app/broken.py")
    assert finding.code == "BND000"
    assert finding.line == 1
    assert "syntax error" in finding.message


def test_null_bytes_are_bnd000_not_a_crash() -> None:
    [finding] = check_source(b"x = 1\x00\n", "app/nul.py")
    assert finding.code == "BND000"


def test_nested_sync_function_and_lambda_inside_async_are_not_async() -> None:
    source = (
        "import time, asyncio\n"
        "async def f(loop):\n"
        "    def blocking():\n"
        "        time.sleep(1)\n"
        "    await loop.run_in_executor(None, lambda: time.sleep(1))\n"
        "    await asyncio.to_thread(blocking)\n"
    )
    assert check_source(source, "app/m.py") == []


def test_async_def_nested_in_sync_function_is_async() -> None:
    source = "import time\ndef outer():\n    async def inner():\n        time.sleep(1)\n"
    assert [(f.line, f.code) for f in check_source(source, "app/m.py")] == [(4, "BND005")]


def test_retry_loop_in_method_with_jitter_from_a_local_helper_assignment() -> None:
    source = (
        "import asyncio, random\n"
        "class C:\n"
        "    async def call(self):\n"
        "        jitter = random.random\n"
        "        for attempt in range(3):\n"
        "            try:\n"
        "                return await self.f()\n"
        "            except OSError:\n"
        "                await asyncio.sleep(2 ** attempt * jitter())\n"
    )
    assert check_source(source, "app/m.py") == []


def test_loop_argument_only_where_asyncio_removed_it() -> None:
    source = (
        "import asyncio\n"
        "async def f(loop):\n"
        "    t = asyncio.Task(f(loop), loop=loop)\n"  # Task and Future still take loop=
        "    asyncio.ensure_future(t, loop=loop)\n"  # dropped: BND009, loop= is fine here
        "    await asyncio.wait_for(t, 1, loop=loop)\n"
    )
    got = [(f.line, f.code) for f in check_source(source, "app/m.py")]
    assert got == [(4, "BND009"), (5, "BND004")]


def test_every_finding_carries_a_fix() -> None:
    source = (FIXTURES / "bnd005_blocking_call_in_async.py").read_text(encoding="utf-8")
    for finding in check_source(source, "app/x.py"):
        assert finding.fix
        assert "bounded" in finding.fix or "asyncio" in finding.fix


def test_deeply_nested_generated_code_is_checked_not_crashed() -> None:
    deep = "x = " + " + ".join(["a"] * 1500)
    source = f"import time\nasync def f(a):\n    time.sleep(1)\n{deep}\n"
    got = [(f.line, f.code) for f in check_source(source, "app/gen.py")]
    assert got == [(3, "BND005")]
    too_deep = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    assert [f.code for f in check_source(too_deep, "app/gen2.py")] == ["BND000"]


def test_real_code_is_checked_without_errors() -> None:
    """The standard library's async and networking packages: no crash, sane positions."""
    import asyncio
    import email
    import http
    import json
    import logging

    files = [
        p
        for module in (asyncio, email, http, json, logging)
        for p in Path(module.__file__).parent.rglob("*.py")  # type: ignore[arg-type]
    ]
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        lines = data.count(b"\n") + 1
        for finding in check_source(data, str(path)):
            assert finding.code in RULES
            assert finding.code != "BND000", finding
            assert 1 <= finding.line <= lines
            assert finding.column >= 1


def _project(files: dict[str, str], codes: list[str] | None = None) -> list[tuple[str, int, str]]:
    from bounded.audit import Project

    project = Project(codes)
    findings = []
    for path, source in files.items():
        findings += project.check(source, path)
    findings += project.finish()
    return sorted((f.path, f.line, f.code) for f in findings)


def test_a_base_class_in_another_module_that_closes_the_attribute_owns_it() -> None:
    base = "class Base:\n    async def aclose(self):\n        await self._client.aclose()\n"
    child = (
        "import httpx\n"
        "from app.base import Base\n"
        "class Child(Base):\n"
        "    def __init__(self):\n"
        "        self._client = httpx.AsyncClient()\n"
        "        self._other = httpx.AsyncClient()\n"
    )
    # the base closes _client, nobody closes _other
    assert _project({"app/base.py": base, "app/child.py": child}) == [("app/child.py", 6, "BND006")]
    # without the base in the run nothing says the object has a lifecycle: silent
    assert _project({"app/child.py": child}) == []


def test_a_semaphore_held_in_another_module_bounds_the_gather() -> None:
    helper = (
        "import asyncio\n"
        "SEM = asyncio.Semaphore(8)\n"
        "async def fetch_one(url):\n"
        "    async with SEM:\n"
        "        return url\n"
    )
    caller = (
        "import asyncio\n"
        "from app.helper import fetch_one\n"
        "async def fetch_all(store):\n"
        "    return await asyncio.gather(*[fetch_one(u) for u in await store.list_urls()])\n"
    )
    assert _project({"app/helper.py": helper, "app/caller.py": caller}) == []
    assert _project({"app/caller.py": caller}) == [("app/caller.py", 4, "BND001")]


def test_a_method_another_module_defines_is_bnd001_an_injected_callable_bnd011() -> None:
    base = "class Store:\n    async def embed(self, text):\n        return await self.api(text)\n"
    child = (
        "import asyncio\n"
        "from app.base import Store\n"
        "class Vectors(Store):\n"
        "    async def upsert(self):\n"
        "        return await asyncio.gather(*[self.embed(t) for t in await self.db.list()])\n"
    )
    both = ["BND001", "BND011"]
    # the run defines `embed`: the per-item work is in sight, a default finding
    assert _project({"app/base.py": base, "app/child.py": child}, both) == [
        ("app/child.py", 5, "BND001")
    ]
    # nothing in the run defines it: an attribute holding a callable someone injected
    assert _project({"app/child.py": child}, both) == [("app/child.py", 5, "BND011")]
    assert _project({"app/child.py": child}) == []  # BND011 is off by default
    # selecting only the opt-in code runs BND001's check but reports only BND011
    assert _project({"app/base.py": base, "app/child.py": child}, ["BND011"]) == []
    assert _project({"app/child.py": child}, ["BND011"]) == [("app/child.py", 5, "BND011")]


def test_a_private_helper_fed_data_by_a_caller_in_another_module_is_data_sized() -> None:
    base = (
        "class Store:\n"
        "    async def upsert(self, records):\n"
        "        rows = await self.db.fetch_all(records)\n"
        "        return await self._inner_upsert(rows)\n"
    )
    child = (
        "import asyncio\n"
        "from app.base import Store\n"
        "class Redis(Store):\n"
        "    async def _inner_upsert(self, rows):\n"
        "        return await asyncio.gather(*[self._one(r) for r in rows])\n"
        "    async def _one(self, row):\n"
        "        return await self.client.hset(row)\n"
    )
    both = ["BND001", "BND015"]
    # a caller in the run hands the private helper what a listing read returned: BND001
    assert _project({"app/base.py": base, "app/child.py": child}, both) == [
        ("app/child.py", 5, "BND001")
    ]
    # no caller in sight: the helper's list may be anything the program made (opt-in)
    assert _project({"app/child.py": child}, both) == [("app/child.py", 5, "BND015")]
    # a per-item coroutine that never awaits in any module of the run: no I/O (opt-in)
    computes = child.replace("return await self.client.hset(row)", "return row")
    assert _project({"app/base.py": base, "app/child.py": computes}, both) == [
        ("app/child.py", 5, "BND015")
    ]


def test_opt_in_rules_are_off_by_default_and_name_their_parent() -> None:
    from bounded.audit import expand_codes

    opt_in = {code: rule.parent for code, rule in RULES.items() if rule.parent}
    assert opt_in == {
        "BND011": "BND001",
        "BND012": "BND005",
        "BND013": "BND008",
        "BND014": "BND003",
        "BND015": "BND001",
    }
    assert all(not RULES[code].default and RULES[parent].default for code, parent in opt_in.items())
    assert expand_codes(["ALL"]).isdisjoint(opt_in)


def _seen_only_with_its_helper(path: str, helper: str, other: str, caller: str, line: int) -> None:
    """`caller`'s retry loop is BND008 at `line` with `helper` at `path` in the run, and
    quiet with `other` there instead or with no module there (the benefit of the doubt)."""
    assert _project({path: helper, "app/caller.py": caller}) == [("app/caller.py", line, "BND008")]
    assert _project({path: other, "app/caller.py": caller}) == []
    assert _project({"app/caller.py": caller}) == []


def test_a_deterministic_backoff_helper_in_another_module_is_seen() -> None:
    helper = "def compute_backoff(attempt):\n    return min(30, 2 ** attempt)\n"
    jittered = (
        "import random\ndef compute_backoff(attempt):\n    return random.uniform(0, 2 ** attempt)\n"
    )
    caller = (
        "import asyncio\n"
        "from app.retry import compute_backoff\n"
        "async def call(op):\n"
        "    for attempt in range(5):\n"
        "        try:\n"
        "            return await op()\n"
        "        except OSError:\n"
        "            await asyncio.sleep(compute_backoff(attempt))\n"
    )
    _seen_only_with_its_helper("app/retry.py", helper, jittered, caller, 8)


def test_a_generator_of_attempt_numbers_in_another_module_makes_a_retry_loop() -> None:
    counter = (
        "def retry_range(retries):\n"
        "    attempt = 0\n"
        "    while attempt != retries:\n"
        "        attempt += 1\n"
        "        yield attempt\n"
    )
    items = "def retry_range(client):\n    for page in client.pages():\n        yield page\n"
    caller = (
        "import asyncio\n"
        "from .helpers import retry_range\n"
        "async def call(op, retries):\n"
        "    for attempt in retry_range(retries):\n"
        "        try:\n"
        "            return await op()\n"
        "        except OSError:\n"
        "            await asyncio.sleep(2)\n"
    )
    # alone, not seen: maybe a loop over items
    _seen_only_with_its_helper("app/helpers.py", counter, items, caller, 8)


def test_an_injected_delay_function_defaulting_to_another_modules_helper_is_seen() -> None:
    helper = "def default_backoff(retry):\n    return 2 ** min(retry, 9) / 1000\n"
    jittered = (
        "import random\ndef default_backoff(retry):\n    return random.uniform(0, 2 ** retry)\n"
    )
    caller = (
        "import asyncio\n"
        "from app.net import default_backoff\n"
        "async def post(op, retry_delay=None):\n"
        "    delay_func = retry_delay or default_backoff\n"
        "    for retry in range(5):\n"
        "        try:\n"
        "            return await op()\n"
        "        except OSError:\n"
        "            await asyncio.sleep(delay_func(retry))\n"
    )
    _seen_only_with_its_helper("app/net.py", helper, jittered, caller, 9)


def test_a_lone_http_client_per_call_needs_more_evidence() -> None:
    one = (
        "import httpx\n\n"
        "async def refresh_prices(self):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        self.prices = (await client.get(URL)).json()\n"
    )
    assert check_source(one, "app/m.py", codes=["BND002"]) == []
    # a second one per call: the module shares no client, each of its operations pays
    two = one + (
        "\nasync def search(q):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        return await client.get(URL, params={'q': q})\n"
    )
    assert [f.line for f in check_source(two, "app/m.py", codes=["BND002"])] == [4, 8]
    # alone, but the default of a client the caller may pass, or built in a loop
    default = one.replace("httpx.AsyncClient()", "shared or httpx.AsyncClient()")
    assert [f.line for f in check_source(default, "app/m.py", codes=["BND002"])] == [4]
    looped = "import httpx\n\nasync def fetch_each(urls):\n    for u in urls:\n" + (
        "        async with httpx.AsyncClient() as c:\n            await c.get(u)\n"
    )
    assert [f.line for f in check_source(looped, "app/m.py", codes=["BND002"])] == [5]
    # a command-line tool's module: a command runs once per process
    assert check_source(two, "pkg/cli/commands.py", codes=["BND002"]) == []


def test_a_lone_http_client_on_the_modules_request_path_is_one_per_call() -> None:
    hub = (
        "import httpx\n\n"
        "class Service:\n"
        "    async def request(self, method, url):\n"
        "        async with httpx.AsyncClient() as client:\n"
        "            return await client.request(method, url)\n\n"
        "    async def get(self, url):\n"
        "        return await self.request('GET', url)\n\n"
        "    async def post(self, url):\n"
        "        return await self.request('POST', url)\n"
    )
    assert [f.line for f in check_source(hub, "app/m.py", codes=["BND002"])] == [5]
    # one caller: maybe a once-per-lifetime step
    one_caller = (
        hub.replace("return await self.request('POST', url)", "return url")
        .replace("def request(", "def load(")
        .replace("self.request(", "self.load(")
    )
    assert check_source(one_caller, "app/m.py", codes=["BND002"]) == []
    # the transport's own request method, called from other modules (a requester class)
    requester = (
        "import aiohttp\n\n"
        "class AiohttpRequester(UpnpRequester):\n"
        "    async def async_http_request(self, http_request):\n"
        "        async with aiohttp.ClientSession() as session:\n"
        "            async with session.request('GET', http_request.url) as response:\n"
        "                return await response.read()\n"
    )
    assert [f.line for f in check_source(requester, "app/m.py", codes=["BND002"])] == [5]
    renamed = requester.replace("async_http_request", "async_fetch_description")
    assert check_source(renamed, "app/m.py", codes=["BND002"]) == []
    # a web endpoint runs per request it serves; aiohttp.request() opens a session per call
    endpoint = (
        "from aiohttp import client as http, web\n\n"
        "routes = web.RouteTableDef()\n\n"
        "@routes.view('/proxy/{path}')\n"
        "async def proxy(request):\n"
        "    async with http.request('GET', 'http://upstream/') as upstream:\n"
        "        async for chunk in upstream.content.iter_chunked(1024):\n"
        "            await request.write(chunk)\n"
    )
    assert [f.line for f in check_source(endpoint, "app/m.py", codes=["BND002"])] == [7]
    unrouted = endpoint.replace("@routes.view('/proxy/{path}')\n", "")
    assert check_source(unrouted, "app/m.py", codes=["BND002"]) == []
    # the attempt nested in the request method (retried by tenacity): one per request
    attempt = (
        "import aiohttp\n\n"
        "async def async_http_request(method, url):\n"
        "    @retry(stop=stop_after_attempt(3))\n"
        "    async def _make_request():\n"
        "        async with aiohttp.ClientSession() as session:\n"
        "            async with session.request(method, url) as response:\n"
        "                return await response.json()\n"
        "    return await _make_request()\n"
    )
    assert [f.line for f in check_source(attempt, "app/m.py", codes=["BND002"])] == [6]
    elsewhere = attempt.replace("async_http_request", "async_fetch_description")
    assert check_source(elsewhere, "app/m.py", codes=["BND002"]) == []
    # a framework's per-call hook: LangChain calls _acall once per model call
    hook = requester.replace("async_http_request", "_acall")
    assert [f.line for f in check_source(hook, "app/m.py", codes=["BND002"])] == [5]
    # a fetch that fills a cache on the object, or one session for a batch or its retries
    cache = hub.replace(
        "            return await client.request(method, url)\n",
        "            self.table = await client.request(method, url)\n",
    )
    assert check_source(cache, "app/m.py", codes=["BND002"]) == []
    batch = hub.replace(
        "            return await client.request(method, url)\n",
        "            for u in url:\n                await client.request(method, u)\n",
    )
    assert check_source(batch, "app/m.py", codes=["BND002"]) == []
    # a key set fetched when the cached one is stale: once per key rotation
    jwks = hub.replace("client.request(method, url)", "client.get(self._jwks_url)")
    assert check_source(jwks, "app/m.py", codes=["BND002"]) == []
    # the library re-exported by a shim of the package picks one of httpx and httpx2
    shim = hub.replace("import httpx\n", "from pkg._httpx import httpx\n")
    assert [f.line for f in check_source(shim, "app/m.py", codes=["BND002"])] == [5]
    # nested functions of the same name in two functions: not one function called twice
    nested = (
        "import httpx\n\n"
        "def sync_path():\n"
        "    return run()\n\n"
        "def async_path(url):\n"
        "    async def run():\n"
        "        async with httpx.AsyncClient() as client:\n"
        "            return await client.get(url)\n"
        "    return run()\n\n"
        "def other():\n"
        "    return run()\n"
    )
    assert check_source(nested, "app/m.py", codes=["BND002"]) == []


def test_the_functions_of_an_oauth_package_run_once_per_login() -> None:
    providers = (
        "import httpx\n\n"
        "async def google_account(token):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        return (await client.get(USERINFO, headers=token)).json()\n\n"
        "async def exchange(code):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        return (await client.post(TOKEN_URL, data=code)).json()\n\n"
        "async def introspect_token(token):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        return (await client.post(INTROSPECT, data=token)).json()\n\n"
        "async def validate_token(token):\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        return (await client.get(JWKS_CHECK, params=token)).json()\n"
    )
    # outside an OAuth package: a client per call in four places, no shared one
    assert len(check_source(providers, "app/services/providers.py", codes=["BND002"])) == 4
    # in one: profile fetches and code exchanges run once per login; checking a presented
    # token runs per request
    found = check_source(providers, "app/connection/oauth/providers.py", codes=["BND002"])
    assert [f.line for f in found] == [12, 16]
    # a folder above the project named like OAuth says nothing about this module
    path = "home/dev/oauth-demo/app/services/providers.py"
    assert len(check_source(providers, path, codes=["BND002"])) == 4


def test_an_endpoint_only_an_administrator_calls_is_not_an_operation_under_load() -> None:
    routes = (
        "import aiohttp\n"
        "from fastapi import Depends\n\n"
        "async def add_pipeline(form, user=Depends(get_admin_user)):\n"
        "    async with aiohttp.ClientSession() as session:\n"
        "        return await session.post(form.url)\n\n"
        "async def inlet_filter(payload, user=Depends(get_verified_user)):\n"
        "    async with aiohttp.ClientSession() as session:\n"
        "        return await session.post(payload.url)\n\n"
        "async def outlet_filter(payload, user=Depends(get_verified_user)):\n"
        "    async with aiohttp.ClientSession() as session:\n"
        "        return await session.post(payload.url)\n"
    )
    # the two per-message filters share no client; the admin action is not counted
    assert [f.line for f in check_source(routes, "app/m.py", codes=["BND002"])] == [9, 13]


def test_retry_loops_of_a_command_line_tool_are_not_reported() -> None:
    retry = (
        "import time\n\n"
        "def fetch(call):\n"
        "    for attempt in range(5):\n"
        "        try:\n"
        "            return call()\n"
        "        except ConnectionError:\n"
        "            time.sleep(2)\n"
    )
    assert [f.line for f in check_source(retry, "pkg/client.py", codes=["BND008"])] == [8]
    # one user's command: no fleet retries in step with it
    assert check_source(retry, "pkg/cli/exports.py", codes=["BND008"]) == []
    assert check_source(retry, "pkg/cli.py", codes=["BND008"]) == []


def test_retry_loops_in_a_script_run_by_hand_are_not_reported() -> None:
    body = (
        "import asyncio\n"
        "async def fetch(call):\n"
        "    while True:\n"
        "        try:\n"
        "            return await call()\n"
        "        except ConnectionError:\n"
        "            await asyncio.sleep(1)\n"
    )
    assert [f.code for f in check_source(body, "app/m.py")] == ["BND008"]
    script = body + "\nif __name__ == '__main__':\n    asyncio.run(fetch(print))\n"
    assert check_source(script, "app/m.py") == []


def test_a_module_that_runs_its_loop_at_module_level_is_a_script() -> None:
    body = (
        "import asyncio\n"
        "import aiomysql\n"
        "async def example(loop):\n"
        "    conn = await aiomysql.connect(host='127.0.0.1', loop=loop)\n"
        "    async with conn.cursor() as cur:\n"
        "        await cur.execute('SELECT 42')\n"
        "    conn.close()\n"
    )
    assert [f.line for f in check_source(body, "examples/example.py")] == [4]
    for runs in ("asyncio.run(example(None))\n", "loop.run_until_complete(example(loop))\n"):
        assert check_source(body + runs, "examples/example.py") == []
    # a function that drives a loop is not the module running one on import
    helper = body + "def run(loop):\n    loop.run_until_complete(example(loop))\n"
    assert [f.line for f in check_source(helper, "examples/example.py")] == [4]


def test_a_deferred_finding_is_reported_once() -> None:
    helper = "def backoff_time(attempt):\n    return min(10, 2 ** attempt)\n"
    caller = (
        "import asyncio\n"
        "from app.net import backoff_time\n"
        "async def call(op):\n"
        "    attempt = 0\n"
        "    while True:\n"
        "        attempt += 1\n"
        "        try:\n"
        "            response = await op()\n"
        "        except OSError:\n"
        "            raise\n"
        "        if response.busy:\n"
        "            await asyncio.sleep(backoff_time(attempt))\n"
        "            continue\n"
        "        try:\n"
        "            body = response.json()\n"
        "        except ValueError:\n"
        "            raise\n"
        "        return body\n"
    )
    # two try statements in one retry loop see the same sleep: one finding
    assert _project({"app/net.py": helper, "app/caller.py": caller}) == [
        ("app/caller.py", 12, "BND008")
    ]


def test_a_chat_bot_command_is_not_a_cli_command() -> None:
    source = (
        "import requests\n"
        "import discord.ext.commands\n"
        "bot = discord.ext.commands.Bot()\n"
        "@bot.command()\n"
        "async def deploy(ctx):\n"
        "    requests.get('https://example.com/deploy')\n"
    )
    assert [f.code for f in check_source(source, "bot.py")] == ["BND005"]
    cli = source.replace("import discord.ext.commands", "import discord.ext.commands, typer")
    assert check_source(cli, "cli.py") == []


def test_a_flask_view_runs_alone_on_its_loop() -> None:
    source = (
        "import requests\n"
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        "@app.route('/deploy')\n"
        "async def deploy():\n"
        "    requests.get('https://example.com/deploy')\n"
        "async def helper():\n"
        "    requests.get('https://example.com/deploy')\n"
    )
    # the view is quiet; a coroutine that is not a view is still checked
    assert [f.line for f in check_source(source, "views.py")] == [8]
    blueprint = source.replace("Flask", "Blueprint").replace("app.route", "app.get")
    assert [f.line for f in check_source(blueprint, "views.py")] == [8]
    # Quart serves every view on one shared loop; a FastAPI-style router is not Flask
    quart = source.replace("import requests\n", "import requests\nimport quart\n")
    assert [f.line for f in check_source(quart, "views.py")] == [7, 9]
    fastapi = source.replace("from flask import Flask", "from fastapi import FastAPI as Flask")
    assert [f.line for f in check_source(fastapi, "views.py")] == [6, 8]


def test_a_console_session_that_waits_on_input_runs_alone() -> None:
    source = (
        "import time\n"
        "async def record():\n"
        "    while input('next? ') != 'stop':\n"
        "        time.sleep(1)\n"
        "async def serve():\n"
        "    time.sleep(1)\n"
    )
    # the console session is quiet; a coroutine that does not read the console is checked
    assert [f.line for f in check_source(source, "record.py")] == [6]
    # a function of the module named input is not the console
    shadowed = source + "def input(prompt):\n    return prompt\n"
    assert [f.line for f in check_source(shadowed, "record.py")] == [4, 6]


def test_a_demo_under_the_main_guard_runs_on_no_serving_loop() -> None:
    source = (
        "import asyncio\n"
        "import time\n"
        "from openai import OpenAI\n"
        "async def serve():\n"
        "    time.sleep(1)\n"
        "if __name__ == '__main__':\n"
        "    async def chat():\n"
        "        client = OpenAI()\n"
        "        time.sleep(1)\n"
        "    asyncio.run(chat())\n"
    )
    # the module's own coroutine is checked; the hand-run demo below the guard is not
    assert [f.line for f in check_source(source, "agent.py")] == [5]
    unguarded = source.replace("if __name__ == '__main__':", "if True:")
    assert [f.line for f in check_source(unguarded, "agent.py")] == [5, 8, 9]


def test_coroutines_a_module_steps_itself_without_a_loop_do_not_block_one() -> None:
    source = (
        "import socket\n"
        "import time\n"
        "class Connection:\n"
        "    async def connect(self, host):\n"
        "        socket.getaddrinfo(host, 443)\n"
        "        time.sleep(1)\n"
        "class Client:\n"
        "    def _iter_coroutine(self, coro):\n"
        "        try:\n"
        "            coro.send(None)\n"
        "        except StopIteration as ex:\n"
        "            return ex.value\n"
        "    def connect(self, host):\n"
        "        return self._iter_coroutine(Connection().connect(host))\n"
    )
    assert check_source(source, "blocking_client.py") == []
    # stepping a generator of its own is not running coroutines without a loop
    local = source.replace("def _iter_coroutine(self, coro):", "def _iter_coroutine(self):")
    local = local.replace("coro.send(None)", "coro = iter([]); coro.send(None)")
    assert [f.line for f in check_source(local, "blocking_client.py")] == [5, 6]
    caught = source.replace("except StopIteration", "except RuntimeError")
    assert [f.line for f in check_source(caught, "blocking_client.py")] == [5, 6]


def test_a_blocking_function_or_method_of_another_module_is_resolved_by_import() -> None:
    net = (
        "import time\n"
        "def wait_for_endpoint(url):\n"
        "    time.sleep(0.1)\n"
        "class Deployer:\n"
        "    def start(self):\n"
        "        time.sleep(1)\n"
    )
    other = (
        "def wait_for_endpoint(url):\n"
        "    return url\n"
        "class Server:\n"
        "    def start(self):\n"
        "        pass\n"
    )
    caller = (
        "from app.net import wait_for_endpoint, Deployer\n"
        "from app.other import Server\n"
        "import app.other\n"
        "async def connect(url):\n"
        "    wait_for_endpoint(url)\n"
        "    app.other.wait_for_endpoint(url)\n"
        "    Deployer().start()\n"
        "    server = Server()\n"
        "    server.start()\n"
    )
    files = {"app/net.py": net, "app/other.py": other, "app/caller.py": caller}
    assert _project(files) == [("app/caller.py", 5, "BND005"), ("app/caller.py", 7, "BND005")]
    # the defining module not in the run: nothing says the function blocks
    assert _project({"app/caller.py": caller, "app/other.py": other}) == []


def test_a_handler_task_is_kept_by_an_emitter_that_keeps_what_handlers_return() -> None:
    # Playwright's objects (pyee's AsyncIOEventEmitter) schedule and keep a returned future
    handler = "    page.on('download', lambda d: asyncio.create_task(save(d)))\n"
    source = "import asyncio\n{}\nasync def save(d): ...\n\ndef attach(page):\n" + handler
    kept = source.format("from playwright.async_api import Page")
    assert check_source(kept, "app/m.py") == []
    dropped = source.format("from pyee import EventEmitter")
    assert [(f.line, f.code) for f in check_source(dropped, "app/m.py")] == [(6, "BND009")]


def test_a_thread_pool_subclass_in_another_module_makes_result_timeout_a_finding() -> None:
    pools = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "class BaseExecutor(ThreadPoolExecutor): ...\n"
        "class ContextThreadPoolExecutor(BaseExecutor): ...\n"
        "class LoggingExecutor: ...\n"
    )
    caller = (
        "from app.pools import ContextThreadPoolExecutor, LoggingExecutor\n"
        "def run(fn, timeout):\n"
        "    with ContextThreadPoolExecutor(max_workers=1) as pool:\n"
        "        future = pool.submit(fn)\n"
        "        return future.result(timeout=timeout)\n"
        "def log(fn, timeout):\n"
        "    pool = LoggingExecutor()\n"
        "    return pool.submit(fn).result(timeout=timeout)\n"
    )
    assert _project({"app/pools.py": pools, "app/caller.py": caller}) == [
        ("app/caller.py", 5, "BND003")
    ]


def test_a_blocking_chain_crosses_modules_and_stops_at_the_librarys_own_code() -> None:
    store = (
        "import chromadb\n"
        "class Memory:\n"
        "    collection: chromadb.Collection\n"
        "    def nearest(self, text):\n"
        "        return self.collection.query(query_texts=[text])\n"
        "    def recall(self, text):\n"
        "        return self.nearest(text)\n"
    )
    agent = (
        "from pkg.store import Memory\n"
        "async def answer(memory: Memory, text):\n"
        "    return memory.recall(text)\n"
    )
    # recall() -> nearest() -> a chromadb query, two hops away in another module
    assert _project({"pkg/store.py": store, "pkg/agent.py": agent}) == [
        ("pkg/agent.py", 3, "BND005")
    ]
    # inside chromadb itself its types annotate its own objects, not its clients
    assert _project({"chromadb/store.py": store, "chromadb/agent.py": agent}) == []


def test_a_chain_makes_a_method_block_only_if_every_definition_of_it_does() -> None:
    client = (
        "import requests\n"
        "class Client:\n"
        "    def fetch(self):\n"
        "        return self._get()\n"
        "    def _get(self):\n"
        "        return requests.get('https://example.com')\n"
    )
    caller = (
        "from app.client import Client\n"
        "async def main(client: Client):\n"
        "    return client.fetch()\n"
    )
    assert _project({"app/client.py": client, "app/main.py": caller}) == [
        ("app/main.py", 3, "BND005")
    ]
    # a class of the same name in another module whose fetch() does not block, or is async
    cached = "class Client:\n    def fetch(self):\n        return self.cached\n"
    for other in (cached, cached.replace("def fetch", "async def fetch")):
        files = {"app/client.py": client, "app/aio/client.py": other, "app/main.py": caller}
        assert _project(files) == [], other


def test_a_method_known_by_name_only_and_handed_to_a_scheduler_is_a_coroutine() -> None:
    waiter = "import time\nclass Poller:\n    def wait(self):\n        time.sleep(1)\n"
    page = (
        "import asyncio\n"
        "async def serve(client, tasks):\n"
        "    tasks.create(client.ready.wait())\n"
        "    await asyncio.wait_for(client.ready.wait(), 5)\n"
        "    client.ready.wait()\n"
    )
    # only the bare call can be the sync wait() the run defines: the scheduled ones are
    # coroutines (an asyncio.Event's wait)
    assert _project({"app/poller.py": waiter, "app/page.py": page}) == [
        ("app/page.py", 5, "BND005")
    ]


def test_a_retry_on_errors_of_a_library_the_module_only_imports_errors_from_never_fires() -> None:
    retried = (
        "from tenacity import retry, retry_if_exception_type, wait_exponential\n"
        "@retry(wait=wait_exponential(min=4, max=10),\n"
        "       retry=retry_if_exception_type((RateLimitError, APIConnectionError)))\n"
        "async def complete(model, prompt):\n"
        "    return await model.generate(prompt)\n"
    )
    local = "from openai import APIConnectionError, RateLimitError\n" + retried
    remote = "from openai import AsyncOpenAI, APIConnectionError, RateLimitError\n" + retried
    whole = "import openai\n" + retried.replace("(RateLimitError,", "(openai.RateLimitError,")
    # a local model raises no OpenAI error: the retry never fires; a module that also
    # builds the client (or imports the whole SDK) may well raise them
    assert _project({"app/local.py": local}) == []
    assert _project({"app/remote.py": remote}) == [("app/remote.py", 3, "BND008")]
    assert _project({"app/whole.py": whole}) == [("app/whole.py", 3, "BND008")]


def test_an_mcp_session_opener_in_another_module_makes_one_session_per_call() -> None:
    sessions = (
        "from contextlib import asynccontextmanager\n"
        "from mcp import ClientSession\n"
        "@asynccontextmanager\n"
        "async def _stdio_session(read, write):\n"
        "    async with ClientSession(read, write) as session:\n"
        "        yield session\n"
        "@asynccontextmanager\n"
        "async def create_session(connection):\n"
        "    async with _stdio_session(*connection) as session:\n"
        "        yield session\n"
    )
    tools = (
        "from app.sessions import create_session\n"
        "async def call(connection, name, args):\n"
        "    async with create_session(connection) as session:\n"
        "        await session.initialize()\n"
        "        return await session.call_tool(name, args)\n"
    )
    # the opener two managers away enters a ClientSession: one server per tool call
    assert _project({"app/sessions.py": sessions, "app/tools.py": tools}) == [
        ("app/tools.py", 3, "BND002")
    ]
    # a manager the run does not define may hand out a shared session: silent
    assert _project({"app/tools.py": tools}) == []


def test_a_module_no_import_can_name_that_only_defines_never_runs() -> None:
    from bounded.audit import check_source

    source = "import asyncio\nasync def refresh(cache):\n    asyncio.create_task(cache.reload())\n"
    assert [f.code for f in check_source(source, "pkg/client.py")] == ["BND009"]
    # a shipped backup copy: `import pkg.client.backup` cannot reach it, and it only defines
    assert check_source(source, "pkg/client.backup.py") == []
    # a script with such a name that runs its code is still checked
    script = source + "result = asyncio.run(refresh(None))\n"
    assert [f.code for f in check_source(script, "pkg/run-all.py")] == ["BND009"]


def test_a_retry_on_the_projects_own_error_that_nothing_raises_never_fires() -> None:
    errors = (
        "class APIError(Exception):\n    pass\n"
        "class RateLimitError(APIError):\n    pass\n"
        "class QuotaError(RateLimitError):\n    pass\n"
    )
    local_model = (
        "from tenacity import retry, retry_if_exception_type, wait_exponential\n"
        "from app.errors import RateLimitError\n"
        "from app.prompts import render\n"
        "@retry(wait=wait_exponential(min=4), retry=retry_if_exception_type(RateLimitError))\n"
        "async def generate(model, prompt):\n"
        "    return await model.generate(render(prompt))\n"
    )
    remote = "from app.errors import QuotaError\ndef check(r):\n    raise QuotaError(r)\n"
    # nothing in the run raises the class or a subclass: the library never retries
    assert _project({"app/errors.py": errors, "app/local.py": local_model}) == []
    # a subclass raised anywhere in the run makes the retry real
    assert _project(
        {"app/errors.py": errors, "app/local.py": local_model, "app/remote.py": remote}
    ) == [("app/local.py", 4, "BND008")]
    # built through its module (``errors.QuotaError(...)``), it is raised all the same
    through_module = "from app import errors\ndef check(r):\n    raise errors.QuotaError(r)\n"
    assert _project(
        {"app/errors.py": errors, "app/local.py": local_model, "app/remote.py": through_module}
    ) == [("app/local.py", 4, "BND008")]
