"""Provider wrappers: they time a call, read its usage, submit one event, and return what the provider returned."""
