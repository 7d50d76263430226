"""Triage for radiologists: priority rules, the worklist, notifications and metrics.

`priority` is pure; `worklist` is the SQLite store (same file as the job store); `notify` sends
HL7 v2 ORU^R01 over MLLP and webhooks; `metrics` is the Prometheus registry; `service` ties them to
the pipeline's hooks.
"""
