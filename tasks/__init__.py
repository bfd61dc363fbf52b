"""Dramatiq broker setup, the actors (thin, idempotent), the scheduler and the Stripe adapter."""
