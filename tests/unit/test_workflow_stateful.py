"""The workflow as a state machine: clients act, workers apply `next_step`, the provider
reports on the payment, the clock runs.

The model plays the services' part in memory. Each step `next_step` chooses is performed the
way `services.advance` and `services.payment_steps` perform it, every status change going
through `check_transition`, with each answer a hold or the provider can give, and with workers
that die after claiming a provider step. Every answer and every report the provider gives is
applied by the rule the services use, `domain.payment_facts.apply_fact`. After every action
the workflow is also run to the end, from the booking as it is and as a cancel, a confirm or a
long wait would leave it, along every branch of answers, and where it comes to rest is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.errors import InvalidState
from domain.lifecycle import (
    FINAL,
    BookingStatus,
    RetryHold,
    check_transition,
    ensure_cancellable,
    ensure_confirmable,
    ensure_payment_retryable,
)
from domain.payment_facts import BookingFacts, Books, FactKind, PaymentFact, apply_fact
from domain.payments import LIVE_AUTHORIZATION, CaptureMode, PaymentMode, PaymentStatus, PaymentStep
from domain.refunds import RefundPolicy
from domain.workflow import PROVIDER_STEPS, BookingSnapshot, Step, next_step

S = BookingStatus
P = PaymentStatus
START = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
HOLD_TTL = timedelta(minutes=15)
RETRY_WINDOW = timedelta(minutes=10)
LONG_WAIT = timedelta(days=1)
MAX_STEPS = 12  # as services.advance.MAX_STEPS
TOTAL = 10_000
POLICY = RefundPolicy.default()
RETRY_HOLD = RetryHold(window=RETRY_WINDOW, longest=timedelta(days=365))
#: Payments a finished booking must not leave open: money held, or one the customer could complete.
LEFT_OPEN = {P.AUTHORIZED, P.REQUIRES_ACTION}
#: As services.requests.RETRYABLE_PAYMENT.
RETRYABLE_PAYMENT = {P.NONE, P.FAILED, P.REQUIRES_ACTION}

#: What can come of each step. "requires_capture": the provider held the money without taking
#: it, even when asked to capture at once. Client and checkout payments only ever start.
OUTCOMES: dict[Step, tuple[str, ...]] = {
    Step.HOLD: ("held", "unavailable"),
    Step.AUTHORIZE: ("approved", "declined", "requires_capture"),
    Step.CAPTURE: ("captured",),
    Step.VOID: ("voided",),
    Step.REFUND: ("refunded",),
    Step.CANCEL: ("cancelled",),
    Step.EXPIRE: ("expired",),
}
#: Indexes into OUTCOMES (modulo their number): the first, a success, is drawn most often.
outcome_indexes = st.sampled_from([0, 0, 0, 1, 2])


@dataclass(frozen=True)
class Booking:
    status: BookingStatus
    payment_mode: PaymentMode
    capture_mode: CaptureMode
    has_payment_method: bool
    starts_at: datetime
    payment_status: PaymentStatus = P.NONE
    pending_step: PaymentStep | None = None
    expires_at: datetime | None = None
    confirm_requested: bool = False
    cancel_requested_at: datetime | None = None
    attempt: int = 1
    attempt_started: bool = False  # the provider was asked for the current attempt
    amount_authorized: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    def snapshot(self) -> BookingSnapshot:
        return BookingSnapshot(
            status=self.status,
            payment_mode=self.payment_mode,
            capture_mode=self.capture_mode,
            has_payment_method=self.has_payment_method,
            payment_status=self.payment_status,
            pending_step=self.pending_step,
            expires_at=self.expires_at,
            confirm_requested=self.confirm_requested,
            cancel_requested=self.cancel_requested,
            amount_captured=self.amount_captured,
            amount_refunded=self.amount_refunded,
        )

    def moved(self, target: BookingStatus) -> Booking:
        return replace(self, status=check_transition(self.status, target))


def makes_sense(booking: Booking, step: Step) -> bool:
    """Whether the provider can do `step` for the payment as recorded."""
    if step is Step.AUTHORIZE:
        return booking.payment_status is P.NONE
    if step is Step.CAPTURE:
        return booking.payment_status is P.AUTHORIZED
    if step is Step.VOID:
        return booking.payment_status in LEFT_OPEN
    return booking.amount_captured > booking.amount_refunded  # refund


def perform(booking: Booking, step: Step, index: int, now: datetime) -> Booking:
    """Do what a worker does for `step`, the world answering OUTCOMES[step][index]; record it."""
    outcomes = OUTCOMES[step]
    outcome = outcomes[index % len(outcomes)]
    if step in PROVIDER_STEPS:
        replay = booking.pending_step is not None
        booking = replace(booking, pending_step=None)
        if not makes_sense(booking, step):
            # Only a call claimed before a provider event changed the payment may be stale; the
            # provider refuses it and its own record, which the event brought, wins.
            assert replay, f"{step} chosen for {booking}"
            return booking
    if step is Step.HOLD:
        if outcome == "unavailable":
            return booking.moved(S.REJECTED)
        return replace(booking.moved(S.AWAITING_PAYMENT), expires_at=now + HOLD_TTL)
    if step is Step.CANCEL:
        return booking.moved(S.CANCELLED)
    if step is Step.EXPIRE:
        return booking.moved(S.EXPIRED)
    if step is Step.AUTHORIZE:
        return authorized(replace(booking, attempt_started=True), outcome, now)
    if step is Step.CAPTURE:
        return recorded(booking, P.CAPTURED, now)
    if step is Step.VOID:
        if booking.payment_mode is PaymentMode.CHECKOUT and booking.payment_status is not P.AUTHORIZED:
            return apply(booking, PaymentFact(FactKind.CHECKOUT_CLOSED), now)
        return recorded(booking, P.CANCELED, now)
    return refunded(booking, now)


def authorized(booking: Booking, outcome: str, now: datetime) -> Booking:
    if booking.payment_mode is not PaymentMode.CARD:
        return replace(booking, payment_status=P.REQUIRES_ACTION)  # intent or session created
    if outcome == "declined":
        return declined(booking, now)
    if booking.capture_mode is CaptureMode.IMMEDIATE and outcome == "approved":
        return recorded(booking, P.CAPTURED, now)
    return recorded(booking, P.AUTHORIZED, now)


def apply(booking: Booking, fact: PaymentFact, now: datetime) -> Booking:
    """As `LockedBooking.apply` after `apply_fact`: the books, the moves, the hold."""
    facts = BookingFacts(
        booking.status, TOTAL, "eur", cancel_requested=booking.cancel_requested,
        attempt=booking.attempt, expires_at=booking.expires_at, created_at=START,
        confirm_requested=booking.confirm_requested or booking.capture_mode is CaptureMode.IMMEDIATE,
    )
    books = Books(booking.payment_status, booking.amount_authorized, booking.amount_captured, booking.amount_refunded)
    consequence = apply_fact(facts, books, fact, now=now, retry_hold=RETRY_HOLD)
    money = consequence.books
    booking = replace(
        booking, payment_status=money.status, amount_authorized=money.authorized,
        amount_captured=money.captured, amount_refunded=money.refunded,
        expires_at=consequence.expires_at or booking.expires_at,
    )
    for move in consequence.moves:
        booking = booking.moved(move.to)
    return booking


def intent(status: PaymentStatus, *, refunded: int = 0, reported: bool = False) -> PaymentFact:
    """The provider's record of the booking's intent in `status`."""
    held = status in (P.AUTHORIZED, P.CAPTURED)
    captured = TOTAL if status is P.CAPTURED else 0
    return PaymentFact(
        FactKind.INTENT, status, amount=TOTAL, currency="eur", authorized=TOTAL if held else 0,
        captured=captured, refunded=min(refunded, captured), reported=reported,
    )


def recorded(booking: Booking, payment_status: PaymentStatus, now: datetime = START) -> Booking:
    return apply(booking, intent(payment_status), now)


def declined(booking: Booking, now: datetime) -> Booking:
    return apply(booking, PaymentFact(FactKind.DECLINED, decline_code="card_declined"), now)


def refunded(booking: Booking, now: datetime = START) -> Booking:
    """As `_amount` and `record` for a refund: by policy when confirmed, else all that was kept."""
    if booking.status is S.CONFIRMED:
        assert booking.cancel_requested_at is not None
        due = POLICY.refund_amount(booking.amount_captured, booking.starts_at, booking.cancel_requested_at)
        amount = max(0, due - booking.amount_refunded)
    else:
        amount = booking.amount_captured - booking.amount_refunded
    return apply(booking, PaymentFact(FactKind.REFUNDED, refunded=booking.amount_refunded + amount), now)


#: What the provider may report when an event makes us look: an intent in any state, or a
#: hosted checkout page that closed unpaid.
REPORTS = [
    (P.REQUIRES_ACTION, 0), (P.FAILED, 0), (P.AUTHORIZED, 0), (P.CAPTURED, 0),
    (P.CAPTURED, TOTAL // 2), (P.CAPTURED, TOTAL), (P.CANCELED, 0), ("checkout_closed", 0),
]


def check_step(booking: Booking, step: Step) -> None:
    """Once a cancel is accepted, no inventory is claimed and no money asked for anew."""
    if booking.cancel_requested and booking.pending_step is None:
        assert step not in (Step.HOLD, Step.AUTHORIZE, Step.CAPTURE), (step, booking)


def check_money(booking: Booking, *, provider_events: bool) -> None:
    """The worker takes money only from a booking it confirms; money the customer paid late
    (a provider event after the booking ended) is on its way back."""
    if booking.status is S.CONFIRMED:
        assert booking.payment_status in (P.CAPTURED, P.REFUNDED), booking
    if booking.payment_status is P.CAPTURED and booking.status not in (S.CONFIRMED, S.REFUNDED):
        # Paid late (a report after the booking ended), or captured after the client cancelled.
        assert provider_events or booking.cancel_requested, booking
        assert booking.pending_step is not None or next_step(booking.snapshot(), START) in (
            Step.REFUND, Step.CANCEL,
        ), booking


def check_rest(end: Booking, now: datetime, *, provider_events: bool) -> None:
    """Where a booking may rest once `next_step` has nothing left to do."""
    assert end.pending_step is None, end
    assert end.status is not S.REQUESTED, end
    if end.status in FINAL:
        assert end.payment_status not in LEFT_OPEN | LIVE_AUTHORIZATION, end
    if end.status not in (S.CONFIRMED, S.REFUNDED):
        assert end.amount_captured == end.amount_refunded, end
    if end.cancel_requested:
        assert end.status in FINAL, end
    if end.status in (S.AWAITING_PAYMENT, S.AUTHORIZED):
        assert end.expires_at is not None and end.expires_at > now, end
    if end.capture_mode is CaptureMode.IMMEDIATE:
        assert end.status is not S.AUTHORIZED, end
    if end.status is S.AWAITING_PAYMENT and (
        end.payment_mode is not PaymentMode.CARD or end.has_payment_method
    ):
        assert end.attempt_started, end  # a payment that can be started is started
    if provider_events:
        return
    if end.confirm_requested and not end.cancel_requested:
        assert end.status is S.CONFIRMED, end
    if end.status is S.REFUNDED:
        assert end.cancel_requested_at is not None
        policy_amount = POLICY.refund_amount(
            end.amount_captured, end.starts_at, end.cancel_requested_at
        )
        assert end.amount_refunded == policy_amount, end


def run_to_completion(booking: Booking, now: datetime, *, provider_events: bool) -> list[Booking]:
    """Every state the workflow can come to rest in from here, whatever the world answers."""
    rests = []
    frontier = [(booking, 0)]
    while frontier:
        current, steps = frontier.pop()
        step = next_step(current.snapshot(), now)
        if step is None:
            rests.append(current)
            continue
        assert steps < MAX_STEPS, f"no end after {MAX_STEPS} steps from {booking}"
        check_step(current, step)
        for index in range(len(OUTCOMES[step])):
            after = perform(current, step, index, now)
            check_money(after, provider_events=provider_events)
            frontier.append((after, steps + 1))
    return rests


def what_could_happen_next(booking: Booking, now: datetime) -> list[tuple[Booking, datetime]]:
    """The booking as it is, and as a cancel, a confirm or a long wait would leave it."""
    futures = [(booking, now), (booking, now + LONG_WAIT)]
    if booking.status not in FINAL and not booking.cancel_requested:
        futures.append((replace(booking, cancel_requested_at=now), now))
    if booking.status is S.AUTHORIZED and (booking.expires_at is None or booking.expires_at > now):
        confirmed = replace(booking, confirm_requested=True)
        futures += [(confirmed, now), (confirmed, now + LONG_WAIT)]
    return futures


def has_work(machine: BookingWorkflow) -> bool:
    return next_step(machine.booking.snapshot(), machine.now) is not None


def payment_started(machine: BookingWorkflow) -> bool:
    """The provider knows of this payment: it was asked, or is being asked, for it."""
    b = machine.booking
    return b.attempt_started or b.pending_step is PaymentStep.AUTHORIZE


class BookingWorkflow(RuleBasedStateMachine):
    booking: Booking
    now: datetime
    provider_events: bool

    # Mostly card bookings with a saved card: the ones the worker drives all the way.
    @initialize(
        payment_mode=st.sampled_from(
            [PaymentMode.CARD] * 3 + [PaymentMode.CLIENT, PaymentMode.CHECKOUT]
        ),
        capture_mode=st.sampled_from(CaptureMode),
        has_payment_method=st.sampled_from([True, True, True, False]),
        starts_in=st.sampled_from([timedelta(hours=1), timedelta(hours=3), timedelta(days=3)]),
    )
    def a_client_requests_a_booking(
        self,
        payment_mode: PaymentMode,
        capture_mode: CaptureMode,
        has_payment_method: bool,
        starts_in: timedelta,
    ) -> None:
        self.now = START
        self.provider_events = False
        self.booking = Booking(
            S.REQUESTED, payment_mode, capture_mode, has_payment_method, START + starts_in
        )

    @precondition(lambda self: self.booking.status not in FINAL)
    @rule()
    def the_client_asks_to_confirm(self) -> None:
        b = self.booking
        if b.confirm_requested and b.status in (S.AUTHORIZED, S.CONFIRMED):
            return  # already accepted: the service replays it without checking again
        try:
            ensure_confirmable(b.status, b.expires_at, self.now)
        except InvalidState:
            assert b.status is not S.AUTHORIZED or (
                b.expires_at is not None and b.expires_at <= self.now
            )
            return
        assert b.status is S.AUTHORIZED
        self.booking = replace(b, confirm_requested=True)

    @rule(changes_their_mind=st.booleans())
    def the_client_asks_to_cancel(self, changes_their_mind: bool) -> None:
        if not changes_their_mind:
            return  # most clients who look at a booking keep it
        try:
            ensure_cancellable(self.booking.status)
        except InvalidState:
            assert self.booking.status in FINAL
            return
        assert self.booking.status not in FINAL
        self.booking = replace(
            self.booking, cancel_requested_at=self.booking.cancel_requested_at or self.now
        )

    @precondition(lambda self: self.booking.payment_status in RETRYABLE_PAYMENT)
    @rule()
    def the_client_retries_with_another_card(self) -> None:
        b = self.booking
        try:
            ensure_payment_retryable(b.status)
        except InvalidState:
            assert b.status is not S.AWAITING_PAYMENT
            return
        if b.pending_step is not None:
            return  # "a payment attempt for this booking is already in progress"
        self.booking = replace(
            b,
            payment_mode=PaymentMode.CARD,
            has_payment_method=True,
            payment_status=P.NONE,
            attempt=b.attempt + 1,
            attempt_started=False,
        )

    # Mostly short waits, so that a booking is often confirmed or cancelled before its hold ends.
    @rule(minutes=st.sampled_from([1, 1, 2, 3, 5, 8, 20]))
    def the_clock_advances(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @precondition(has_work)
    @rule(outcome=outcome_indexes, dies_after_claiming=st.sampled_from([False, False, False, True]))
    def a_worker_takes_the_next_step(self, outcome: int, dies_after_claiming: bool) -> None:
        step = next_step(self.booking.snapshot(), self.now)
        assert step is not None
        check_step(self.booking, step)
        booking = self.booking
        if step in PROVIDER_STEPS and booking.pending_step is None:
            booking = replace(booking, pending_step=PaymentStep(step.value))
            if dies_after_claiming:
                self.booking = booking  # the claim stays; whoever looks next finishes the call
                return
        self.booking = perform(booking, step, outcome, self.now)

    @precondition(has_work)
    @rule(outcomes=st.lists(outcome_indexes, min_size=MAX_STEPS, max_size=MAX_STEPS))
    def a_worker_advances_the_booking_until_nothing_is_left(self, outcomes: list[int]) -> None:
        for outcome in outcomes:
            step = next_step(self.booking.snapshot(), self.now)
            if step is None:
                check_rest(self.booking, self.now, provider_events=self.provider_events)
                return
            check_step(self.booking, step)
            self.booking = perform(self.booking, step, outcome, self.now)
            check_money(self.booking, provider_events=self.provider_events)
        assert next_step(self.booking.snapshot(), self.now) is None, (
            f"no end after {MAX_STEPS} steps"
        )

    # Events arrive late, twice and out of order, and only make us look: the provider then
    # reports its record of the payment, whatever the booking has become since.
    @precondition(payment_started)
    @rule(report=st.sampled_from(REPORTS))
    def the_provider_reports_on_the_payment(self, report: tuple[PaymentStatus | str, int]) -> None:
        status, refunded_amount = report
        b = self.booking
        if status == "checkout_closed":
            if b.payment_mode is not PaymentMode.CHECKOUT:
                return  # only a hosted checkout page closes
            fact = PaymentFact(FactKind.CHECKOUT_CLOSED)
        else:
            assert isinstance(status, PaymentStatus)
            fact = intent(status, refunded=refunded_amount, reported=True)
        after = apply(b, fact, self.now)
        if after != b:
            self.provider_events = True
        self.booking = after

    @invariant()
    def money_is_taken_only_from_a_confirmed_booking_or_given_back(self) -> None:
        check_money(self.booking, provider_events=self.provider_events)

    @invariant()
    def a_final_booking_that_needs_nothing_more_holds_no_authorization(self) -> None:
        if self.booking.status in FINAL and next_step(self.booking.snapshot(), self.now) is None:
            assert self.booking.payment_status not in LIVE_AUTHORIZATION, self.booking

    @invariant()
    def the_workflow_always_comes_to_rest_within_twelve_steps_in_a_sound_state(self) -> None:
        for booking, now in what_could_happen_next(self.booking, self.now):
            for end in run_to_completion(booking, now, provider_events=self.provider_events):
                check_rest(end, now, provider_events=self.provider_events)


BookingWorkflow.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, database=None
)
test_booking_workflow = BookingWorkflow.TestCase
