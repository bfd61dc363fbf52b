"""Building blocks of the documents the services take in (the API's bodies, an import file):
free text PostgreSQL can store, RFC 3339 instants in UTC, and models that refuse unknown fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict

#: Free text that is stored or queried: PostgreSQL text cannot hold NUL, so a NUL was a 500.
NO_NUL = r"^[^\x00]*$"


def _in_utc(value: datetime) -> datetime:
    """Times are taken in UTC. PostgreSQL refuses UTC offsets beyond ±15:59, which RFC 3339 allows
    (a 500 at the first range built from one), and a time at the very edge of year 1 or 9999 has
    no UTC datetime in Python (a 500 reading it back)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def _rfc3339_text(value: object) -> object:
    """Pydantic would also take a number as seconds since 1970; the API promises RFC 3339 text."""
    if not isinstance(value, datetime) and not (isinstance(value, str) and _RFC3339_START.match(value)):
        raise ValueError("give an RFC 3339 date-time, e.g. 2030-01-01T09:00:00Z")
    return value


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
