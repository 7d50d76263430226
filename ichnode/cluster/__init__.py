"""Cluster mode: receivers and workers as separate processes on shared state.

  ichnode serve --role receiver   the C-STORE SCP, the shared spool, series completion (decided in
                                  PostgreSQL, exactly once) and the analysis jobs it publishes
  ichnode serve --role worker     consumes the analysis and delivery queues of RabbitMQ: analyses,
                                  owes the results (the outbox, in PostgreSQL), sends them

The job store, outbox and worklist are the single node's (ichnode.store, ichnode.triage.worklist)
on PostgreSQL (`cluster.database_url`); the spool is `data_dir` on a shared file system. Messages
are acknowledged only after their work is done, so a worker killed mid-job has its message
delivered to another; what a destination acknowledged is recorded per object before the next is
sent, and a redelivered job sends only the rest.
"""
