"""Queries, grouped by what they read or write. Each takes the session of its caller's transaction."""
