"""The README's "Operating LLMScope" section names every metric the roles export, so the list an
operator reads is the list they can scrape."""

from __future__ import annotations

import re
from pathlib import Path

from tests.prometheus import exported_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_exported_metric_is_documented_and_nothing_else() -> None:
    section = README.read_text().split("## Operating LLMScope", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(llmscope_[a-z_]+)`", section))
    assert documented == exported_names(histogram_parts=False)
