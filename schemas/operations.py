"""What a "request" is: the one rule for which spans are model calls, shared by the analytics, the
traces list, the Grafana dashboards and the normalisers.

Users of an LLM observability tool read "requests" as calls to a model. Applications wrap those
calls in agent, workflow, tool and chain spans (agent frameworks, our SDK's `span(...)`); counting
those too would read 4 model calls under 4 agent spans as 8 requests, dilute the error rate and mix
agent turns into the latency percentiles. So every figure the analytics report by default (requests,
errors, tokens, cost, latency) is over model calls only, and the other spans are there on purpose:
an `operation` filter names one operation, or `*` every span.

A model call is a span whose operation is an inference operation as the OpenTelemetry GenAI
conventions name them (`gen_ai.operation.name`: chat, text_completion, generate_content,
embeddings; not create_agent, invoke_agent, execute_tool), or OpenInference's LLM span kind
(`llm`: a chat or completion call; its EMBEDDING kind becomes `embeddings`). A span that states no
operation at all but names a model is a model call too: instrumentations that predate
`gen_ai.operation.name` (and the Vercel AI SDK's `doGenerate` spans) name the model only on the call.
"""

from __future__ import annotations

MODEL_CALL_OPERATIONS = ("chat", "text_completion", "generate_content", "embeddings", "llm")

# The `operation` filter value that counts every span, whatever its operation. No operation name
# can be it: the SDK's names start with a letter, and `*` is no GenAI, OpenInference or OpenLLMetry name.
ALL_OPERATIONS = "*"

# Other spellings of inference operations, as the GenAI names: OpenLLMetry's request types
# (`llm.request.type`) and the OpenInference EMBEDDING kind; "unknown" says nothing.
_ALIASES = {"completion": "text_completion", "embedding": "embeddings", "unknown": ""}


def canonical_operation(name: str) -> str:
    """The stored operation for a name as an instrumentation (or an SDK event) states it."""
    name = name.strip().lower()
    return _ALIASES.get(name, name)


def is_model_call(operation: str, model: str) -> bool:
    return operation in MODEL_CALL_OPERATIONS or (operation == "" and model != "")


def model_call_sql(operation: str = "operation", model: str = "model") -> str:
    """is_model_call as a ClickHouse condition over two String columns (the spans table and every
    rollup level carry both)."""
    names = ", ".join(f"'{o}'" for o in MODEL_CALL_OPERATIONS)
    return f"({operation} IN ({names}) OR ({operation} = '' AND {model} != ''))"
