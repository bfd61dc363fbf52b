"""The booking rules in pure Python: lifecycle, pricing, refunds, availability, errors.

Nothing here performs I/O; collaborators the services need are described as Protocols in
`domain.ports`.
"""
