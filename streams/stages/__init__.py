"""The worker's pure stages: plain data in, plain data out, no I/O (no store, broker or Redis).

A message's path through them: `decode` (topic message → spans, via `normalise` for OTLP and
`sdk_events` for SDK events) → `enrich` (`model_names`, `cost`, `pii`) → rows; `pipeline` chains
them for one batch, so the whole CPU stage runs in a process pool and is tested alone.
"""
