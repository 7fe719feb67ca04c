-- Who called: user_id, session_id, prompt_name and prompt_version now hold the value in effect for a
-- span: its own, or else the one it inherits from its nearest ancestor that states it (or the
-- trace's root), filled in by the worker also when the ancestor arrives after the span
-- (streams/inheritance.py). `inherited` names the fields that came from an ancestor ('user_id',
-- 'session_id', 'prompt'), so the span's own statement stays known. Rows written before this
-- migration inherited nothing: the default says so, and their values keep their meaning.
ALTER TABLE {db}.spans
    ADD COLUMN IF NOT EXISTS inherited Array(LowCardinality(String)) DEFAULT [] AFTER prompt_version;
