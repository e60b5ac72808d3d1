"""BND008: a retry or reconnect loop that sleeps a constant or deterministic delay (no jitter),
or that retries a lost connection with no pause at all."""

from __future__ import annotations

import ast
import builtins
import functools
import itertools
import re
from collections.abc import Callable
from typing import cast

from bounded.audit.core import Rule
from bounded.audit.local_work import (
    is_local_attempt,
    is_local_call,
    is_local_function,
    is_page_query,
    own_nodes,
)
from bounded.audit.model import (
    CallHook,
    ClassScope,
    Function,
    Loop,
    ModuleModel,
    ProjectFacts,
    Scope,
    callee_name,
    param_default,
)
from bounded.audit.names import (
    assign_targets,
    caught_types,
    dotted,
    is_self_attr,
    own_callee,
    statement_blocks,
    timeout_arg,
)
from bounded.audit.rules.bnd013_short_retry_pause import RULE as SHORT_PAUSE

RULE = Rule(
    "BND008",
    "retry-without-jitter",
    "A retry or reconnect loop that sleeps a constant or deterministic backoff, or none at "
    "all: every client retries in lock-step.",
    "use `bounded.Retry(on=..., backoff=bounded.Backoff(jitter='full'))` or add "
    "`random.uniform(...)` to the delay",
)
_SLEEPS = frozenset({"time.sleep", "asyncio.sleep", "trio.sleep", "anyio.sleep"})
# An event a thread waits on for a delay so that shutdown can cut the pause short
# (``self._shutdown_event.wait(delay)``): a sleep.
_STOP_EVENT = re.compile(r"event|stop|shutdown|exit|clos|quit|cancel|terminat", re.IGNORECASE)
_RANDOM_MODULES = ("random.", "secrets.", "numpy.random.")
_RANDOMISH = re.compile(r"jitter|random|rand", re.IGNORECASE)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Calls that keep a delay deterministic (anything else we cannot see into is given the benefit).
_PURE_QUALIFIED = frozenset({"itertools.count", "itertools.repeat"})
_PURE_CALLS = frozenset(
    {"min", "max", "float", "int", "pow", "abs", "round", "range", "enumerate", "len"}
)
_PURE_METHODS = frozenset({"total_seconds"})
_SERVER_DELAY = re.compile(r"retry.?after", re.IGNORECASE)
# Functions that poll for a state (a server up, a job done): not a retry against an outage.
_POLL_NAME = re.compile(
    r"wait|ready|readiness|poll|health|status|probe|alive|ping|test_conn|warm_?up", re.I
)
# A function named as a question about a state (``is_connected``): its loop polls for the
# answer. (A helper that only decides whether to retry may sleep the backoff itself.)
_ASKS_STATE = re.compile(r"^_?is_")
_POLL_DELAY = re.compile(r"poll", re.IGNORECASE)
# A count or spacing of health-check probes: a series of probes measures health.
_PROBE = re.compile(r"probe|health", re.IGNORECASE)
# Helpers whose result may be a delay, remembered for the other modules of the run.
_DELAY_HELPER = re.compile(r"backoff|delay|sleep|interval|retry|wait", re.IGNORECASE)
# A lost connection; the OSError family adds a file's failures to it.
_LOST_CONNECTION = r"Connection|Disconnect|ConnectError|ConnectTimeout|Closed|socket\.error"
_LOST = re.compile(_LOST_CONNECTION, re.IGNORECASE)
_DISCONNECTS = re.compile(_LOST_CONNECTION + r"|OSError|IOError", re.IGNORECASE)
Assigned = Callable[[str], list[ast.expr]]


def loop(m: ModuleModel, node: Loop, tries: list[ast.Try | ast.TryStar]) -> None:
    if m.in_cli:
        return  # a command-line tool's command: one user's process, no fleet to herd
    if _names_loopback(m) and _dials_loopback(node):
        return  # retries a server on this machine (a child process): no fleet, no herd
    if _device_flow(m):
        return  # OAuth device flow: polls at the interval the server gives (RFC 8628)
    counters = (
        _counts_attempts(m, node.iter)
        if isinstance(node, ast.For | ast.AsyncFor)
        else _counted_while(node)
    )
    if counters is None and isinstance(node, ast.For | ast.AsyncFor) and _walks_delays(m, node):
        counters = ()  # for delay in (4.0, 12.0): one attempt per delay of a schedule
    if isinstance(node, ast.For | ast.AsyncFor) and counters is not None and _probe_series(m, node):
        return  # probes at a configured spacing, however each one went: a measurement
    for try_node in tries:
        _check(m, node, try_node, () if isinstance(node, ast.While) else counters)
    # a function's loop, not a one-off script's nor a readiness poll's
    retry_scope = (
        len(m.scopes) > 1
        and not m.is_script
        and not _POLL_NAME.search(m.scope.name)
        and not _ASKS_STATE.match(m.scope.name)
    )
    if isinstance(node, ast.While) and retry_scope:
        for try_node in tries:
            _failure_sets_pause(m, node, try_node)
    if (
        counters is not None
        and retry_scope
        and _leaves(node.body)
        and (tries or not _awaits_finished_state(node.body))
    ):
        for name in _tested_calls(node.body):
            m.state(_Attempts).called[name] = counters
        # for attempt in range(n): ... return on success ... sleep; continue: a pause that
        # follows the attempt's I/O (after a failed status or an unsuccessful result) is a
        # backoff; one before the I/O paces a poll for a result that is not ready yet
        first_io = _first_io_line(m, node.body)
        if (
            first_io is None
            and isinstance(m.scope.node, ast.FunctionDef)
            and not _awaits_finished_state(node.body)  # a poll of a job's status
        ):
            first_io = _checked_result_line(node.body)  # sync code: no await marks the I/O
        _report_sleeps(
            m,
            [
                call
                for call in _sleeps_in(m, node.body, into_try=True)
                if first_io is not None and first_io < call.lineno
            ],
            counters,
        )

    if isinstance(node, ast.While) and not tries and retry_scope and _retries_until_result(node):
        # while not ok(result): sleep(delay * attempt); result = await request(); attempt += 1:
        # every pause follows a failed attempt (the one before the loop or the last round)
        _report_sleeps(m, _growing_sleeps(m, node))
    if isinstance(node, ast.While) and retry_scope:
        if _attempt_is_condition(m, node):
            _report_sleeps(m, _sleeps_in(m, node.body))  # each round follows a failure
        else:
            _report_sleeps(m, _requeued_sleeps(m, node))
    if retry_scope and (counters is not None or isinstance(node, ast.While)):
        _report_hot_retries(m, node, tries, counters or ())
    if retry_scope and isinstance(node, ast.While) and tries:
        unfailed = _after_success(m, node, tries)
        _report_sleeps(m, [c for c in _backed_off(m, node, tries) if id(c) not in unfailed])


_GROWS = (ast.Mult, ast.Pow, ast.LShift)


def _backed_off(
    m: ModuleModel, loop: ast.While, tries: list[ast.Try | ast.TryStar]
) -> list[ast.Call]:
    """``while True: try: connect(); interval = INITIAL; ... except Exception: log() ...
    sleep(interval); interval = min(interval * 2, MAX)``: the pause grows with every round
    and a successful attempt resets it, so it grows with consecutive failures. The pause
    may be kept on the object (``self._backoff``), reset by whichever method sees the
    connection succeed."""
    grown: set[str] = set()
    for sub in own_nodes(loop.body):
        target: ast.expr
        if isinstance(sub, ast.AugAssign) and isinstance(sub.op, _GROWS):
            target = sub.target
        elif isinstance(sub, ast.Assign) and len(sub.targets) == 1:
            target = sub.targets[0]
            text = dotted(target)
            if text is None or not any(
                isinstance(op, ast.BinOp)
                and isinstance(op.op, _GROWS)
                and any(dotted(n) == text for n in ast.walk(op) if isinstance(n, ast.expr))
                for op in ast.walk(sub.value)
            ):
                continue
        else:
            continue
        if isinstance(target, ast.Name) or is_self_attr(target):
            grown.add(dotted(target) or "")
    if not grown:
        return []
    # a name is reset by the attempt; an attribute by any method of the class but the
    # constructor, which only sets its first value
    attempts: list[ast.AST] = [stmt for node in tries for stmt in node.body]
    reset = _reset(attempts, {text for text in grown if "." not in text})
    if m.classes:
        methods: list[ast.AST] = [
            stmt
            for stmt in m.classes[-1].node.body
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name != "__init__"
        ]
        reset |= _reset(methods, {text for text in grown if "." in text})
    return [
        call
        for call in _sleeps_in(m, loop.body, into_try=True)
        if (delay := _delay_of(call)) is not None and _paused_by(delay) in reset
    ]


def _reset(nodes: list[ast.AST], grown: set[str]) -> set[str]:
    """Those of `grown` that `nodes` assign a value not computed from their own."""
    return {
        text
        for node in nodes
        for sub in ast.walk(node)
        if isinstance(sub, ast.Assign)
        for target in sub.targets
        if (text := dotted(target)) in grown
        and not any(dotted(n) == text for n in ast.walk(sub.value) if isinstance(n, ast.expr))
    }


def _paused_by(delay: ast.expr) -> str | None:
    """The name or attribute a delay reads (``interval``, ``self._backoff.total_seconds()``)."""
    if (
        isinstance(delay, ast.Call)
        and isinstance(delay.func, ast.Attribute)
        and delay.func.attr in _PURE_METHODS
        and not delay.args
    ):
        delay = delay.func.value
    return dotted(delay) if isinstance(delay, ast.Name) or is_self_attr(delay) else None


def _walks_delays(m: ModuleModel, loop: ast.For | ast.AsyncFor) -> bool:
    """``for delay in (*self._retry_delays, None): try: return call() except ...:
    time.sleep(delay)``: the loop walks a schedule of delays, one attempt per delay, and
    sleeps the one it is at."""
    target = loop.target
    if not isinstance(target, ast.Name) or not any(
        isinstance(sub, ast.Call)
        and any(isinstance(a, ast.Name) and a.id == target.id for a in sub.args)
        for sub in own_nodes(loop.body)
    ):
        return False  # the cheap test first: no call is handed the loop's name
    return any(
        isinstance(delay := _delay_of(call), ast.Name) and delay.id == target.id
        for call in _sleeps_in(m, loop.body, into_try=True)
    )


def _probe_series(m: ModuleModel, loop: ast.For | ast.AsyncFor) -> bool:
    """``for attempt in range(probes): ... await asyncio.sleep(check.health_check_delay)``:
    the loop's count, or a pause's delay, names a health-check probe setting."""
    delays = [_delay_of(call) for call in _sleeps_in(m, loop.body, into_try=True)]
    return any(
        _PROBE.search(dotted(sub) or "")
        for expr in [loop.iter, *delays]
        if expr is not None
        for sub in ast.walk(expr)
        if isinstance(sub, ast.Name | ast.Attribute)
    )


_LOOPBACK = re.compile(r"^\w+://(?:localhost|127\.0\.0\.1|\[::1\])(?:[:/]|$)")


def _names_loopback(m: ModuleModel) -> bool:
    """The module's source has a loopback URL somewhere."""
    return any(m.mentions(host) for host in _LOOPBACK_HOSTS)


_LOOPBACK_HOSTS = (b"://localhost", b"://127.0.0.1", b"://[::1]")


def _dials_loopback(loop: Loop) -> bool:
    """The loop's body names a loopback URL (``f"ws://localhost:{port}"``)."""
    return any(
        isinstance(sub, ast.Constant)
        and isinstance(sub.value, str)
        and _LOOPBACK.match(sub.value) is not None
        for stmt in loop.body
        for sub in ast.walk(stmt)
    )


def _failure_sets_pause(m: ModuleModel, loop: ast.While, node: ast.Try | ast.TryStar) -> None:
    """``while not stop.wait(timeout=wait): try: ...; wait = expires - 30 except: wait = 1``:
    the handler picks the next pause, so after a failure the loop retries at that fixed
    delay, every client together. A periodic loop's interval does not depend on failure."""
    on_failure: dict[str, list[ast.expr]] = {}
    for handler in node.handlers:
        for stmt in handler.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name):
                    on_failure.setdefault(target.id, []).append(stmt.value)
    # the pause set on success: in the ``try`` body, or before it as the round's default
    # (``pause = INTERVAL; try: ... except: pause = RETRY_PAUSE``)
    before = loop.body[: loop.body.index(node)] if node in loop.body else []
    on_success = {
        t.id
        for stmt in [*before, *node.body]
        for sub in ast.walk(stmt)
        if isinstance(sub, ast.Assign)
        for t in sub.targets
        if isinstance(t, ast.Name)
    }
    chosen = on_failure.keys() & on_success
    if not chosen:
        return
    waits = [
        sub
        for sub in ast.walk(loop.test)
        if isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr == "wait"
        and timeout_arg(sub, 0) is not None
    ]

    def after_failure(name: str) -> list[ast.expr]:
        return on_failure.get(name) or m.assignments(name)

    unfailed = _after_success(m, loop, [node])
    for pause in [*_sleeps_in(m, loop.body), *waits]:
        delay = _delay_of(pause) if pause not in waits else timeout_arg(pause, 0)
        if (
            id(pause) in unfailed
            or delay is None
            or not any(isinstance(n, ast.Name) and n.id in chosen for n in ast.walk(delay))
        ):
            continue
        unknown: list[str] = []
        if _deterministic(m, delay, set(), after_failure, unknown) and not unknown:
            m.report(
                pause,
                RULE.code,
                "after a failure the loop waits a fixed delay and tries again: clients retry "
                "in lock-step (add jitter)",
            )


# A condition call that asks for a state (`while not await job.is_done()`): a poll.
_PREDICATE = re.compile(
    r"^(?:is|has|can|should)_|done|ready|exists|finished|complete|empty|running|available",
    re.IGNORECASE,
)


def _attempt_is_condition(m: ModuleModel, loop: ast.While) -> bool:
    """``while not await state.send(url):``: the loop's condition is the awaited result of
    an attempt (an action, not a question about a state, nor a query of a browser page),
    so each round follows a failure."""
    test = loop.test
    if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
        return False
    call = _awaited(test.operand)
    if not isinstance(call, ast.Call):
        return False
    name = (dotted(call.func) or "").rpartition(".")[2]
    return (
        bool(name)
        and not _PREDICATE.search(name)
        and not _POLL_NAME.search(name)
        and not is_page_query(m, m.scope.node, call)
    )


_REQUEUE = frozenset({"appendleft", "put", "put_nowait", "insert", "append"})
_TAKE = frozenset({"popleft", "pop", "get", "get_nowait"})


def _requeued_sleeps(m: ModuleModel, loop: ast.While) -> list[ast.Call]:
    """``item = queue.popleft(); ... sleep(delay); queue.appendleft(item)``: the round's
    failed item goes back on the queue the loop takes from, after a pause: a retry."""
    taken: dict[str, str] = {}  # item name -> the queue it was taken from
    for stmt in loop.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            continue
        value = _awaited(stmt.value) or stmt.value
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr in _TAKE
        ):
            taken[stmt.targets[0].id] = dotted(value.func.value) or ""
    found: list[ast.Call] = []
    if not taken:
        return found
    for block in statement_blocks(loop.body, _NESTED):  # not in nested loops, functions or ``try``
        for stmt, after in itertools.pairwise(block):
            sleep = _awaited(stmt.value) if isinstance(stmt, ast.Expr) else None
            put = (_awaited(after.value) or after.value) if isinstance(after, ast.Expr) else None
            if (
                isinstance(sleep, ast.Call)
                and m.qualname(sleep.func) in _SLEEPS
                and isinstance(put, ast.Call)
                and isinstance(put.func, ast.Attribute)
                and put.func.attr in _REQUEUE
                and any(
                    isinstance(arg, ast.Name) and taken.get(arg.id) == dotted(put.func.value)
                    for arg in put.args
                )
            ):
                found.append(sleep)
    return found


def _retries_until_result(loop: ast.While) -> bool:
    """The loop's condition tests a name that its body sets from an awaited call, outside
    a function (or script) that polls for a state."""
    tested = {n.id for n in ast.walk(loop.test) if isinstance(n, ast.Name)}
    return any(
        isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Await)
        and any(isinstance(t, ast.Name) and t.id in tested for t in stmt.targets)
        for stmt in loop.body
    )


def _growing_sleeps(m: ModuleModel, loop: ast.While) -> list[ast.Call]:
    """The sleeps of the loop's body whose delay uses a counter the body increments
    (``delay * attempt``): a backoff, not a fixed polling interval."""
    counters = {
        stmt.target.id
        for stmt in loop.body
        if isinstance(stmt, ast.AugAssign)
        and isinstance(stmt.op, ast.Add)
        and isinstance(stmt.target, ast.Name)
    }
    return [
        call
        for call in _sleeps_in(m, loop.body)
        if any(
            isinstance(n, ast.Name) and n.id in counters
            for n in ast.walk(_delay_of(call) or ast.Constant(0))
        )
    ]


# Awaits that do no I/O of their own: a pause, work on an executor's thread.
_NOT_IO = frozenset({"sleep", "to_thread", "run_in_executor"})


def _first_io_line(m: ModuleModel, body: list[ast.stmt]) -> int | None:
    """The line of the first await (``async with``/``async for``) in `body` that is not a
    pause, executor work or local work (a file, a browser page's DOM): the attempt's I/O."""
    lines = []
    for node in own_nodes(body):
        if isinstance(node, ast.AsyncWith | ast.AsyncFor):
            lines.append(node.lineno)
        elif isinstance(node, ast.Await):
            value = node.value
            name = dotted(value.func) if isinstance(value, ast.Call) else None
            if (name or "").rsplit(".", 1)[-1] not in _NOT_IO and not is_local_call(m, value):
                lines.append(node.lineno)
    return min(lines) if lines else None


def _checked_result_line(body: list[ast.stmt]) -> int | None:
    """The line of the round's first ``res = client.call(...)`` whose result a later ``if``
    of the round tests, in a round that returns or breaks (``if res.is_succeeded(): return``,
    ``if res.status == 502: sleep(d); continue`` then ``return res``):
    the attempt of a synchronous retry loop, also inside the round's ``try``."""
    for i, stmt in enumerate(body):
        tried = stmt.body if isinstance(stmt, ast.Try | ast.TryStar) else None
        if tried is not None and (line := _checked_result_line(tried)):
            return line
        # ``try: resp = conn.post(...) except Exception as e: error = e`` then
        # ``if error is None and resp.ok: return``: the round's test follows the ``try``
        blocks = statement_blocks(tried, _NESTED) if tried is not None else [[stmt]]
        for block, (j, call) in ((b, s) for b in blocks for s in enumerate(b)):
            if not (
                isinstance(call, ast.Assign)
                and len(call.targets) == 1
                and isinstance(call.targets[0], ast.Name)
                and isinstance(call.value, ast.Call)
                and isinstance(call.value.func, ast.Attribute)
            ):
                continue
            name = call.targets[0].id
            rest = [*(block[j + 1 :] if block is tried else []), *body[i + 1 :]]
            if _leaves(rest) and any(
                isinstance(later, ast.If)
                and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(later.test))
                for later in rest
            ):
                return call.lineno
    return None


def _leaves(body: list[ast.stmt]) -> bool:
    """A return or break of this loop (not of a loop or function nested in it)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return | ast.Break):
            return True
        if not isinstance(node, _NESTED_BUT_TRY):
            stack.extend(ast.iter_child_nodes(node))
    return False


# The state a remote job ends in (``if state == "SUCCEEDED": break``).
_END_STATE = re.compile(
    r"^(?:succe(?:ss|eded|ssful)|fail(?:ed|ure)?|error(?:ed)?|cancel+ed|terminated|aborted)$",
    re.IGNORECASE,
)


_UP = re.compile(r"^(?:connected|online|active|up)$", re.IGNORECASE)


def _state_named(node: ast.AST) -> str | None:
    """The state a string (``"SUCCEEDED"``) or an enum member (``DeviceState.CONNECTED``)
    names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and node.attr.isupper():
        return node.attr
    return None


def _awaits_finished_state(body: list[ast.stmt]) -> bool:
    """The round leaves when a result equals a finished state (``if status == "finished":
    return file_id``, ``if "SUCCEEDED" in state: break``): the round only goes again while
    the job is not done yet, a poll of its status."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, _NESTED_BUT_TRY):
            continue
        if (
            isinstance(node, ast.If)
            and _leaves(node.body)
            and any(
                isinstance(part, ast.Compare)
                and isinstance(part.ops[0], ast.Eq | ast.In | ast.Is)
                and any(
                    (state := _state_named(c)) is not None
                    and (_PREDICATE.search(state) or _END_STATE.match(state) or _UP.match(state))
                    for side in (part.left, *part.comparators)
                    for c in ast.walk(side)
                )
                for part in ast.walk(node.test)
            )
        ):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _check(
    m: ModuleModel, loop: Loop, node: ast.Try | ast.TryStar, counters: tuple[str, ...] | None
) -> None:
    """`counters`: what the loop counts attempts with (:func:`_counts_attempts`; ``()`` for
    a ``while``)."""
    # a retry loop leaves on success (return/break), or counts attempts over a range;
    # a worker or polling loop (`while True: try: get() except Empty: sleep`) does not
    if counters is None:
        return  # a loop over work items that pauses between them is pacing, not a retry
    if len(m.scopes) == 1 or m.is_script:
        return  # a one-off script: not a retry storm
    if is_local_attempt(m, node):
        return  # local files or this process's executor: no shared dependency to herd
    if _in_memory_attempt(m, node):
        return
    poll = _POLL_NAME.search(m.scope.name) or _ASKS_STATE.match(m.scope.name)
    direct = any(stmt is node for stmt in loop.body)
    retrying = _leaves_on_success(loop, node)
    if poll:
        # a readiness wait paces its polls and gives up after a count of them (or at a
        # deadline), but one that never gives up, leaves on success and pauses a second or
        # more after a caught failure retries an outage (`wait_for_connection` at every
        # bridge's start-up)
        if retrying and isinstance(loop, ast.While) and not _gives_up_at_deadline(m, loop):
            _report_sleeps(
                m,
                [c for h in node.handlers for c in _sleeps_in(m, h.body) if _long_constant(m, c)],
            )
        return
    counted = isinstance(loop, ast.For | ast.AsyncFor) and _counts_range(loop.iter)
    # a loop that pauses only when its work failed and then goes round again retries that
    # work, whatever the error (`while running: try: fetch() except Exception: sleep(5)`);
    # one that also pauses on success is paced (a periodic job), not retrying
    # (a pause inside the connection the attempt holds open is part of that session: the
    # round is a reconnect, `async with websockets.connect(url) as ws: ...; sleep(settle)`)
    in_session = _session_pauses(m, node.body)
    paced = bool(_sleeps_in(m, [stmt for stmt in loop.body if stmt is not node])) or any(
        id(call) not in in_session
        for call in _sleeps_in(m, [*node.body, *node.orelse, *node.finalbody])
    )
    sleeps: list[ast.Call] = []
    if direct and _rearmed_by_failure(loop, node):
        # the round goes again at once only when its attempt failed: every pause after the
        # attempt follows a failure, wherever it is in the round
        after = loop.body[loop.body.index(node) + 1 :]
        sleeps.extend(_sleeps_in(m, [*after, *(s for h in node.handlers for s in h.body)]))
        _report_sleeps(m, sleeps, counters)
        return
    # the pause the round takes after the attempt whatever happened: a periodic job
    paced_after = direct and bool(
        _sleeps_in(m, loop.body[loop.body.index(node) + 1 :], into_try=True)
    )
    for handler in node.handlers:
        caught = _caught(handler)
        if caught and all(_WOULD_BLOCK.search(name) for name in caught):
            continue  # waits for its own non-blocking socket to be ready: no one to herd
        if paced_after and _goes_round_again(handler) and not _skips_ahead(handler):
            continue  # an error adds a beat to a round paced anyway: a monitor, not a retry
        # a reconnect loop (`while True: try: serve() except ConnectionError: sleep`)
        # reconnects every client at once after a server restart
        if (
            retrying
            or counted
            or _catches_disconnect(handler)
            or (not paced and _goes_round_again(handler) and not _catches_idle(handler))
        ):
            sleeps.extend(_sleeps_in(m, handler.body))
    if direct and retrying and not _awaits_finished_state(node.body):
        # a pause every round of a loop that leaves on a job's end state paces a status
        # poll; one that leaves on any success retries
        unfailed = _after_success(m, loop, [node])
        sleeps.extend(
            call
            for call in _sleeps_in(m, [stmt for stmt in loop.body if stmt is not node])
            if id(call) not in unfailed
        )
    sleeps.extend(_paused_after_failure(m, node))
    for block in (node.body, *(h.body for h in node.handlers)):
        sleeps.extend(_before_reconnect(m, block))
    _report_sleeps(m, list(dict.fromkeys(sleeps)), counters)


def _in_memory_attempt(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """A coroutine's attempt that awaits nothing and calls no function but builtins and
    classes, only methods of objects it holds (``session.transitions.connect()``,
    ``statuses.pop(upload_id)``), and catches no lost connection or timeout: its work is
    state in memory, so no dependency failed. A plain function called there
    (``broadcast(ledger, tx)``) may be a blocking client's."""
    if not isinstance(m.scope.node, ast.AsyncFunctionDef) or any(
        _catches_disconnect(h) or any("Timeout" in name for name in _caught(h))
        for h in node.handlers
    ):
        return False  # a lost connection caught: a socket's method did I/O there
    own = list(own_nodes(node.body))
    return not any(
        isinstance(sub, ast.Await | ast.AsyncFor | ast.AsyncWith)
        or (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and not sub.func.id[:1].isupper()
            and sub.func.id not in _BUILTIN_NAMES
        )
        for sub in own
    )


_BUILTIN_NAMES = frozenset(dir(builtins))


def _paused_after_failure(m: ModuleModel, node: ast.Try | ast.TryStar) -> list[ast.Call]:
    """``try: if retries > 0: sleep(delay); return await subscribe() except RpcError:
    retries += 1``: the pause waits on a name only the failures set."""
    failures = _failure_names([node])
    return [
        call
        for stmt in node.body
        if isinstance(stmt, ast.If) and _set_after_failure(stmt.test, failures)
        for call in _sleeps_in(m, stmt.body)
    ]


def _after_success(m: ModuleModel, loop: Loop, tries: list[ast.Try | ast.TryStar]) -> set[int]:
    """The ids of the pauses under ``if error is None:`` (or ``if not error:``) where the
    ``try``'s handlers set ``error``: they run only when the round did not fail, pacing
    a poll (``if error_to_retry is None: sleep(interval)``), not backing off."""
    failures = _failure_names(tries)
    if not failures:
        return set()
    return {
        id(call)
        for sub in own_nodes(loop.body)
        if isinstance(sub, ast.If) and _unset_after_failure(sub.test, failures)
        for call in _sleeps_in(m, sub.body)
    }


def _failure_names(tries: list[ast.Try | ast.TryStar]) -> set[str]:
    """The names the ``except`` handlers of `tries` assign: set only after a failure."""
    return {
        target.id
        for node in tries
        for handler in node.handlers
        for sub in ast.walk(handler)
        if isinstance(sub, ast.AugAssign | ast.Assign)
        for target in assign_targets(sub)
        if isinstance(target, ast.Name)
    }


def _unset_after_failure(test: ast.expr, failures: set[str]) -> bool:
    """``if error is None:``, ``if not error:``: the test holds only while no failure has
    set the name."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return isinstance(test.operand, ast.Name) and test.operand.id in failures
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id in failures
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Is)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    )


def _set_after_failure(test: ast.expr, failures: set[str]) -> bool:
    """The test holds once a failure set the name: ``if retries:``, ``if retries > 0:``,
    ``if error is not None:`` (not ``if attempts == 0:``, the round after a success)."""
    if isinstance(test, ast.Name):
        return test.id in failures
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id in failures
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Gt | ast.GtE | ast.NotEq | ast.IsNot)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value in (0, 1, None)
    )


# A call that opens the connection or subscription again (``_connect()``, ``resubscribe()``).
_OPENS_AGAIN = re.compile(r"^_*(?:re)?(?:connect|subscribe)(?:_|$)", re.IGNORECASE)


def _session_pauses(m: ModuleModel, body: list[ast.stmt]) -> set[int]:
    """The sleeps of `body` inside a ``with`` that opens a connection for the round
    (``async with websockets.connect(url) as ws:``), by id."""
    return {
        id(call)
        for sub in ast.walk(ast.Module(body=body, type_ignores=[]))
        if isinstance(sub, ast.With | ast.AsyncWith)
        and any(
            isinstance(item.context_expr, ast.Call)
            and _OPENS_AGAIN.search(callee_name(item.context_expr) or "") is not None
            for item in sub.items
        )
        for call in _sleeps_in(m, sub.body)
    }


def _before_reconnect(m: ModuleModel, block: list[ast.stmt]) -> list[ast.Call]:
    """``sleep(RECONNECT_INTERVAL); await self._connect()``: the pause of a reconnect, in a
    handler or after a stream ended, whatever else the loop paces."""
    found: list[ast.Call] = []
    for first, then in itertools.pairwise(block):
        sleeps = _sleeps_in(m, [first])
        if sleeps and any(
            isinstance(sub, ast.Call) and _OPENS_AGAIN.search(callee_name(sub) or "")
            for sub in ast.walk(then)
        ):
            found.extend(sleeps)
    for stmt in block:
        if isinstance(stmt, ast.If):
            found.extend(_before_reconnect(m, stmt.body))
    return found


def _leaves_on_success(loop: Loop, node: ast.Try | ast.TryStar) -> bool:
    """The loop leaves once the ``try`` succeeds: it returns or breaks in the ``try``, right
    after it, or obtains what the loop's condition waits for."""
    direct = any(stmt is node for stmt in loop.body)
    return (
        _exits_on_success(node)
        or _until_obtained(loop)
        or (
            direct
            and any(
                isinstance(stmt, ast.Return | ast.Break)
                for stmt in loop.body[loop.body.index(node) + 1 :]
            )
        )
    )


_CLOCKS = frozenset({"time.time", "time.monotonic", "time.perf_counter"})


def _gives_up_at_deadline(m: ModuleModel, loop: ast.While) -> bool:
    """The loop's condition, or an ``if`` in its body that raises, compares a clock
    (``if time.time() - start > timeout: raise TimeoutError``): a bounded wait."""
    tests = [loop.test] + [
        sub.test
        for sub in ast.walk(loop)
        if isinstance(sub, ast.If) and sub.body and isinstance(sub.body[-1], ast.Raise)
    ]
    return any(
        isinstance(part, ast.Compare)
        and any(
            isinstance(call, ast.Call) and m.qualname(call.func) in _CLOCKS
            for call in ast.walk(part)
        )
        for test in tests
        for part in ast.walk(test)
    )


def _rearmed_by_failure(loop: Loop, node: ast.Try | ast.TryStar) -> bool:
    """The round starts by waiting on an event (``await self._restore.wait()``) that the
    ``try``'s handlers set again: a failed attempt starts the next round, so the loop is a
    reconnect loop, not a periodic one."""
    waited = set()
    for stmt in loop.body[: loop.body.index(node)]:
        call = _awaited(stmt.value) if isinstance(stmt, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "wait"
            and not call.args
        ):
            waited.add(dotted(call.func.value))
    waited.discard(None)
    return bool(waited) and _sets_event(node.handlers, waited)


def _sets_event(handlers: list[ast.ExceptHandler], events: set[str | None]) -> bool:
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr == "set"
        and dotted(sub.func.value) in events
        for handler in handlers
        for sub in ast.walk(handler)
    )


def _until_obtained(loop: Loop) -> bool:
    """``while self.coordinator_id is None: ... self.coordinator_id = found``: the loop
    leaves when its body obtains what the condition tests, so it retries until success."""
    test = loop.test if isinstance(loop, ast.While) else None
    for part in test.values if isinstance(test, ast.BoolOp) else [test]:
        if not (
            isinstance(part, ast.Compare)
            and isinstance(part.ops[0], ast.Is)
            and isinstance(part.comparators[0], ast.Constant)
            and part.comparators[0].value is None
        ):
            continue
        wanted = dotted(part.left)
        if wanted is not None and any(
            isinstance(sub, ast.Assign) and any(dotted(t) == wanted for t in sub.targets)
            for stmt in loop.body
            for sub in ast.walk(stmt)
        ):
            return True
    return False


def _report_sleeps(m: ModuleModel, sleeps: list[ast.Call], counters: tuple[str, ...] = ()) -> None:
    """Report the sleeps whose delay is deterministic; `counters` names the generators of
    other modules the loop counts attempts with (the finding waits for their definitions)."""
    for call in sleeps:
        judged = _judge(m, call)
        if judged is not None:
            _emit(m, judged, counters)


# a sleep to report: the call, its code and message, and the delay helpers of other
# modules it waits for
_Judged = tuple[ast.Call, str, str, tuple[str, ...]]


def _judge(m: ModuleModel, call: ast.Call) -> _Judged | None:
    """The finding for a retry's sleep, if its delay is deterministic."""
    found = _block_of(m, call)  # the sleep's statement list, read once for both tests
    if _paces_stream(m, call, found):
        return None
    delay = _delay_of(call)
    if delay is None or any(
        _POLL_DELAY.search(dotted(sub) or "")
        for sub in ast.walk(delay)
        if isinstance(sub, ast.Name | ast.Attribute)
    ):
        return None  # sleep(max(delay, POLL_SECONDS)): a status poll, paced on purpose
    if _read_from_error(m, delay):
        return None  # sleep(e.seconds): the delay the server's error asked for
    unknown: list[str] = []
    given = _given_before(found, delay)

    def assigned(name: str) -> list[ast.expr]:
        return given if given is not None and name == dotted(delay) else m.assignments(name)

    if not _deterministic(m, delay, set(), assigned, unknown):
        return None
    if _random_start(m, call, delay):
        return None
    if _short_constant(m, delay):
        return call, SHORT_PAUSE.code, "retry loop pauses a constant under 1 s (no jitter)", ()
    message = "retry loop sleeps a deterministic delay: clients retry in lock-step (add jitter)"
    return call, RULE.code, message, tuple(unknown)


def _paces_stream(m: ModuleModel, call: ast.Call, found: tuple[list[ast.stmt], int] | None) -> bool:
    """The pause comes after the generator yields an event to its consumer in the same
    round (``yield progress("extracting")`` then ``await asyncio.sleep(UI_DELAY)``; ``yield
    status; if done: break``, then the pause), outside any
    ``except`` handler: it paces the stream the consumer shows on the way to success, it
    does not back off from a failure (``except ...: yield retrying(); await sleep(2 **
    attempt)`` does). `found`: the sleep's block and its index there (:func:`_block_of`)."""
    fn = m.scope.node
    if found is None or fn is None:
        return False
    block, i = found
    return any(
        isinstance(before, ast.Expr) and isinstance(before.value, ast.Yield | ast.YieldFrom)
        for before in block[:i]
    ) and not any(
        isinstance(handler, ast.ExceptHandler)
        and handler.lineno <= call.lineno <= (handler.end_lineno or handler.lineno)
        for handler in ast.walk(fn)
    )


def _block_of(m: ModuleModel, call: ast.Call) -> tuple[list[ast.stmt], int] | None:
    """The innermost statement list of the function being walked that holds `call`, and
    the index of the statement in it that does."""
    fn = m.scope.node
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    around = [
        (block, i)
        for block in statement_blocks(fn.body, _DEFINITIONS)
        for i, stmt in enumerate(block)
        if any(sub is call for sub in ast.walk(stmt))
    ]
    return min(around, key=lambda found: _span(found[0][found[1]])) if around else None


def _given_before(
    found: tuple[list[ast.stmt], int] | None, delay: ast.expr
) -> list[ast.expr] | None:
    """The value the delay's name was last given in the sleep's block, before
    it (``delay = retry_delay(policy, attempt, None)`` then ``sleep(delay)`` in a handler,
    where the status branch gives it the server's Retry-After); None if that block does
    not give it one. `found`: the sleep's block and its index there."""
    if not isinstance(delay, ast.Name) or found is None:
        return None
    block, i = found
    for stmt in reversed(block[:i]):
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == delay.id
        ):
            return [stmt.value]
        if any(
            isinstance(sub, ast.Name) and sub.id == delay.id and isinstance(sub.ctx, ast.Store)
            for sub in ast.walk(stmt)
        ):
            return None  # changed on the way (``delay *= 1 + random()`` under an ``if``)
    return None


def _span(stmt: ast.stmt) -> int:
    return (stmt.end_lineno or stmt.lineno) - stmt.lineno


def _random_start(m: ModuleModel, call: ast.Call, delay: ast.expr) -> bool:
    """``if delay == MIN: sleep(random() * INITIAL) else: sleep(delay)``: a test of the delay
    picks a random first pause over the sequence's next one. The random start spreads the
    clients, and the deterministic pauses that follow keep the spread."""
    state = {
        dotted(sub)
        for sub in ast.walk(delay)
        if isinstance(sub, ast.Name | ast.Attribute) and dotted(sub) not in (None, "self", "cls")
    }
    for node in ast.walk(m.scope.node or call):
        if not (isinstance(node, ast.If) and node.orelse) or not any(
            isinstance(sub, ast.Name | ast.Attribute) and dotted(sub) in state
            for sub in ast.walk(node.test)
        ):
            continue
        for mine, other in ((node.body, node.orelse), (node.orelse, node.body)):
            if any(sub is call for stmt in mine for sub in ast.walk(stmt)) and any(
                _random(m, pause, 2)
                for sleep in _sleeps_in(m, other)
                if (pause := _delay_of(sleep)) is not None
            ):
                return True
    return False


def _random(m: ModuleModel, expr: ast.expr, depth: int) -> bool:
    """The value draws a random number, directly or through the names it was assigned."""
    for sub in ast.walk(expr):
        if isinstance(sub, ast.Call) and _random_call(m, sub.func):
            return True
        if (
            isinstance(sub, ast.Name)
            and depth
            and any(_random(m, value, depth - 1) for value in m.assignments(sub.id))
        ):
            return True
    return False


def _random_call(m: ModuleModel, func: ast.expr) -> bool:
    """``random.uniform``, ``secrets.randbelow``, ``self._jitter``: a call that draws."""
    q = m.qualname(func)
    return (
        q is not None and (q.startswith(_RANDOM_MODULES) or q == "random")
    ) or _RANDOMISH.search(dotted(func) or "") is not None


def _emit(m: ModuleModel, judged: _Judged, counters: tuple[str, ...]) -> None:
    call, code, message, unknown = judged
    if not unknown and not counters:
        m.report(call, code, message)
    else:
        m.defer(call, code, message, _if_confirmed(unknown, counters))


class _Attempts:
    __slots__ = ("called", "failing")

    def __init__(self) -> None:
        # helper name -> its sleeps before it returns a failure
        self.failing: dict[str, list[_Judged]] = {}
        # function name -> what the loop over attempts that tests its result counts with
        self.called: dict[str, tuple[str, ...]] = {}


def _before_failed_return(m: ModuleModel, sleep: ast.Call) -> bool:
    """The sleep is a statement of an ``except`` handler that ends by returning a failure
    (``return False``/``None``): the helper pauses, then tells its caller to try again."""
    for sub in ast.walk(m.scope.node or sleep):
        if not isinstance(sub, ast.ExceptHandler):
            continue
        last = sub.body[-1]
        if (
            isinstance(last, ast.Return)
            and (
                last.value is None
                or (isinstance(last.value, ast.Constant) and last.value.value in (False, None))
            )
            and any(
                isinstance(stmt, ast.Expr) and sleep in (stmt.value, _awaited(stmt.value))
                for stmt in sub.body
            )
        ):
            return True
    return False


def _tested_calls(body: list[ast.stmt]) -> set[str]:
    """The functions (``name(...)``, ``self.name(...)``) whose result the loop tests or
    keeps (``if not await self._try_connect(attempt): continue``)."""
    found: set[str] = set()
    for node in own_nodes(body):
        value = (
            node.test
            if isinstance(node, ast.If)
            else node.value
            if isinstance(node, ast.Assign)
            else None
        )
        for sub in ast.walk(value) if value is not None else ():
            name = callee_name(sub) if isinstance(sub, ast.Call) else None
            if name:
                found.add(name)
    return found


def _read_from_error(m: ModuleModel, delay: ast.expr) -> bool:
    """The delay reads an attribute of a caught exception (``except FloodWait as e:
    sleep(e.seconds)``): the server said how long to wait."""
    errors = {
        sub.name
        for sub in ast.walk(m.scope.node or delay)
        if isinstance(sub, ast.ExceptHandler) and sub.name
    }
    return any(
        isinstance(sub, ast.Attribute)
        and isinstance(sub.value, ast.Name)
        and sub.value.id in errors
        for sub in ast.walk(delay)
    )


def _sleep(m: ModuleModel, node: ast.Call, q: str) -> None:
    """A sleep outside any loop whose delay grows exponentially with a counter: the backoff
    of a retry driven from elsewhere (a hook, a callback, a recursive call)."""
    scope = m.scope
    if len(m.scopes) == 1 or scope.loop_depth or m.is_script or m.in_cli:
        return
    if _before_failed_return(m, node):
        # ``except OSError: sleep(self._delay); return False`` in a helper: a backoff if
        # a loop over attempts calls it (settled at the module's end)
        judged = _judge(m, node)
        if judged is not None:
            m.state(_Attempts).failing.setdefault(scope.name, []).append(judged)
        return
    if _POLL_NAME.search(scope.name) and not _after_failure(scope.node, node):
        return  # a readiness poll pauses while not ready; one in an `except` retries a failure
    delay = _delay_of(node)
    if delay is None:
        return
    if _then_calls_itself(m, node):
        _report_sleeps(m, [node])  # sleep, then call this function again: retry by recursion
        return
    if _exponential_backoff(m, delay):
        m.report(
            node,
            RULE.code,
            "retry backoff sleeps a deterministic exponential delay: clients retry in "
            "lock-step (add jitter)",
        )


def _exponential_backoff(m: ModuleModel, delay: ast.expr) -> bool:
    """The delay grows exponentially with a counter and nothing in it is random or unseen."""
    if not _exponential(m, delay, set(), m.assignments):
        return False
    unknown: list[str] = []
    return _deterministic(m, delay, set(), m.assignments, unknown) and not unknown


# Schedulers that run a callback after a delay, their first argument.
_TIMERS = frozenset({"Timer", "call_later"})


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """``threading.Timer(base * 2 ** retries, self._refresh)``, ``loop.call_later(...)``:
    a retry scheduled after a deterministic exponential delay, like such a sleep, armed in
    an ``except`` branch or growing with a count of failures or attempts."""
    if callee_name(node) not in _TIMERS or len(m.scopes) == 1 or m.is_script or m.in_cli:
        return
    delay = node.args[0] if node.args else None
    if (
        delay is not None
        and _exponential_backoff(m, delay)
        and (_counts_failures(m, delay, set()) or _after_failure(m.scope.node, node))
    ):
        m.report(
            node,
            RULE.code,
            "retry scheduled after a deterministic exponential delay: clients retry in "
            "lock-step (add jitter)",
        )


_FAILURES = re.compile(r"fail|error", re.IGNORECASE)


_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _device_flow(m: ModuleModel) -> bool:
    """The function sends OAuth's device-code grant: it polls the token endpoint until the
    user has entered the code, at the interval the server gave (RFC 8628), not a retry."""
    fn = m.scope.node
    return (
        m.mentions(_DEVICE_GRANT.encode())
        and fn is not None
        and any(
            isinstance(sub, ast.Constant) and sub.value == _DEVICE_GRANT for sub in ast.walk(fn)
        )
    )


def _counts_failures(m: ModuleModel, delay: ast.expr, seen: set[str]) -> bool:
    """The delay grows with a count of failures or attempts (``2 ** self._failures``, also
    through the names it was assigned), not with one of something else (mDNS's start-up
    queries sent, ``2 ** queries_sent``)."""
    for sub in ast.walk(delay):
        name = sub.id if isinstance(sub, ast.Name) else getattr(sub, "attr", None)
        if not isinstance(name, str):
            continue
        if _ATTEMPT_COUNTER.search(name) or _FAILURES.search(name):
            return True
        if isinstance(sub, ast.Name) and name not in seen:
            seen.add(name)
            if any(_counts_failures(m, value, seen) for value in m.assignments(name)):
                return True
    return False


def _after_failure(fn: ast.AST | None, sleep: ast.Call) -> bool:
    """The sleep is in an ``except`` branch of `fn` (not of a function nested in it)."""
    stack: list[ast.AST] = [fn] if fn is not None else []
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.ExceptHandler) and any(
                sub is sleep for stmt in child.body for sub in ast.walk(stmt)
            ):
                return True
            stack.append(child)
    return False


def _then_calls_itself(m: ModuleModel, sleep: ast.Call) -> bool:
    """The statement after the sleep (after any counting or logging) calls the function the
    sleep is in again (``await asyncio.sleep(5); return await self.launch_shard(...)``)."""
    fn = m.scope.node
    name = m.scope.name
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for block in statement_blocks(fn.body, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for i, stmt in enumerate(block):
            if not (stmt.lineno <= sleep.lineno <= (stmt.end_lineno or stmt.lineno)):
                continue
            if not (isinstance(stmt, ast.Expr) and sleep in (stmt.value, _awaited(stmt.value))):
                break  # the sleep is deeper in this statement: its own block is checked
            rest = block[i + 1 :]
            while rest and not _calls_again(rest[0], name) and _bookkeeping(rest[0]):
                rest = rest[1:]  # ``self._retries += 1``, a log line: then the call
            return bool(rest) and _calls_again(rest[0], name)
    return False


def _bookkeeping(stmt: ast.stmt) -> bool:
    """A count or a log line between the pause and the retry: ``attempts += 1``,
    ``logger.warning(...)``."""
    if isinstance(stmt, ast.AugAssign | ast.Assign | ast.AnnAssign):
        return True
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and "log" in (dotted(stmt.value.func) or "").lower()
    )


def _awaited(expr: ast.expr) -> ast.expr | None:
    return expr.value if isinstance(expr, ast.Await) else None


def _calls_again(stmt: ast.stmt, name: str) -> bool:
    """`stmt` is ``[return|x =] [await] name(...)`` or the same on ``self.name(...)``."""
    value = stmt.value if isinstance(stmt, ast.Return | ast.Expr | ast.Assign) else None
    if isinstance(value, ast.Await):
        value = value.value
    return isinstance(value, ast.Call) and own_callee(value.func) == name


# tenacity waits with no random component, and those that combine other waits
_FIXED_WAITS = frozenset({"wait_fixed", "wait_exponential", "wait_incrementing", "wait_none"})
_COMBINED_WAITS = frozenset({"wait_chain", "wait_combine"})
_BACKOFF_GENERATORS = frozenset({"backoff.expo", "backoff.fibo", "backoff.constant"})


def _retry_library(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``@retry(wait=wait_exponential(...))``, ``AsyncRetrying(wait=wait_fixed(2))`` or
    ``backoff.on_exception(backoff.expo, ..., jitter=None)``: the library retries on a
    schedule without jitter. Its default (tenacity: no wait; backoff: full jitter) or any
    wait we cannot see into is not a finding."""
    if m.is_script or m.in_cli:
        return
    decorated = next(
        (fn for fn in m.functions.values() if any(d is node for d in fn.decorator_list)),
        None,
    )
    if decorated is not None and any(
        isinstance(sub, ast.Yield | ast.YieldFrom) for sub in own_nodes(decorated.body)
    ):
        return  # a generator returns at once when called: the library never retries it
    if q.startswith("backoff."):
        jitter = next((kw.value for kw in node.keywords if kw.arg == "jitter"), None)
        wait = node.args[0] if node.args else None
        if not (
            isinstance(jitter, ast.Constant)
            and jitter.value is None
            and wait is not None
            and m.qualname(wait) in _BACKOFF_GENERATORS
        ):
            return
    else:
        wait = next((kw.value for kw in node.keywords if kw.arg == "wait"), None)
        if wait is None or not _fixed_wait(m, wait):
            return
        if decorated is not None and is_local_function(m, decorated):
            return  # retries parsing text: no shared dependency to herd
        if _retries_only_foreign_errors(m, node):
            return  # retry=retry_if_exception_type(openai.RateLimitError) around no openai
        own = _own_classes_retried(m, node)
        if own:
            m.defer(node, RULE.code, _LIBRARY_MESSAGE, _if_raised(own))
            return
        if (
            decorated is not None
            and _POLL_NAME.search(decorated.name)
            and any(kw.arg == "stop" for kw in node.keywords)
        ):
            return  # a readiness wait that gives up (`_wait_until_alive`): a poll
    m.report(node, RULE.code, _LIBRARY_MESSAGE)


_LIBRARY_MESSAGE = (
    "retry library waits a deterministic schedule (no random component): clients "
    "retry in lock-step (add jitter)"
)
_EXCEPTION_CLASS = re.compile(r"(?:Error|Exception|Timeout)$")


def _retried_classes(node: ast.Call) -> list[ast.expr]:
    """The classes of ``retry=retry_if_exception_type(...)`` (all of its calls)."""
    predicate = next((kw.value for kw in node.keywords if kw.arg == "retry"), None)
    classes: list[ast.expr] = []
    for sub in ast.walk(predicate) if predicate is not None else ():
        if isinstance(sub, ast.Call) and callee_name(sub) == "retry_if_exception_type":
            for arg in sub.args:
                classes.extend(arg.elts if isinstance(arg, ast.Tuple) else [arg])
    return classes


def _own_classes_retried(m: ModuleModel, node: ast.Call) -> tuple[str, ...]:
    """The simple names of the retried classes when every one is imported from the
    project's own package (``from lightrag.exceptions import RateLimitError`` in
    ``lightrag/llm/hf.py``); empty otherwise."""
    names: list[str] = []
    for c in _retried_classes(node):
        q = m.qualname(c) or ""
        if "." not in q or not m.in_package(q.partition(".")[0]):
            return ()
        names.append(q.rpartition(".")[2])
    return tuple(names)


def _if_raised(classes: tuple[str, ...]) -> Callable[[ProjectFacts], bool]:
    """Keep the finding if the run raises one of `classes` (or a subclass): a project's
    error class that nothing in it raises never makes the library retry."""

    def keep(facts: ProjectFacts) -> bool:
        return any(facts.ever_built(name) for name in classes)

    return keep


def _retries_only_foreign_errors(m: ModuleModel, node: ast.Call) -> bool:
    """``retry=retry_if_exception_type((RateLimitError, APITimeoutError))`` where every
    class comes from a library the module imports nothing else from (``from openai import
    RateLimitError`` in a module that calls a local model or another SDK): nothing the
    function calls raises them, so the library never retries."""
    classes = _retried_classes(node)
    packages = {(m.qualname(c) or "").partition(".")[0] for c in classes}
    if not classes or "" in packages:
        return False  # a built-in or the project's own exception: it may well be raised
    return all(
        _EXCEPTION_CLASS.search(target) is not None
        for target in m.imports.values()
        if target.partition(".")[0] in packages
    )


def _fixed_wait(m: ModuleModel, wait: ast.expr) -> bool:
    """A tenacity wait built only from fixed, exponential or incrementing waits, or a
    function of the module that returns one applied to the retry state."""
    if isinstance(wait, ast.Name):
        fn = m.functions.get(wait.id)
        return fn is not None and not fn.col_offset and _returns_fixed_wait(m, fn)
    if isinstance(wait, ast.BinOp) and isinstance(wait.op, ast.Add):
        return _fixed_wait(m, wait.left) and _fixed_wait(m, wait.right)
    if not isinstance(wait, ast.Call):
        return False
    q = m.qualname(wait.func) or ""
    if not q.startswith("tenacity."):
        return False
    name = q.rpartition(".")[2]
    if name in _COMBINED_WAITS:
        return (
            bool(wait.args)
            and not wait.keywords
            and all(not isinstance(a, ast.Starred) and _fixed_wait(m, a) for a in wait.args)
        )
    return name in _FIXED_WAITS


def _returns_fixed_wait(m: ModuleModel, fn: Function) -> bool:
    """``def _wait(state): ...; return tenacity.wait_exponential(min=5)(state)`` with
    nothing random in the function (its other returns may honour a server's delay)."""
    applied = False
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Call) and _random_call(m, sub.func):
            return False
        if (
            isinstance(sub, ast.Return)
            and isinstance(sub.value, ast.Call)
            and isinstance(sub.value.func, ast.Call)
            and _fixed_wait(m, sub.value.func)
        ):
            applied = True
    return applied


CALLS: dict[str, CallHook] = {
    **dict.fromkeys(_SLEEPS, _sleep),
    **dict.fromkeys(
        (
            "tenacity.retry",
            "tenacity.Retrying",
            "tenacity.AsyncRetrying",
            "backoff.on_exception",
            "backoff.on_predicate",
        ),
        _retry_library,
    ),
}


def _delay_of(call: ast.Call) -> ast.expr | None:
    delay = call.args[0] if call.args else None
    if (
        isinstance(delay, ast.Call)
        and isinstance(delay.func, ast.Attribute)
        and delay.func.attr == "wait"
    ):  # wait_for(stop.wait(), delay): the timeout is the pause
        delay = call.args[1] if len(call.args) > 1 else None
    for kw in call.keywords:
        if kw.arg in ("delay", "seconds", "secs", "timeout"):
            delay = kw.value
    return delay


def _exponential(m: ModuleModel, expr: ast.expr, seen: set[str], assigned: Assigned) -> bool:
    """The value is ``x ** n``, ``pow(x, n)`` or ``x << n``, directly, through names it was
    assigned, or returned by a helper of this module."""
    for sub in ast.walk(expr):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow | ast.LShift):
            return True
        if isinstance(sub, ast.Call):
            if isinstance(sub.func, ast.Name) and sub.func.id == "pow":
                return True
            helper = m.called_function(sub.func)
            if helper is not None and f"{helper.name}()" not in seen:
                seen.add(f"{helper.name}()")
                returns, local = _returns_and_locals(helper)
                helpers_seen = {n for n in seen if n.endswith("()")}
                assigned_here = functools.partial(_values_of, local)
                if any(_exponential(m, v, helpers_seen, assigned_here) for v in returns):
                    return True
        if isinstance(sub, ast.Name) and sub.id not in seen:
            seen.add(sub.id)
            if any(_exponential(m, value, seen, assigned) for value in assigned(sub.id)):
                return True
    return False


def _long_constant(m: ModuleModel, sleep: ast.Call) -> bool:
    """The sleep's delay is a literal (or a named constant) of one second or more."""
    delay = _delay_of(sleep)
    seconds = m.constant_seconds(delay) if delay is not None else None
    return seconds is not None and seconds >= 1


def _short_constant(m: ModuleModel, delay: ast.expr) -> bool:
    """A literal number of seconds under one: a poll step or an error pause (BND013)."""
    seconds = m.constant_seconds(delay)
    return seconds is not None and seconds < 1


def _if_confirmed(
    helpers: tuple[str, ...], counters: tuple[str, ...]
) -> Callable[[ProjectFacts], bool]:
    def keep(facts: ProjectFacts) -> bool:
        # delay helpers defined in another module of the run, deterministic there, and
        # generators defined there that yield attempt numbers
        return all(facts.helpers.get(name, False) for name in helpers) and all(
            facts.counters.get(name, False) for name in counters
        )

    return keep


def _counts_attempts(m: ModuleModel, iterable: ast.expr) -> tuple[str, ...] | None:
    """What makes the loop count attempts, not items: ``()`` for ``range(n)``,
    ``itertools.count()``, ``enumerate(range(n))`` or a generator of this module that yields
    a counter (``for attempt in retry_range(retries)``); ``(name,)`` for a generator of
    another module, which must yield one (settled at the run's end); None otherwise."""
    if not (isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name | ast.Attribute)):
        return None
    name = dotted(iterable.func) or ""
    if name == "enumerate" and iterable.args:
        return _counts_attempts(m, iterable.args[0])
    if name in ("range", "count", "itertools.count"):
        return ()
    fn = m.called_function(iterable.func)
    if fn is not None:
        return () if _yields_count(fn) else None
    # maybe an imported generator (``from .helpers import retry_range``), not a local
    # callable nor a method of an object
    func = iterable.func
    if not isinstance(func, ast.Name) or func.id in m.scope.params or m.assignments(func.id):
        return None
    return (func.id,)


_ATTEMPT_COUNTER = re.compile(r"attempt|retr|tries|tried", re.IGNORECASE)


def _counted_while(loop: ast.While) -> tuple[str, ...] | None:
    """``()`` for ``while retry_count < MAX_RETRIES:`` whose body adds to that counter:
    a loop over attempts, like ``range(n)``; None otherwise."""
    test = loop.test
    if not (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and isinstance(test.ops[0], ast.Lt | ast.LtE)
        and _ATTEMPT_COUNTER.search(test.left.id)
    ):
        return None
    counter = test.left.id
    counted = any(
        isinstance(stmt, ast.AugAssign)
        and isinstance(stmt.op, ast.Add)
        and isinstance(stmt.target, ast.Name)
        and stmt.target.id == counter
        for stmt in loop.body
    )
    return () if counted else None


def _yields_count(fn: Function) -> bool:
    """A generator whose every ``yield`` gives a counter it increments (``attempt += 1;
    yield attempt``): the attempt numbers of a retry loop."""
    yields: list[ast.Yield | ast.YieldFrom] = []
    counters: set[str] = set()
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Yield | ast.YieldFrom):
            yields.append(sub)
        elif (
            isinstance(sub, ast.AugAssign)
            and isinstance(sub.op, ast.Add)
            and isinstance(sub.target, ast.Name)
        ):
            counters.add(sub.target.id)
    return bool(yields) and all(
        isinstance(y, ast.Yield) and isinstance(y.value, ast.Name) and y.value.id in counters
        for y in yields
    )


# --- a retry with no pause at all --------------------------------------------------------

# Calls that pause the round: a sleep, an event's wait, a backoff or delay helper.
_PAUSING = re.compile(r"sleep|backoff|delay|pause|throttle|cool_?down|^wait$", re.IGNORECASE)
# What a failed round may move on to instead of the target that failed.
_TARGET = re.compile(
    r"host|node|server|endpoint|url|uri|addr|replica|broker|peer|target|primary|master|"
    r"leader|shard|region|index|idx|cursor",
    re.IGNORECASE,
)
# A name that records the target that failed (``last_failed_node_name``), not a new one.
_FAILED = re.compile(r"fail|last|prev|error|bad|dead", re.IGNORECASE)
_FAILOVER = re.compile(
    r"^next$|rotate|fail_?over|switch|advance|cycle|mark_|remove|discard|ban|blacklist|"
    r"exclude|choose|pick|select",
    re.IGNORECASE,
)


def _report_hot_retries(
    m: ModuleModel, loop: Loop, tries: list[ast.Try | ast.TryStar], counters: tuple[str, ...]
) -> None:
    """A retry loop whose attempt calls a remote service and whose handler, on a lost
    connection, goes round again with no pause anywhere in the round: every client
    re-hits the recovering service at once. `counters`: the generators of other modules
    the loop counts attempts with (:func:`_counts_attempts`)."""
    found = [
        (node, handler, *retry)
        for node in tries
        for handler in node.handlers
        if (retry := _retry_branch(m, handler)) is not None
    ]
    if not found or _one_retry(loop) or _walks_items(loop) or _pauses(m, loop, tries):
        return
    for node, handler, branch, lookups in found:
        if (
            # falling out of the handler goes round again only from the round's end
            not (loop.body[-1] is node or isinstance(branch[-1], ast.Continue))
            or _moves_on(branch)
            or _retries_once(handler, branch)
            or _reconnects_unseen(m, branch)
            or not _leaves_on_success(loop, node)
            or is_local_attempt(m, node)
            or not _remote_attempt(m, node)
        ):
            continue
        m.defer(_retry_line(branch), RULE.code, _HOT_MESSAGE, _if_hot(lookups, counters))


_HOT_MESSAGE = (
    "retry loop tries the remote call again at once after a lost connection, no pause at "
    "all: every client re-hits the recovering service together (back off with jitter)"
)


def _if_hot(lookups: _Lookups, counters: tuple[str, ...]) -> Callable[[ProjectFacts], bool]:
    confirmed = _if_confirmed((), counters)

    def keep(facts: ProjectFacts) -> bool:
        # the class attributes name a lost connection, and the loop counts attempts
        return confirmed(facts) and (
            not lookups or any(facts.names_connection_error(c, a) for c, a in lookups)
        )

    return keep


def _pauses(m: ModuleModel, loop: Loop, tries: list[ast.Try | ast.TryStar]) -> bool:
    """The round pauses somewhere: a pausing call in the loop, or a helper of this module
    called outside the attempts (a handler's reconnect) that pauses."""
    attempts = {id(stmt) for node in tries for stmt in node.body}
    stack: list[tuple[ast.AST, bool]] = [(n, False) for n in (*loop.body, *loop.orelse)]
    if isinstance(loop, ast.While):
        stack.append((loop.test, False))
    while stack:
        node, in_attempt = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(node, ast.Call):
            if _pausing_call(m, node):
                return True
            helper = None if in_attempt else m.called_function(node.func)
            if helper is not None and _helper_pauses(m, helper):
                return True
        inside = in_attempt or id(node) in attempts
        stack.extend((child, inside) for child in ast.iter_child_nodes(node))
    return False


def _helper_pauses(m: ModuleModel, fn: Function) -> bool:
    """`fn`, or a helper of this module it calls (``_maybe_try_reconnect`` calling
    ``_try_reconnect``), makes a pausing call."""
    known = m.state(_Pausing).by_function
    if fn not in known:
        known[fn] = False  # recursion: no pause found on this path
        known[fn] = any(
            isinstance(sub, ast.Call)
            and (
                _pausing_call(m, sub)
                or (
                    (helper := m.called_function(sub.func)) is not None
                    and _helper_pauses(m, helper)
                )
            )
            for sub in ast.walk(fn)
        )
    return known[fn]


def _pausing_call(m: ModuleModel, call: ast.Call) -> bool:
    return m.qualname(call.func) in _SLEEPS or _PAUSING.search(callee_name(call) or "") is not None


class _Pausing:
    __slots__ = ("by_function",)

    def __init__(self) -> None:
        self.by_function: dict[ast.AST, bool] = {}


def _walks_items(loop: Loop) -> bool:
    """``for i in range(len(hosts))``, or a round that indexes by the loop's counter or by
    an index it advances (``hosts[attempt % len(hosts)]``, ``pubsubs[self._poll_index]``
    after ``self._poll_index += 1``): each round tries the next target, a failover."""
    moving = {
        dotted(sub.target)
        for stmt in loop.body
        for sub in ast.walk(stmt)
        if isinstance(sub, ast.AugAssign)
    }
    if isinstance(loop, ast.For | ast.AsyncFor):
        it = loop.iter
        if isinstance(it, ast.Call) and dotted(it.func) == "enumerate" and it.args:
            it = it.args[0]
        if isinstance(it, ast.Call) and any(
            isinstance(a, ast.Call) and dotted(a.func) == "len" for a in it.args
        ):
            return True
        moving |= {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    moving.discard(None)
    return any(
        isinstance(sub, ast.Subscript)
        and any(
            dotted(n) in moving
            for n in ast.walk(sub.slice)
            if isinstance(n, ast.Name | ast.Attribute)
        )
        for stmt in loop.body
        for sub in ast.walk(stmt)
    )


def _one_retry(loop: Loop) -> bool:
    """``for _ in range(2)``: one more try, as on a stale pooled connection the server
    closed while idle; not a retry against an outage."""
    it = loop.iter if isinstance(loop, ast.For | ast.AsyncFor) else None
    return (
        isinstance(it, ast.Call)
        and dotted(it.func) == "range"
        and len(it.args) == 1
        and isinstance(it.args[0], ast.Constant)
        and it.args[0].value == 2
    )


def _retries_once(handler: ast.ExceptHandler, branch: list[ast.stmt]) -> bool:
    """The branch spends a one-shot flag that the handler tests before it gives up
    (``if not retry_stale: raise`` ... ``retry_stale = False``): a single retry."""
    spent = {
        dotted(t)
        for stmt in branch
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
        for t in stmt.targets
    }
    return any(
        isinstance(stmt, ast.If)
        and _ends_leaving(stmt.body)
        and any(
            dotted(n) in spent
            for n in ast.walk(stmt.test)
            if isinstance(n, ast.Name | ast.Attribute)
        )
        for stmt in handler.body
    )


# A call that reconnects or recovers: when the run cannot see it, it may back off itself.
_RECONNECT = re.compile(r"connect|recover|restart|reset", re.IGNORECASE)


def _reconnects_unseen(m: ModuleModel, branch: list[ast.stmt]) -> bool:
    """The branch calls a reconnect this module does not define (an inherited
    ``self._reconnect(exc)``): its own backoff may be the pause."""
    return any(
        isinstance(sub, ast.Call)
        and _RECONNECT.search(callee_name(sub) or "")
        and m.called_function(sub.func) is None
        for stmt in branch
        for sub in ast.walk(stmt)
    )


def _remote_attempt(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """The ``try`` awaits I/O that is not local work, or (synchronous code) calls a method
    or a library function that is not plainly local (a client's request)."""
    if _first_io_line(m, node.body) is not None:
        return True
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and not is_local_call(m, sub)
        for stmt in node.body
        for sub in ast.walk(stmt)
    )


# The classes of the run whose attributes name a tuple of errors: ``(class, attribute)``.
_Lookups = list[tuple[str, str]]


def _retry_branch(
    m: ModuleModel, handler: ast.ExceptHandler
) -> tuple[list[ast.stmt], _Lookups] | None:
    """The statements a handler runs before going round again after a lost connection:
    the whole handler, or the branch of its ``if`` that goes round while the other raises
    (``if retries > 0 and type(e) in ERRORS_ALLOW_RETRY: retries -= 1; continue`` /
    ``else: raise``); with the class attributes that must name a lost connection (settled
    at the run's end). None if it never goes round, or not after a lost connection."""
    body = handler.body
    guard: ast.expr | None = None
    branch: list[ast.stmt] | None = None
    if _goes_round_again(handler):
        branch = body
        last = body[-1] if body else None
        if isinstance(last, ast.If) and last.orelse:
            if _ends_leaving(last.orelse) and not _ends_leaving(last.body):
                guard, branch = last.test, [*body[:-1], *last.body]
            elif _ends_leaving(last.body):
                branch = [*body[:-1], *last.orelse]
    else:
        for stmt in body:
            if isinstance(stmt, ast.If) and stmt.body and isinstance(stmt.body[-1], ast.Continue):
                guard, branch = stmt.test, stmt.body
                break
    if not branch or _catches_idle(handler):
        return None
    lookups = _lost_connection(m, caught_types(handler))
    if lookups is None and guard is not None and handler.name is not None:
        lookups = _tests_lost_connection(m, guard, handler.name)
    return None if lookups is None else (branch, lookups)


def _ends_leaving(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], ast.Raise | ast.Return | ast.Break)


def _tests_lost_connection(m: ModuleModel, test: ast.expr, error: str) -> _Lookups | None:
    """Whether the test asks if the caught error is a lost connection (``isinstance(e,
    ConnectionError)``, ``type(e) in self.__class__.ERRORS_ALLOW_RETRY``), as for
    :func:`_lost_connection`."""
    for sub in ast.walk(test):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "isinstance"
            and len(sub.args) == 2
            and isinstance(sub.args[0], ast.Name)
            and sub.args[0].id == error
        ):
            kinds = sub.args[1]
        elif (
            isinstance(sub, ast.Compare)
            and isinstance(sub.ops[0], ast.In)
            and isinstance(sub.left, ast.Call)
            and dotted(sub.left.func) == "type"
            and any(isinstance(a, ast.Name) and a.id == error for a in sub.left.args)
        ):
            kinds = sub.comparators[0]
        else:
            continue
        lookups = _lost_connection(m, kinds.elts if isinstance(kinds, ast.Tuple) else [kinds])
        if lookups is not None:
            return lookups
    return None


def _lost_connection(m: ModuleModel, kinds: list[ast.expr]) -> _Lookups | None:
    """Whether one of the exception classes is a lost connection: ``[]`` when a name, a
    module's tuple of them (``RETRYABLE = (ConnectionError, TimeoutError)``) or a
    parameter's default says so; the class attributes that may
    (``self.__class__.ERRORS_ALLOW_RETRY``, ``RedisCluster.ERRORS_ALLOW_RETRY``); None
    when none can be."""
    lookups: _Lookups = []
    for kind in kinds:
        if _LOST.search(dotted(kind) or ""):
            return []
        if isinstance(kind, ast.Name):
            if _names_disconnect(_named_value(m, kind)):
                return []
        elif isinstance(kind, ast.Attribute):
            owner = dotted(kind.value)
            if owner in ("self", "cls", "self.__class__"):
                owner = m.classes[-1].name if m.classes else None
            if owner is not None:
                lookups.append((owner.rpartition(".")[2], kind.attr))
    return lookups or None


def _named_value(m: ModuleModel, name: ast.Name) -> ast.expr | None:
    """The value of the module constant `name` is, or for a parameter, its default or the
    module constant that names (``retryable=RETRYABLE``)."""
    value: ast.expr | None = name
    if name.id in m.scope.params:
        value = param_default(m.scope.node, name.id)
    if isinstance(value, ast.Name):
        values = m.scopes[0].assigned.get(value.id, [])
        value = values[0] if len(values) == 1 else None
    return value


def _names_disconnect(value: ast.expr | None) -> bool:
    """A tuple of exception classes, one of them a lost connection."""
    return isinstance(value, ast.Tuple) and any(_LOST.search(dotted(e) or "") for e in value.elts)


def class_end(m: ModuleModel, cls: ClassScope) -> None:
    """Tell the run which of the class's attributes name a lost connection among errors."""
    for stmt in cls.node.body:
        if isinstance(stmt, ast.Assign) and _names_disconnect(stmt.value):
            m.facts.connection_errors.setdefault(cls.name, set()).update(
                t.id for t in stmt.targets if isinstance(t, ast.Name)
            )


def _moves_on(branch: list[ast.stmt]) -> bool:
    """The branch, whatever the error, moves to another target before going round
    (``self._host = next(hosts)``, ``self._rotate_endpoint()``): a failover, not a retry
    of the service that failed."""
    for stmt in branch:
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [(dotted(t) or "").rpartition(".")[2] for t in targets]
            if any(_TARGET.search(n) and not _FAILED.search(n) for n in names):
                return True
        for sub in ast.walk(stmt) if isinstance(stmt, ast.Expr | ast.Assign) else ():
            if isinstance(sub, ast.Call) and _FAILOVER.search(callee_name(sub) or ""):
                return True
    return False


def _retry_line(branch: list[ast.stmt]) -> ast.stmt:
    """Where the branch spends an attempt (``retries -= 1``), else its ``continue``, else
    its first statement."""
    spent = next((s for s in branch if isinstance(s, ast.AugAssign)), None)
    again = next((s for s in branch if isinstance(s, ast.Continue)), None)
    return spent or again or branch[0]


def _caught(handler: ast.ExceptHandler) -> list[str]:
    """The dotted names of the exceptions `handler` catches ("" for one not a name)."""
    return [dotted(n) or "" for n in caught_types(handler)]


def _catches_disconnect(handler: ast.ExceptHandler) -> bool:
    """An ``except`` for a lost connection (ConnectionError, OSError, ConnectionClosed...)."""
    return any(_DISCONNECTS.search(name) for name in _caught(handler))


def _skips_ahead(handler: ast.ExceptHandler) -> bool:
    """The handler starts the next round at once (``continue``), skipping the pause after
    the ``try``."""
    return any(isinstance(sub, ast.Continue) for sub in own_nodes(handler.body))


def _goes_round_again(handler: ast.ExceptHandler) -> bool:
    """The handler does not leave the loop unconditionally (no final raise/return/break)."""
    return not handler.body or not isinstance(handler.body[-1], ast.Raise | ast.Return | ast.Break)


_IDLE = re.compile(r"Empty|StopIteration|StopAsyncIteration|Cancelled|KeyboardInterrupt|Exit")
# A non-blocking socket not ready yet (``BlockingIOError``, ``ssl.SSLWantReadError``).
_WOULD_BLOCK = re.compile(r"BlockingIO|BLOCKING_IO|WouldBlock|WantRead|WantWrite", re.IGNORECASE)


def _catches_idle(handler: ast.ExceptHandler) -> bool:
    """An ``except`` for no work yet (``queue.Empty``) or for leaving: a poll, not a retry."""
    return any(_IDLE.search(name) for name in _caught(handler))


def _exits_on_success(node: ast.Try | ast.TryStar) -> bool:
    for stmt in (*node.body, *node.orelse):
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Return | ast.Break):
                return True
    return False


_NESTED = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.AsyncFor,
    ast.Try,
)
_NESTED_BUT_TRY = _NESTED[:-1]


def _sleeps_in(m: ModuleModel, body: list[ast.stmt], *, into_try: bool = False) -> list[ast.Call]:
    """The sleeps of `body`, not of the functions, loops (or, unless `into_try`, the
    ``try`` statements) nested in it."""
    found: list[ast.Call] = []
    stack: list[ast.AST] = list(body)
    nested = _NESTED_BUT_TRY if into_try else _NESTED
    while stack:
        node = stack.pop()
        if isinstance(node, nested):
            continue
        if isinstance(node, ast.Call) and (
            m.qualname(node.func) in _SLEEPS
            or _stop_event_wait(node)
            or _stop_event_wait_for(m, node)
            or _calls_sleep_helper(m, node)
            or _injected_sleep(m, node)
        ):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _stop_event_wait(call: ast.Call) -> bool:
    """``self._shutdown_event.wait(delay)``: a thread's pause that shutdown cuts short."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "wait"
        and len(call.args) + len(call.keywords) == 1
        and _delay_of(call) is not None
        and _STOP_EVENT.search(dotted(func.value) or "") is not None
    )


def _stop_event_wait_for(m: ModuleModel, call: ast.Call) -> bool:
    """``await asyncio.wait_for(self._stop_event.wait(), timeout=delay)``: a coroutine's
    pause that shutdown cuts short."""
    inner = call.args[0] if call.args else None
    return (
        m.qualname(call.func) == "asyncio.wait_for"
        and isinstance(inner, ast.Call)
        and isinstance(inner.func, ast.Attribute)
        and inner.func.attr == "wait"
        and not inner.args
        and _STOP_EVENT.search(dotted(inner.func.value) or "") is not None
        and _delay_of(call) is not None
    )


def _injected_sleep(m: ModuleModel, call: ast.Call) -> bool:
    """``self._sleep(delay)`` where the class's ``__init__(self, sleep=time.sleep)`` stored
    the sleep it was handed (one a test replaces with a fake clock): a pause."""
    func = call.func
    if not (m.classes and call.args and isinstance(func, ast.Attribute) and is_self_attr(func)):
        return False
    cls = m.classes[-1].node
    cache = m.state(_Results).injected_sleeps
    stored = cache.get(cls)
    if stored is None:
        stored = cache[cls] = _sleeps_handed_in(m, cls)
    return func.attr in stored


def _sleeps_handed_in(m: ModuleModel, cls: ast.ClassDef) -> frozenset[str]:
    """The ``self`` attributes the class's ``__init__`` stores a parameter in whose default
    is a sleep function."""
    init = next(
        (
            stmt
            for stmt in cls.body
            if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__"
        ),
        None,
    )
    if init is None:
        return frozenset()
    return frozenset(
        target.attr
        for stmt in init.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Name)
        and (default := param_default(init, stmt.value.id)) is not None
        and m.qualname(default) in _SLEEPS
        for target in stmt.targets
        if isinstance(target, ast.Attribute) and is_self_attr(target)
    )


def _calls_sleep_helper(m: ModuleModel, call: ast.Call) -> bool:
    """``_wait(1, stop_event)`` of a module function, or ``await self._sleep(delay)`` of a
    method, that only waits its first parameter (``time.sleep(seconds)``,
    ``stop_event.wait(seconds)`` to stop early, or another such helper)."""
    fn = m.called_function(call.func) if call.args else None
    if fn is None or bool(fn.col_offset) == isinstance(call.func, ast.Name):
        return False  # a bare name calls a module function, self.name(...) a method
    helpers = m.state(_Results).only_waits
    known = helpers.get(fn)
    if known is None:
        helpers[fn] = False  # recursion: not a helper until shown to be one
        known = helpers[fn] = _only_waits(m, fn)
    return known


def _only_waits(m: ModuleModel, fn: Function) -> bool:
    """A short function whose every call waits and one of them waits its first parameter
    (after ``self`` or ``cls`` of a method)."""
    params = fn.args.posonlyargs + fn.args.args
    if fn.col_offset and params:
        params = params[1:]
    if not params or len(fn.body) > 4:
        return False
    delay = params[0].arg
    slept = False
    for sub in ast.walk(fn):
        if not isinstance(sub, ast.Call):
            continue
        waits = (
            m.qualname(sub.func) in _SLEEPS
            or (isinstance(sub.func, ast.Attribute) and sub.func.attr == "wait")
            or _calls_sleep_helper(m, sub)  # _wait() -> _sleep() -> time.sleep()
        )
        if not waits:
            return False  # it does more than wait
        slept = slept or any(isinstance(a, ast.Name) and a.id == delay for a in sub.args)
    return slept


def _deterministic(
    m: ModuleModel, expr: ast.expr, seen: set[str], assigned: Assigned, unknown: list[str]
) -> bool:
    """True if the delay has no randomness and nothing we cannot see into.

    `assigned` gives the values a name was assigned where `expr` is evaluated; calls to
    helpers this module does not define are added to `unknown` (decided at the end of the run).
    """
    fields: set[int] = set()  # settings.retry_delay: a configured field, whatever built settings
    picks: set[int] = set()  # the index into a fixed schedule: any entry of it is a constant
    for sub in ast.walk(expr):
        if id(sub) in picks:
            continue
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
            fields.add(id(sub.value))
        if isinstance(sub, ast.Call):
            func = sub.func
            if _random_call(m, func):
                return False
            q = m.qualname(func)
            if q is not None and (q.startswith("math.") or q in _PURE_QUALIFIED):
                continue
            if isinstance(func, ast.Name) and func.id in _PURE_CALLS:
                continue
            if isinstance(func, ast.Attribute) and func.attr in _PURE_METHODS:
                continue  # delay.total_seconds() * 2**n
            if _options_entry(sub):
                continue  # options.get("factor"): configured, like a field
            fallback = _fallback(m, func, assigned)
            helper = m.called_function(fallback or func)
            if helper is not None:
                if _returns_deterministic(m, helper, _passed_none(helper, sub)):
                    # await asyncio.sleep(self._backoff(attempt)); an object whose fields
                    # the helper reads (``retry_delay(policy, n)``) is its configuration
                    fields.update(id(arg) for arg in _settings_given(helper, sub))
                    continue
                return False
            name = fallback.id if fallback is not None else callee_name(sub)
            if name is not None and _DELAY_HELPER.search(name):
                unknown.append(name)  # another module of the run may define it
                continue
            return False  # a call we cannot see into: give it the benefit of the doubt
        if isinstance(sub, ast.Subscript):
            if _constant_table(m, sub, assigned):
                picks.update(id(part) for part in ast.walk(sub.slice))
                continue
            if _settings_entry(sub):
                continue  # self.options["reconnect_time_wait"]: configured, like a field
            return False  # e.g. a header value: the server chose the delay
        if isinstance(sub, ast.Name | ast.Attribute):
            text = dotted(sub) or ""
            if _RANDOMISH.search(text) or _SERVER_DELAY.search(text):
                return False
            if isinstance(sub, ast.Name) and sub.id not in seen and id(sub) not in fields:
                seen.add(sub.id)
                for value in assigned(sub.id):
                    if _counts_range(value):
                        continue  # for attempt in range(limit()): 0, 1, 2..., whatever limit is
                    if isinstance(value, ast.List | ast.Set | ast.Dict) and not (
                        value.keys if isinstance(value, ast.Dict) else value.elts
                    ):
                        return False  # delays = [] then delays.append(...): filled unseen
                    if not _deterministic(m, value, seen, assigned, unknown):
                        return False
    return True


def _counts_range(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "range"
    )


def _constant_table(m: ModuleModel, node: ast.Subscript, assigned: Assigned) -> bool:
    """An entry of a list of literal delays, local (``delays = [1, 2, 4]; delays[attempt]``)
    or the object's own schedule set to one, or to a parameter that defaults to one
    (``self.wait_times = wait_times if wait_times is not None else (1.0, 4.0, 8.0)``): a
    fixed schedule."""
    table = node.value
    if isinstance(table, ast.Name):
        values = assigned(table.id)
    elif is_self_attr(table) and m.classes:
        attr = cast(ast.Attribute, table).attr
        values = [
            sub.value
            for sub in ast.walk(m.classes[-1].node)
            if isinstance(sub, ast.Assign | ast.AnnAssign)
            and sub.value is not None
            and any(
                is_self_attr(t) and cast(ast.Attribute, t).attr == attr for t in assign_targets(sub)
            )
        ]
    else:
        values = []
    return bool(values) and all(_literal_schedule(value) for value in values)


def _literal_schedule(value: ast.expr) -> bool:
    """A non-empty tuple or list of numbers, or a choice between a name (a parameter: the
    caller's schedule) and one (``wait_times or (1, 4, 8)``)."""
    if isinstance(value, ast.IfExp):
        branches = [value.body, value.orelse]
    elif isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
        branches = list(value.values)
    else:
        return (
            isinstance(value, ast.List | ast.Tuple)
            and bool(value.elts)
            and all(
                isinstance(e, ast.Constant)
                and isinstance(e.value, int | float)
                and not isinstance(e.value, bool)
                for e in value.elts
            )
        )
    literal = [b for b in branches if not isinstance(b, ast.Name)]
    return bool(literal) and all(_literal_schedule(b) for b in literal)


_OPTIONS = re.compile(r"option|config|setting|opts|cfg|kwargs", re.IGNORECASE)


def _options_entry(call: ast.Call) -> bool:
    """``options.get("factor")``: an entry of a mapping of options named by a constant."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "get"
        and _OPTIONS.search(dotted(func.value) or "") is not None
        and bool(call.args)
        and _configured_key(call.args[0])
    )


def _settings_entry(node: ast.Subscript) -> bool:
    """An entry of the object's own settings mapping named by a constant
    (``self.options["reconnect_time_wait"]``): configured, not chosen by a server."""
    return is_self_attr(node.value) and _configured_key(node.slice)


def _configured_key(key: ast.expr) -> bool:
    """A constant key that names neither a server's delay nor a random one."""
    return (
        isinstance(key, ast.Constant)
        and isinstance(key.value, str)
        and not _SERVER_DELAY.search(key.value)
        and not _RANDOMISH.search(key.value)
    )


def _fallback(m: ModuleModel, func: ast.expr, assigned: Assigned) -> ast.Name | None:
    """The project function a called name stands for when nothing is injected:
    ``delay = retry_delay or default_backoff`` or a parameter ``retry_delay=default_backoff``."""
    if not isinstance(func, ast.Name):
        return None
    values = assigned(func.id)
    if not values and func.id in m.scope.params:
        default = param_default(m.scope.node, func.id)
        values = [default] if default is not None else []
    if len(values) != 1:
        return None
    value = values[0]
    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
        value = value.values[-1]
    return value if isinstance(value, ast.Name) and value.id != func.id else None


def _returns_deterministic(
    m: ModuleModel, fn: Function, nones: frozenset[str] = frozenset()
) -> bool:
    """True if every value `fn` returns is a deterministic expression of its inputs, when
    the parameters `nones` are given None (a return of one of them is then not taken)."""
    results = m.state(_Results).by_function
    key = (fn, nones)
    known = results.get(key)
    if known is not None:
        return known
    results[key] = False  # recursion: give it the benefit of the doubt
    returns, local = _returns_and_locals(fn)
    returns = [r for r in returns if not (isinstance(r, ast.Name) and r.id in nones)]
    unknown: list[str] = []
    result = (
        bool(returns)
        and all(
            _deterministic(m, r, set(), functools.partial(_values_of, local), unknown)
            for r in returns
        )
        and not unknown
    )
    results[key] = result
    return result


def _settings_given(fn: Function, call: ast.Call) -> list[ast.expr]:
    """The arguments `call` hands to parameters `fn` reads only the fields of
    (``policy.backoff_factor``)."""
    reads: dict[str, bool] = {}
    for sub in ast.walk(fn):
        for child in ast.iter_child_nodes(sub):
            if isinstance(child, ast.Name):
                field = isinstance(sub, ast.Attribute) and sub.value is child
                reads[child.id] = reads.get(child.id, True) and field
    return [value for name, value in _given(fn, call) if name is not None and reads.get(name)]


def _given(fn: Function, call: ast.Call) -> list[tuple[str | None, ast.expr]]:
    """The parameter of `fn` each argument of `call` is given to."""
    params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if fn.col_offset and params and isinstance(call.func, ast.Attribute):
        params = params[1:]  # self.method(...): the first parameter is bound
    given = zip(params, call.args, strict=False)  # extra arguments go to *args
    return [*given, *((kw.arg, kw.value) for kw in call.keywords)]


def _passed_none(fn: Function, call: ast.Call) -> frozenset[str]:
    """The parameters of `fn` that `call` gives None (``_retry_delay(policy, attempt,
    None)``: the server's delay it would prefer is absent, its own backoff is returned)."""
    return frozenset(
        name
        for name, value in _given(fn, call)
        if name is not None and isinstance(value, ast.Constant) and value.value is None
    )


def _values_of(local: dict[str, list[ast.expr]], name: str) -> list[ast.expr]:
    return local.get(name, [])


def _returns_and_locals(fn: Function) -> tuple[list[ast.expr], dict[str, list[ast.expr]]]:
    """What `fn` returns, and the values each of its local names is assigned."""
    local: dict[str, list[ast.expr]] = {}
    returns: list[ast.expr] = []
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Return) and sub.value is not None:
            returns.append(sub.value)
        elif isinstance(sub, ast.Assign | ast.AnnAssign | ast.AugAssign) and sub.value:
            for target in sub.targets if isinstance(sub, ast.Assign) else [sub.target]:
                if isinstance(target, ast.Name):
                    local.setdefault(target.id, []).append(sub.value)
    return returns, local


class _Results:
    """What this module's functions were found to do, each worked out once."""

    __slots__ = ("by_function", "injected_sleeps", "only_waits")

    def __init__(self) -> None:
        # (function, parameters given None) -> returns a deterministic value
        self.by_function: dict[tuple[ast.AST, frozenset[str]], bool] = {}
        # class -> the self attributes holding a sleep its constructor was handed
        self.injected_sleeps: dict[ast.ClassDef, frozenset[str]] = {}
        self.only_waits: dict[ast.AST, bool] = {}  # a sleep helper (`_calls_sleep_helper`)


def scope_end(m: ModuleModel, scope: Scope) -> None:
    """Tell the other modules of the run whether this generator yields attempt numbers."""
    if scope.is_generator and isinstance(scope.node, ast.FunctionDef):
        counters = m.facts.counters
        counters[scope.name] = counters.get(scope.name, True) and _yields_count(scope.node)


def module_end(m: ModuleModel) -> None:
    """Tell the other modules of the run which delay helpers here are deterministic; report
    the helpers' failure pauses that a loop over attempts here retries."""
    attempts = m.state(_Attempts)
    for name, counters in attempts.called.items():
        for judged in attempts.failing.get(name, ()):
            _emit(m, judged, counters)
    for name, fn in m.functions.items():
        if _DELAY_HELPER.search(name):
            m.facts.helpers[name] = _returns_deterministic(m, fn)
