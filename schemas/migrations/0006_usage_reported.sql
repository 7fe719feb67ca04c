-- Zero is not unknown: whether a span stated its token usage. 1 = stated, even as all zeros (a cached
-- answer, a refused call: cost $0); 0 = said nothing (usage and cost unknown). The token columns stay
-- UInt64 with 0 for "none", so every sum over them (rollups, queries) is unchanged.
-- Rows written before this migration never told the two apart, and the cost stage then treated all
-- zeros as unknown: the default reads them the same way (computed on read, nothing is rewritten).
ALTER TABLE {db}.spans
    ADD COLUMN IF NOT EXISTS usage_reported UInt8
        DEFAULT input_tokens > 0 OR output_tokens > 0 OR cached_input_tokens > 0 OR cache_write_tokens > 0
                OR reasoning_tokens > 0
        AFTER reasoning_tokens;
