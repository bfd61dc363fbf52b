"""The thin Falcon app: authenticate, validate, write the request durably, enqueue, answer."""
