"""The storage adapter: parameters reach the engine exactly as given, whatever they contain."""

from __future__ import annotations

import pytest

from llmscope.storage import Store

TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "quote's", "\\t literal", "nul\0byte", "ünïcødé", ""]


@pytest.mark.parametrize("value", TRICKY)
def test_string_parameter_round_trips_exactly(store: Store, value: str) -> None:
    assert store.query("SELECT {v:String} AS v", {"v": value})["v"][0] == value


def test_array_parameter_round_trips_exactly(store: Store) -> None:
    assert store.query("SELECT {v:Array(String)} AS v", {"v": TRICKY})["v"][0].to_list() == TRICKY


def test_numbers_and_booleans(store: Store) -> None:
    row = store.query("SELECT {i:Int64} AS i, {f:Float64} AS f, {b:Bool} AS b", {"i": -7, "f": 0.25, "b": True}).row(0)
    assert row == (-7, 0.25, True)
