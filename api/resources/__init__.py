"""Falcon resources: a class per collection or item, responders that read like the spec."""
