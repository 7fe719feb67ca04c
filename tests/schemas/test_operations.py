"""The one rule for what a request is: model calls by operation, in Python and in SQL alike."""

from __future__ import annotations

import pytest

from llmscope.storage import Store
from schemas.operations import MODEL_CALL_OPERATIONS, canonical_operation, is_model_call, model_call_sql

CASES = [
    ("chat", "gpt-4o", True), ("text_completion", "", True), ("generate_content", "gemini-2.5-pro", True),
    ("embeddings", "text-embedding-3-small", True), ("llm", "gpt-4o", True),  # OpenInference LLM kind
    ("", "gpt-4o", True),  # no operation stated, but a model named: a call from an older instrumentation
    ("invoke_agent", "gpt-4o", False), ("create_agent", "", False), ("execute_tool", "", False),
    ("chain", "", False), ("agent", "", False), ("span", "", False), ("", "", False),
]


@pytest.mark.parametrize(("operation", "model", "expected"), CASES)
def test_model_calls_are_the_inference_operations(operation: str, model: str, expected: bool, store: Store) -> None:
    assert is_model_call(operation, model) is expected
    sql = f"SELECT {model_call_sql()} AS m FROM (SELECT {{o:String}} AS operation, {{m:String}} AS model)"
    assert bool(store.query(sql, {"o": operation, "m": model})["m"][0]) is expected


@pytest.mark.parametrize(("given", "stored"), [("completion", "text_completion"), ("embedding", "embeddings"),
                                               (" Chat ", "chat"), ("unknown", ""), ("LLM", "llm")])
def test_other_spellings_become_the_genai_names(given: str, stored: str) -> None:
    assert canonical_operation(given) == stored


def test_every_model_call_operation_is_canonical() -> None:
    assert all(canonical_operation(o) == o for o in MODEL_CALL_OPERATIONS)
