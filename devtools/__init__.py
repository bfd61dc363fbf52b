"""Development tooling: local PostgreSQL, Redis and Stripe-compatible servers, and the
`bookings dev` supervisor. It lives in the repository only: the wheel and the production image
leave it out, since no deployed process needs it."""
