"""Outbound delivery: the outbox's dispatcher and its channels (one module per transport).

Rows are queued in the outbox (ichnode.store.outbox); the dispatcher (dispatcher.py) hands the
due ones, a job's rows for one destination at a time, to the channel the row names
(channels.py: the registration table), and records what the destination acknowledged.
"""
