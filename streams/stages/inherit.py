"""Who called: the user, session and prompt a span inherits from its trace. Pure.

Users and sessions are usually set once per trace (on the root or an agent span, or by baggage
on the spans that ask for it), not on every model call inside it. A span that states none of a
field takes it from its nearest ancestor that states it; when the chain of parents breaks (a
parent has not arrived yet), from the trace's root. The prompt is one field: name and version go
together, a version never joins another prompt's name.

The resolved values are stored in the span's own columns (user_id, session_id, prompt_name,
prompt_version), so every reader (analytics, breakdowns, rollups, the traces list, the dashboards)
sees the values in effect without a join; `inherited` lists the fields that came from an ancestor,
so a later arrival can tell what the span stated itself from what it was given, and resolve again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FIELDS: Mapping[str, tuple[str, ...]] = {
    "user_id": ("user_id",),
    "session_id": ("session_id",),
    "prompt": ("prompt_name", "prompt_version"),
}
COLUMNS = tuple(c for columns in FIELDS.values() for c in columns)


@dataclass(frozen=True, slots=True)
class Node:
    """One span of a trace, as inheritance sees it: its parent and the values it states itself."""

    span_id: str
    parent_span_id: str
    own: Mapping[str, tuple[str, ...]]  # field -> its columns' values; a field is stated when its first is not ''


@dataclass(frozen=True, slots=True)
class Resolved:
    values: dict[str, str]  # column -> value in effect
    inherited: tuple[str, ...]  # fields whose value came from an ancestor, in FIELDS order


def own_values(columns: Mapping[str, str], inherited: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """What a span states itself: its columns, less the fields it was given."""
    given = set(inherited)
    return {
        field: tuple("" for _ in cols) if field in given else tuple(columns[c] for c in cols)
        for field, cols in FIELDS.items()
    }


def resolve(nodes: Iterable[Node]) -> dict[str, Resolved]:
    """span_id -> the values in effect, for the spans of one trace."""
    by_id = {n.span_id: n for n in nodes}
    roots = sorted(n.span_id for n in by_id.values() if not n.parent_span_id)
    root = by_id[roots[0]] if roots else None
    out = {}
    for node in by_id.values():
        values: dict[str, str] = {}
        inherited = []
        for field, cols in FIELDS.items():
            found, from_ancestor = _value(node, field, by_id, root)
            values.update(zip(cols, found))
            if from_ancestor:
                inherited.append(field)
        out[node.span_id] = Resolved(values, tuple(inherited))
    return out


def _value(node: Node, field: str, by_id: Mapping[str, Node], root: Node | None) -> tuple[tuple[str, ...], bool]:
    if node.own[field][0]:
        return node.own[field], False
    seen, parent = {node.span_id}, node.parent_span_id
    while parent in by_id and parent not in seen:  # `seen`: a cycle of bad parent ids ends the walk
        seen.add(parent)
        ancestor = by_id[parent]
        if ancestor.own[field][0]:
            return ancestor.own[field], True
        parent = ancestor.parent_span_id
    if parent and parent not in seen and root is not None and root.own[field][0]:
        return root.own[field], True  # the chain broke at a parent not received yet: the root's
    return tuple("" for _ in FIELDS[field]), False
