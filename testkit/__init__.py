"""What the tests and the benchmarks share, so neither imports the other: Stripe webhook
signing, the fault-injecting proxy in front of the local Stripe server, held bookings made
straight in SQL. Development only: not in the wheel or the image."""
