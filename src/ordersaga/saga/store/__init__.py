"""The saga log behind a store protocol (SQLite, PostgreSQL, memory)."""
