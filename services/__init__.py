"""Use cases: each opens its unit of work, applies the domain rules, and says what to enqueue.

The API calls the `requests` services (record what a client asked for); workers call
`advance_booking`, which performs the steps `domain.workflow` decides.
"""
