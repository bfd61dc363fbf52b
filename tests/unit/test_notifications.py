"""The rules of telling: signatures, the retry schedule, the addresses a delivery may not reach."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.lifecycle import BookingStatus
from domain.notifications import (
    EMAILED_STATUSES,
    EVENT_OF_STATUS,
    RetrySchedule,
    is_forbidden_address,
    signature_header,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_the_signature_is_stripes_scheme_over_timestamp_and_body():
    header = signature_header("whsec_k", b'{"a":1}', 1700000000)
    expected = hmac.new(b"whsec_k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_every_transition_a_client_hears_of_is_a_booking_event():
    assert {s.value for s in EVENT_OF_STATUS} == {"authorized", "confirmed", "rejected", "expired", "cancelled", "refunded"}
    assert EMAILED_STATUSES == {BookingStatus.CONFIRMED, BookingStatus.EXPIRED, BookingStatus.CANCELLED,
                                BookingStatus.REFUNDED}


@given(attempts=st.integers(1, 200), jitter=st.floats(0, 1, exclude_max=True), age=st.integers(0, 3 * 86400 - 1))
def test_a_retry_waits_between_half_and_all_of_a_doubling_capped_delay(attempts, jitter, age):
    schedule = RetrySchedule()
    at = schedule.next_attempt(attempts, NOW, NOW - timedelta(seconds=age), jitter)
    ceiling = min(timedelta(seconds=10) * 2 ** min(attempts - 1, 32), timedelta(hours=6))
    assert at is not None and ceiling / 2 <= at - NOW <= ceiling


def test_retries_end_three_days_after_the_event():
    assert RetrySchedule().next_attempt(5, NOW, NOW - timedelta(days=3), 0.3) is None


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "255.255.255.255", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "ff02::1", "::",
    "not an address",
])
def test_private_loopback_and_reserved_addresses_are_forbidden(address):
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert not is_forbidden_address(address)
