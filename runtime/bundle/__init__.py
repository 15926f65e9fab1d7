"""A bundle on disk: its manifest (schema, read and write) and its files (opened inside it, verified)."""
