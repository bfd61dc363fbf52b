"""The `bookings` command line: migrations, seeding, API clients, workers, the dev stack."""
