#!/usr/bin/env bash
# A seat booked, paid, confirmed and cancelled through the HTTP API, one request at a time.
#
#   make dev                                   # in another terminal: prints the API URL and the demo key
#   API_KEY=bk_... scripts/walkthrough.sh      # BASE_URL defaults to http://127.0.0.1:8000
#
# Needs bash, curl and python3 (only to read JSON). Every POST carries its own Idempotency-Key; RUN
# makes them unique per run, so the script can be run again and again against the same stack.
set -euo pipefail

BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
API_KEY="${API_KEY:?set API_KEY to a client key: the demo key make dev prints, or bookings clients create NAME}"
RUN="${RUN:-$(date +%s)-$$}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-60}"

# api METHOD PATH [IDEMPOTENCY_KEY] [JSON_BODY]: print the answer's body; stop on a status >= 400.
api() {
    local method=$1 path=$2 key=${3:-} body=${4:-} answer status
    local args=(-sS -X "$method" -H "Authorization: Bearer $API_KEY" -w '\n%{http_code}')
    if [ -n "$key" ]; then args+=(-H "Idempotency-Key: $key"); fi
    if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' -d "$body"); fi
    answer=$(curl "${args[@]}" "$BASE_URL$path") || exit 1
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    if [ "$status" -ge 400 ]; then
        echo "$method $path answered $status: $answer" >&2
        exit 1
    fi
    printf '%s\n' "$answer"
}

# get JSON EXPRESSION: evaluate a Python expression over the JSON document `d` (d.items[0].id).
get() {
    python3 -c "import json, sys, types
d = json.loads(sys.argv[1], object_hook=lambda o: types.SimpleNamespace(**o))
print($2)" "$1"
}

# wait_for BOOKING_ID STATUS: poll the booking (the API sends Retry-After while it is in progress).
wait_for() {
    local booking=$1 wanted=$2 answer status deadline=$((SECONDS + TIMEOUT_SECONDS))
    while :; do
        answer=$(api GET "/v1/bookings/$booking")
        status=$(get "$answer" d.status)
        [ "$status" = "$wanted" ] && break
        case $status in rejected|expired|cancelled|refunded)
            echo "booking $booking ended $status, not $wanted" >&2; exit 1 ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "booking $booking is still $status after ${TIMEOUT_SECONDS}s" >&2; exit 1
        fi
        sleep 0.5
    done
    echo "booking $booking is $status"
}

echo "== 1. events on sale (prices in minor units per tier)"
events=$(api GET /v1/events)
get "$events" '"\n".join(f"{e.id}  {e.name}  {e.starts_at}  {vars(e.prices)}" for e in d.items)'
event=$(get "$events" 'd.items[0].id')

echo "== 2. a free seat of the first event"
seats=$(api GET "/v1/events/$event/seats")
seat=$(get "$seats" '[s for s in d.seats if s.status == "available"][0].id')
get "$seats" '[f"seat {s.row}{s.number}, {s.tier}, {s.price}: {s.id}" for s in d.seats if s.status == "available"][0]'

echo "== 3. book it, paying with Stripe's test card pm_card_visa: 202, the booking is requested"
booking=$(api POST /v1/bookings "walkthrough-$RUN-book" '{
    "event_id": "'"$event"'", "seat_ids": ["'"$seat"'"],
    "customer": {"email": "ada@example.com", "name": "Ada"},
    "payment": {"mode": "card", "payment_method": "pm_card_visa", "capture": "on_confirm"}
}')
get "$booking" 'f"booking {d.id} is {d.status}"'
booking=$(get "$booking" d.id)

echo "== 4. poll until a worker has held the seat and Stripe has authorized the card"
wait_for "$booking" authorized

echo "== 5. confirm: a worker captures the payment"
api POST "/v1/bookings/$booking/confirm" "walkthrough-$RUN-confirm" >/dev/null
wait_for "$booking" confirmed

echo "== 6. cancel: a worker refunds per REFUND_POLICY and frees the seat"
api POST "/v1/bookings/$booking/cancel" "walkthrough-$RUN-cancel" >/dev/null
wait_for "$booking" refunded

echo "== 7. the refund, and the booking's history"
final=$(api GET "/v1/bookings/$booking")
get "$final" 'f"payment {d.payment.status}: captured {d.payment.amount_captured},"
    f" refunded {d.payment.amount_refunded} ({d.currency}, minor units)"'
get "$final" '"\n".join("  ".join([h.at, h.status, h.reason or ""]) for h in d.history)'
