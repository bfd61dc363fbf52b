"""Adapters to the outside world: Stripe (later SMTP, outgoing HTTP)."""
