"""Process configuration, read once from the environment (12-factor)."""

from config.settings import Settings

__all__ = ["Settings"]
