"""Who called: model calls inherit user, session and prompt from their trace, whatever the order
in which its spans arrive; pure resolution first, then the stored spans and what reads them."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmscope.storage import Store
from schemas import span_columns
from schemas.span import Span
from streams.compaction import recompute_minutes
from streams.inheritance import settle, settle_range
from streams.stages.inherit import Node, own_values, resolve
from streams.stages.pipeline import _columns, _inherit_within, prepare
from streams.stages.normalise import normalise
from tests.otlp_factory import kv, llm_span, request_of
from tests.schemas.test_rollup import make_span
from tests.streams.test_pipeline import POLICIES, _raw


def _node(span_id: str, parent: str, user: str = "", session: str = "", prompt: tuple[str, str] = ("", "")) -> Node:
    return Node(span_id, parent, own_values({"user_id": user, "session_id": session,
                                             "prompt_name": prompt[0], "prompt_version": prompt[1]}))


def test_the_nearest_ancestor_that_states_a_field_gives_it() -> None:
    found = resolve([_node("r", "", user="root-user", session="s1"), _node("a", "r", user="agent-user"),
                     _node("c", "a", prompt=("reply", "v2")), _node("t", "c")])
    assert found["c"].values == {"user_id": "agent-user", "session_id": "s1", "prompt_name": "reply", "prompt_version": "v2"}
    assert found["c"].inherited == ("user_id", "session_id")
    assert found["t"].values["prompt_name"] == "reply" and found["t"].inherited == ("user_id", "session_id", "prompt")
    assert found["r"].inherited == ()


def test_a_broken_chain_falls_back_to_the_root_and_a_prompt_version_never_joins_another_name() -> None:
    found = resolve([_node("r", "", user="u", prompt=("plan", "v1")), _node("c", "missing", prompt=("", "v9"))])
    assert found["c"].values == {"user_id": "u", "session_id": "", "prompt_name": "plan", "prompt_version": "v1"}
    found = resolve([_node("r", "", user="u"), _node("c", "r", prompt=("reply", ""))])
    assert (found["c"].values["prompt_name"], found["c"].values["prompt_version"]) == ("reply", "")


def test_cyclic_parent_ids_end_the_walk() -> None:
    found = resolve([_node("a", "b"), _node("b", "a"), _node("r", "", user="u")])
    assert found["a"].values["user_id"] == ""


def test_a_trace_that_arrives_whole_is_resolved_within_its_batch() -> None:
    trace, root = b"\x01" * 16, llm_span(extra={"user.id": "u-1", "session.id": "s-1"})
    root.trace_id, root.parent_span_id = trace, b""
    child = llm_span(trace, parent=root.span_id)
    prepared = prepare([_raw([child, root])], POLICIES)
    rows = {r["span_id"]: r for r in span_columns.rows(prepared.spans)}
    assert (rows[child.span_id.hex()]["user_id"], rows[child.span_id.hex()]["inherited"]) == ("u-1", ["user_id", "session_id"])
    assert prepared.traces == {"pipe": {trace.hex()}}


_VALUES = st.sampled_from(["", "", "a", "b"])


@given(st.lists(st.tuples(st.sampled_from(["", "s0", "s1", "s2", "gone"]), _VALUES, _VALUES, _VALUES), min_size=2, max_size=6))
def test_a_batch_resolves_as_resolving_every_trace_would(shape: list[tuple[str, str, str, str]]) -> None:
    """Traces where nothing can be inherited skip the resolver; what they get must not change."""
    spans = [make_span("t1", 0, 1, 1, span_id=f"s{i}", parent_span_id=parent, user_id=user, session_id=session,
                       prompt_name=prompt, prompt_version=prompt and "v1")
             for i, (parent, user, session, prompt) in enumerate(shape)]
    expected = resolve(Node(s.span_id, s.parent_span_id, own_values(_columns(s))) for s in spans)
    _inherit_within(spans)
    for s in spans:
        assert (_columns(s), s.inherited) == (expected[s.span_id].values, list(expected[s.span_id].inherited))


T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)  # within the retention


def _store(store: Store, spans: list[Span]) -> set[tuple[str, int]]:
    """What the worker does with a batch: insert, settle, recompute the touched minutes."""
    store.insert_rows(f"{store.database}.spans", [s.to_row(time.time_ns()) for s in spans])
    starts = [s.start_time_ns for s in spans]
    settled = settle(store, {spans[0].tenant_id: {s.trace_id for s in spans}}, min(starts), max(starts))
    minutes = {s.start_time_ns // 60_000_000_000 * 60 for s in spans} | {m for _, m in settled}
    recompute_minutes(store, {spans[0].tenant_id}, {datetime.fromtimestamp(m, timezone.utc) for m in minutes})
    return settled


def _stored(store: Store, tenant: str) -> dict[str, tuple[str, str, list[str]]]:
    df = store.query(f"SELECT span_id, user_id, prompt_name, inherited FROM {store.database}.spans FINAL "
                     "WHERE tenant_id = {t:String}", {"t": tenant})
    return {r["span_id"]: (r["user_id"], r["prompt_name"], list(r["inherited"])) for r in df.to_dicts()}


def test_model_calls_inherit_from_a_root_that_arrives_after_them(store: Store) -> None:
    tenant, start = "inherit-late-root", int(T0.timestamp()) * 10**9
    root = make_span(tenant, 1, start, 120 * 10**9, operation="invoke_agent", request_model="", user_id="u-late",
                     prompt_name="triage", prompt_version="3")
    calls = [make_span(tenant, 1, start + i * 30 * 10**9, 10**9, span_id=f"{0xC0 + i:016x}", parent_span_id=root.span_id)
             for i in range(3)]
    assert _store(store, calls) == set()  # nothing to inherit yet
    assert {v[0] for v in _stored(store, tenant).values()} == {""}
    settled = _store(store, [root])
    assert settled == {(tenant, start // 10**9 + m) for m in (0, 0, 60)}
    stored = _stored(store, tenant)
    assert all(stored[c.span_id] == ("u-late", "triage", ["user_id", "prompt"]) for c in calls)
    assert stored[root.span_id] == ("u-late", "triage", [])
    # The rollups group the calls under the inherited prompt; a second settle writes nothing.
    df = store.query(f"SELECT prompt_name, sum(requests) AS n FROM {store.database}.rollup_minute FINAL "
                     "WHERE tenant_id = {t:String} AND operation = 'chat' GROUP BY prompt_name", {"t": tenant})
    assert df.to_dicts() == [{"prompt_name": "triage", "n": 3}]
    assert settle(store, {tenant: {root.trace_id}}, start, start) == set()


def test_a_redelivered_child_does_not_win_back_its_empty_values(store: Store) -> None:
    tenant, start = "inherit-redelivered", int(T0.timestamp()) * 10**9
    root = make_span(tenant, 2, start, 10**10, operation="invoke_agent", user_id="u-r")
    child = make_span(tenant, 2, start + 10**9, 10**9, span_id="c" * 16, parent_span_id=root.span_id)
    ingested = time.time_ns()
    store.insert_rows(f"{store.database}.spans", [child.to_row(ingested)])
    _store(store, [root])
    # The same message again: the same ingested_at as the first delivery.
    store.insert_rows(f"{store.database}.spans", [child.to_row(ingested)])
    assert settle(store, {tenant: {child.trace_id}}, start, start) == set()
    assert _stored(store, tenant)[child.span_id][0] == "u-r"


def test_a_user_and_session_set_as_resource_attributes_hold_for_spans_that_name_none() -> None:
    req = request_of([llm_span(), llm_span(extra={"user.id": "own"})])
    req.resource_spans[0].resource.attributes.extend([kv("enduser.id", "res-user"), kv("session.id", "res-session")])
    spans = normalise(req, "t")
    assert [(s.user_id, s.session_id) for s in spans] == [("res-user", "res-session"), ("own", "res-session")]


_SHAPES = st.lists(
    st.tuples(st.sampled_from(["", "s0", "s1", "s2", "gone"]), _VALUES, _VALUES, _VALUES, st.sampled_from(["", "v1"])),
    min_size=1, max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(shape=_SHAPES, split=st.integers(0, 6))
# A call whose parent has not arrived takes the root's user; when the parent comes, its own.
@example(shape=[("", "a", "", "", ""), ("s2", "", "", "", ""), ("s0", "b", "", "", "")], split=2)
def test_settling_stores_what_resolving_the_whole_trace_gives(
    store: Store, shape: list[tuple[str, ...]], split: int,
) -> None:
    """Whatever the trace and however it arrives (in two batches here), the stored values are those
    of resolving it whole: also when the read skips a trace where resolving could change nothing."""
    tenant, start = f"inherit-{uuid.uuid4().hex[:8]}", int(T0.timestamp()) * 10**9
    spans = [make_span(tenant, 9, start + i, 10**9, span_id=f"s{i}", parent_span_id=parent, user_id=user,
                       session_id=session, prompt_name=prompt, prompt_version=version)
             for i, (parent, user, session, prompt, version) in enumerate(shape)]
    for batch in (spans[:split], spans[split:]):
        if batch:
            store.insert_rows(f"{store.database}.spans", [s.to_row(time.time_ns()) for s in batch])
            settle(store, {tenant: {spans[0].trace_id}}, batch[0].start_time_ns, batch[-1].start_time_ns)
    expected = resolve(Node(s.span_id, s.parent_span_id, own_values(_columns(s))) for s in spans)
    df = store.query(f"SELECT span_id, user_id, session_id, prompt_name, prompt_version, inherited "
                     f"FROM {store.database}.spans FINAL WHERE tenant_id = {{t:String}}", {"t": tenant})
    stored = {r.pop("span_id"): (r, list(r.pop("inherited"))) for r in df.to_dicts()}
    assert stored == {k: (v.values, list(v.inherited)) for k, v in expected.items()}


def test_spans_stored_before_inheritance_are_settled_by_the_range_path(store: Store) -> None:
    tenant, start = "inherit-backfill", int(T0.timestamp()) * 10**9
    root = make_span(tenant, 3, start, 10**10, operation="invoke_agent", user_id="u-old", session_id="s-old")
    child = make_span(tenant, 3, start + 10**9, 10**9, span_id="d" * 16, parent_span_id=root.span_id)
    store.insert_rows(f"{store.database}.spans", [s.to_row(time.time_ns()) for s in (root, child)])  # never settled
    assert _stored(store, tenant)[child.span_id][0] == ""
    assert (tenant, start // 10**9) in settle_range(store, start, start + 60 * 10**9)
    assert _stored(store, tenant)[child.span_id] == ("u-old", "", ["user_id", "session_id"])
