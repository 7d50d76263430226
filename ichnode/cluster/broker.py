"""RabbitMQ, through kombu: the queues of cluster mode and the one way a job is published.

  ichnode.analyse        analyse job N (published by the receiver that completed the series)
  ichnode.deliver        send what the outbox owes for job N (published after analysis)
  ichnode.deliver.wait   the same, held for a retry's backoff: a message waits there for its
                         per-message TTL, then RabbitMQ dead-letters it into ichnode.deliver

Messages are persistent and published with publisher confirms (the broker has them on disk before
publish returns); consumers acknowledge after the work is done.
"""
from __future__ import annotations

import threading

import kombu

ANALYSE = "ichnode.analyse"
DELIVER = "ichnode.deliver"
DELIVER_WAIT = "ichnode.deliver.wait"
EXCHANGE = kombu.Exchange("ichnode", type="direct", durable=True)
QUEUES = {
    ANALYSE: kombu.Queue(ANALYSE, EXCHANGE, routing_key=ANALYSE, durable=True),
    DELIVER: kombu.Queue(DELIVER, EXCHANGE, routing_key=DELIVER, durable=True),
    DELIVER_WAIT: kombu.Queue(DELIVER_WAIT, EXCHANGE, routing_key=DELIVER_WAIT, durable=True,
                              queue_arguments={"x-dead-letter-exchange": EXCHANGE.name,
                                               "x-dead-letter-routing-key": DELIVER}),
}


def connect(url: str) -> kombu.Connection:
    # No AMQP heartbeats: a worker busy with one analysis for minutes must not be taken for dead
    # (its message would go to a second worker). A killed worker's socket closes, which the broker
    # sees at once; a vanished host is found by TCP keepalive.
    return kombu.Connection(url, heartbeat=0, transport_options={"confirm_publish": True})


class Publisher:
    """Publishes job messages from any thread of one process (one connection behind a lock)."""

    def __init__(self, url: str):
        self._connection = connect(url)
        self._lock = threading.Lock()

    def publish(self, queue: str, job_id: int, delay_s: float = 0.0) -> None:
        with self._lock:
            producer = self._connection.Producer()
            producer.publish({"job": job_id}, exchange=EXCHANGE, routing_key=queue, serializer="json",
                             delivery_mode=2, declare=list(QUEUES.values()), retry=True,
                             retry_policy={"max_retries": 5, "interval_start": 0.5},
                             expiration=max(0.001, delay_s) if queue == DELIVER_WAIT else None)

    def close(self) -> None:
        with self._lock:
            self._connection.release()
