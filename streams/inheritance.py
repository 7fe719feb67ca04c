"""Settling who called across batches: after a batch's spans are stored, the spans of its traces
take the user, session and prompt they inherit (streams/stages/inherit.py) from ancestors stored
before or after them, so a root that arrives last (the usual order: a parent span ends, and is
exported, after its children) still gives its values to the model calls under it.

How it stays right
------------------
* It runs after the batch's INSERT and reads the traces back from `spans FINAL`, so of two
  batches holding a child and its ancestor, processed at the same time by two workers, the one
  that reads last sees both and settles the child. It runs before the batch is acknowledged, so a
  crash redelivers the batch and settles again; settling what is settled writes nothing.
* A changed span is written again whole (INSERT … SELECT from `spans FINAL`), with its
  `ingested_at` (the table's version) one nanosecond later, so the new row replaces the old one
  and a redelivered copy of the old one (same `ingested_at`) cannot win it back. A client retry of
  the span (a later `ingested_at`) replaces it with what that batch settled.
* It returns the (tenant, minute) of every rewritten span: their minute rollups are recomputed,
  since the prompt is a rollup dimension.

The cost is one narrow read per batch (the parent links and four columns of the batch's traces,
pruned to the days a trace can span) and one rewrite of each span whose values changed. Of what
it reads, only the traces where resolving could change a value (`_may_change`) become Python rows:
when every span states its user and session, or none does, nothing is resolved in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import polars as pl

from llmscope.storage import Store
from schemas.times import MAX_SPAN_DURATION_NS
from streams.stages.inherit import COLUMNS, FIELDS, Node, Resolved, own_values, resolve

_FMT_NS = 10**9


def settle(store: Store, traces: Mapping[str, Set[str]], first_start_ns: int, last_start_ns: int) -> set[tuple[str, int]]:
    """Bring the inherited values of every span of `traces` (tenant -> trace ids) up to date;
    returns the (tenant, minute as Unix seconds) of the spans rewritten."""
    # A trace's spans start within one span's duration of each other (children start inside their
    # parent), so looking that far either side of the batch finds all of them.
    window = {"lo": _seconds(first_start_ns - MAX_SPAN_DURATION_NS), "hi": _seconds(last_start_ns + MAX_SPAN_DURATION_NS + 1)}
    touched: set[tuple[str, int]] = set()
    for tenant, ids in sorted(traces.items()):
        params = {"tenant": tenant, "traces": sorted(ids), **window}
        rows = _may_change(store.query(_READ.format(db=store.database), params)).to_dicts()
        changes = _changes(rows)
        if not changes:
            continue
        keys = sorted(changes)
        columns = {c: [changes[k].values[c] for k in keys] for c in COLUMNS}
        store.command(_REWRITE.format(db=store.database), {
            **params, "keys": keys, "inherited": [list(changes[k].inherited) for k in keys], **columns,
        })
        touched |= {(tenant, r["minute"]) for r in rows if r["trace_id"] + r["span_id"] in changes}
    return touched


def settle_range(store: Store, start_ns: int, end_ns: int, chunk: int = 1000) -> set[tuple[str, int]]:
    """Settle every trace with a span starting in [start_ns, end_ns): the path for spans stored before
    inheritance existed (or by a worker that skipped it). Follow it with
    streams.compaction.rebuild_minutes over the returned minutes' range, then compaction, so the rollups
    group the settled prompts too."""
    df = store.query(
        f"SELECT DISTINCT tenant_id, trace_id FROM {store.database}.spans "
        "WHERE start_time >= {lo:DateTime64(9, 'UTC')} AND start_time < {hi:DateTime64(9, 'UTC')}",
        {"lo": _seconds(start_ns), "hi": _seconds(end_ns)},
    )
    by_tenant: dict[str, list[str]] = {}
    for row in df.to_dicts():
        by_tenant.setdefault(row["tenant_id"], []).append(row["trace_id"])
    touched: set[tuple[str, int]] = set()
    for tenant, ids in by_tenant.items():
        for i in range(0, len(ids), chunk):
            touched |= settle(store, {tenant: set(ids[i:i + chunk])}, start_ns, end_ns)
    return touched


def _seconds(ns: int) -> str:
    return f"{max(0, ns) / _FMT_NS:.9f}"


def _changes(rows: list[dict]) -> dict[str, Resolved]:
    """trace_id + span_id -> the values in effect, for every span whose stored values differ."""
    by_trace: dict[str, list[dict]] = {}
    for row in rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    out = {}
    for trace_id, members in by_trace.items():
        resolved = resolve(Node(r["span_id"], r["parent_span_id"], own_values(r, r["inherited"])) for r in members)
        for row in members:
            found = resolved[row["span_id"]]
            if found.values != {c: row[c] for c in COLUMNS} or list(found.inherited) != list(row["inherited"]):
                out[trace_id + row["span_id"]] = found
    return out


def _may_change(spans: pl.DataFrame) -> pl.DataFrame:
    """The spans of the traces where `resolve` might change a value. It cannot change one when no
    span holds a value it was given, none states a field's later columns without its first
    (resolving clears those), and for every field either no span states it or every span with a
    parent does (a root has nothing to inherit from). Filtered in polars before the rows become
    Python dicts (turning 20,000 rows into dicts and resolving them was most of a settle's 190 ms),
    and outside the store's lock, which the same test as a window in the SQL held longer."""
    given = pl.col("inherited").list.len() > 0
    for first, *rest in FIELDS.values():
        if rest:
            given = given | ((pl.col(first) == "") & pl.any_horizontal([pl.col(c) != "" for c in rest]))
    facts, may = [given.any().alias("given")], [pl.col("given")]  # per trace: does any span ...
    for first, *_ in FIELDS.values():
        facts += [(pl.col(first) != "").any().alias(f"{first} stated"),
                  ((pl.col("parent_span_id") != "") & (pl.col(first) == "")).any().alias(f"{first} lacking")]
        may.append(pl.col(f"{first} stated") & pl.col(f"{first} lacking"))
    traces = spans.group_by("trace_id").agg(facts).filter(pl.any_horizontal(may))["trace_id"]
    return spans.filter(pl.col("trace_id").is_in(traces.implode()))


_READ = """
    SELECT trace_id, span_id, parent_span_id, user_id, session_id, prompt_name, prompt_version, inherited,
           toUnixTimestamp(toStartOfMinute(start_time)) AS minute
    FROM {db}.spans FINAL
    WHERE tenant_id = {{tenant:String}} AND trace_id IN {{traces:Array(String)}}
      AND start_time >= {{lo:DateTime64(9, 'UTC')}} AND start_time < {{hi:DateTime64(9, 'UTC')}}
"""

_REWRITE = """
    INSERT INTO {db}.spans
    SELECT * EXCEPT (i) REPLACE (
        {{user_id:Array(String)}}[i] AS user_id,
        {{session_id:Array(String)}}[i] AS session_id,
        {{prompt_name:Array(String)}}[i] AS prompt_name,
        {{prompt_version:Array(String)}}[i] AS prompt_version,
        {{inherited:Array(Array(String))}}[i] AS inherited,
        ingested_at + toIntervalNanosecond(1) AS ingested_at
    )
    FROM (
        SELECT *, indexOf({{keys:Array(String)}}, concat(trace_id, span_id)) AS i
        FROM {db}.spans FINAL
        WHERE tenant_id = {{tenant:String}} AND trace_id IN {{traces:Array(String)}}
          AND start_time >= {{lo:DateTime64(9, 'UTC')}} AND start_time < {{hi:DateTime64(9, 'UTC')}}
    )
    WHERE i > 0
"""
