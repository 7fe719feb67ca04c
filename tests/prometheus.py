"""Reading a /metrics answer the way Prometheus does: prometheus-client's own text parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from llmscope import metrics  # noqa: F401  (registers every metric of the roles)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, its labels) -> value; fails on anything the Prometheus text parser refuses."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum over samples named `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples(text).items() if n == name and wanted <= have)


def exported_names(histogram_parts: bool = True) -> set[str]:
    """Every sample name the roles' /metrics can carry: a counter's _total, a histogram's _bucket,
    _sum and _count (or, without `histogram_parts`, its own name)."""
    parts = ["_bucket", "_sum", "_count"] if histogram_parts else [""]
    suffixes = {"counter": ["_total"], "histogram": parts, "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("llmscope_")
        for suffix in suffixes.get(family.type, [""])
    }
