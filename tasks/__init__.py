"""Dramatiq broker setup, the actors (thin, idempotent) and the scheduler."""
