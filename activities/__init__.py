"""Activities: every piece of I/O a journey does (database writes, messages, webhooks)."""
