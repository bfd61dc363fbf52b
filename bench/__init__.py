"""Benchmarks: each prints its figures beside a baseline measured in the same run, and the ratio.

    python -m bench.run_all [--quick]   # all of them, tables + a PNG chart in bench/results/ (make bench)
    python -m bench.pipeline            # bookings/s POST -> settled vs pgbench running the same SQL
    python -m bench.api_accept          # POST /v1/bookings vs a trivial Falcon route, 64 connections (wrk)
    python -m bench.hot_seat            # 1,000 concurrent requests for one seat
    python -m bench.scale_out           # 1, 2, 4 worker processes; the workers alone (backlog drain)
    python -m bench.expiry              # 10,000 held bookings expired vs raw SQL
    python -m bench.chaos               # the fault campaign (not a benchmark: invariants as figures)

Shared pieces: `environment` (servers + a fresh database), `stack` (a large seat catalog in SQL,
gunicorn and Dramatiq started as the Procfile does, CPU per component), `capture` (the SQL one
booking issues, as a pgbench script), `load` (an asyncio HTTP load generator in its own process),
`instant_gateway` / `nopay_worker` (the payment-free mode), `trivial_app` (the HTTP ceiling).
"""
