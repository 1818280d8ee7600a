"""TransactionManager: the producer id and what idempotence decides, as the Java client's TransactionManager.

An idempotent producer numbers each partition's batches under a producer id and epoch, so that a broker writes a
retried batch once. This module owns that id: it asks for one (InitProducerId), decides which errors a numbered
batch may be retried after, which ones end the producer, and when a partition's numbering must restart -- under
a new producer id when the numbering broke under the current one. The numbers themselves are given in the
accumulator's drain, next to the queues (RecordAccumulator.set_producer_id / restart_sequences); the Sender sends
this class's requests and asks it about each batch that comes back with an error.

Transactions (the Java class's state machine, the coordinator, AddPartitionsToTxn, EndTxn) are not here yet;
they will take their requests through ``next_request`` as InitProducerId does.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafkaprod import errors
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.batch import ProducerBatch
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse
from kafkaprod.protocol.messages import INIT_PRODUCER_ID
from kafkaprod.protocol.schema import Api

log = logging.getLogger("kafkaprod")

E = errors.ErrorCode
# Produce errors that end an idempotent producer, as in Java's TransactionManager.maybeTransitionToErrorState: no
# retry or new producer id helps.
_FATAL_FOR_IDEMPOTENCE = frozenset({E.CLUSTER_AUTHORIZATION_FAILED, E.UNSUPPORTED_VERSION,
                                    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.PRODUCER_FENCED})


class TransactionManager:
    """The producer id and epoch of an idempotent producer, and the rules that keep its sequences unbroken."""

    def __init__(self, accumulator: RecordAccumulator, metrics: ProducerMetrics, retry_backoff_ms: int) -> None:
        self.acc = accumulator
        self.metrics = metrics
        self.retry_backoff = retry_backoff_ms / 1000.0
        #: The error that stopped the producer (Java's FATAL_ERROR state); nothing is sent once it is set.
        self.fatal_error: errors.KafkaError | None = None
        self._init_in_flight = False
        self._init_not_before = 0.0
        # Sequence restarts asked for by the answers of one Sender loop, applied at the start of the next one: the
        # partitions whose numbering restarts from 0, and whether a new producer id must be fetched first.
        self._restart: set[tuple[str, int]] = set()
        self._new_producer_id = False

    # ---- requests for the Sender to send (Java: nextRequest and its InitProducerIdHandler) -----------------------
    def time_to_next_request(self, now: float) -> float:
        """Seconds until next_request() has a request to send: 0 now; infinite while none is needed or one is
        awaited (its answer, or its connection closing, wakes the Sender's poll)."""
        if self.fatal_error is not None or self._init_in_flight or self.acc.producer_id >= 0:
            return float("inf")
        return max(0.0, self._init_not_before - now)

    def next_request(self) -> tuple[Api, dict[str, Any], Callable[[ClientResponse], None]]:
        """(api, body, on_done) of the request due now -- InitProducerId, the only one yet -- for the Sender to send
        to any ready broker. Call only when time_to_next_request() is 0."""
        self._init_in_flight = True
        body = {"transactional_id": None, "transaction_timeout_ms": 2147483647, "producer_id": -1, "producer_epoch": -1}
        return INIT_PRODUCER_ID, body, self._on_init_producer_id

    def _on_init_producer_id(self, resp: ClientResponse) -> None:
        self._init_in_flight = False
        body = resp.body
        if body is None:  # no answer: the connection failed
            log.info("InitProducerId failed: %s", resp.error)
        else:
            code = body.get("error_code", E.NONE)
            if code == E.NONE:
                # Sequences restart from 0 under the new id partition by partition, in the accumulator's drain.
                self.acc.set_producer_id(body["producer_id"], body["producer_epoch"])
                log.info("idempotent producer id %d epoch %d", body["producer_id"], body["producer_epoch"])
                return
            err = errors.broker_error(code)
            log.info("InitProducerId failed: %s", err)
            if not err.retriable:
                self._transition_to_fatal_error(err)
                return
        self._init_not_before = monotonic() + self.retry_backoff

    # ---- the answers to Produce ----------------------------------------------------------------------------------
    def can_retry(self, batch: ProducerBatch, err: errors.KafkaError) -> bool:
        """Whether a batch that came back with err may be sent again (Java's TransactionManager.canRetry); the
        Sender has checked attempts and delivery_timeout_ms already. A retried batch keeps its sequence number."""
        if err.retriable:
            return True
        if not batch.has_sequence:
            return False
        if err.errno == E.UNKNOWN_PRODUCER_ID:
            # The broker lost this producer's state for the partition (log truncated or deleted): numbering from 0
            # again, under a new producer id, is accepted; the batch is retried with its new number.
            self._request_restart(batch, "UNKNOWN_PRODUCER_ID")
            return True
        if err.errno == E.OUT_OF_ORDER_SEQUENCE_NUMBER:
            # Behind an earlier batch of the partition that is being retried: retried too, keeping its number, and
            # written once the earlier one is. Otherwise the broker misses sequences that will never come (a batch
            # failed or expired): the partition restarts its numbering and the batch is retried.
            # An earlier batch is usually back in the queue for a retry (answered before this one, since answers
            # come in order). A retried batch is no exception: after an error a partition's retries go one at a
            # time in sequence order, so one that is refused as out of order has no earlier batch to wait for
            # unless has_earlier_pending finds it.
            if not self.acc.has_earlier_pending(batch):
                self._request_restart(batch, "OUT_OF_ORDER_SEQUENCE_NUMBER with no earlier batch pending")
            return True
        return False

    def handle_failed_batch(self, batch: ProducerBatch, err: errors.KafkaError) -> None:
        """A batch failed for good with err (an error answer, or delivery_timeout_ms): Java's
        TransactionManager.handleFailedBatch. A fatal error stops the producer; otherwise a numbered batch leaves
        a gap in its partition's sequences that the batches after it must not wait behind."""
        if err.errno in _FATAL_FOR_IDEMPOTENCE:
            self._transition_to_fatal_error(err)
        elif batch.has_sequence:
            self._request_restart(batch, f"failed with {type(err).__name__}")

    # ---- sequence restarts ---------------------------------------------------------------------------------------
    def _request_restart(self, batch: ProducerBatch, why: str) -> None:
        """The batch's partition must number its batches from 0 again; under a new producer id if the batch was
        numbered under the current one (a gap, or state the broker lost, there). Java's
        TransactionManager.requestIdempotentEpochBumpForPartition -- but Java then bumps the epoch of its id on its
        own, which Tansu refuses (PRODUCER_FENCED), and neither Tansu nor librdkafka's mock takes KIP-360's bump
        through InitProducerId without a transactional id; so, as librdkafka does, a new producer id."""
        current = batch.producer_id == self.acc.producer_id and batch.producer_epoch == self.acc.producer_epoch
        # DEBUG: in an outage every expiring batch comes here; the new producer id is logged once, at INFO.
        log.debug("%r: %s; its partition's sequences restart%s", batch, why,
                  " under a new producer id" if current else "")
        self._restart.add(batch.tp)
        if current:
            self._new_producer_id = True

    def restart_sequences_if_needed(self) -> None:
        """Applies the restarts this loop's answers asked for, at the start of the Sender's next loop: Java's
        TransactionManager.bumpIdempotentEpochAndResetIdIfNeeded. Dropping the producer id makes
        time_to_next_request() ask for a new one."""
        if not self._restart:
            return
        if self._new_producer_id:
            self.metrics.record_producer_id_reset()
            log.info("idempotent producer id %d given up; fetching a new one (sequences restart for %d "
                     "partition(s))", self.acc.producer_id, len(self._restart))
        self.acc.restart_sequences(list(self._restart), self._new_producer_id)
        self._restart.clear()
        self._new_producer_id = False

    # ---- fatal errors --------------------------------------------------------------------------------------------
    def _transition_to_fatal_error(self, err: errors.KafkaError) -> None:
        # Java's transitionToFatalError: the Sender fails every pending record with it and stops.
        if self.fatal_error is None:
            log.error("idempotent producer stopped by a fatal error: %s", err)
            self.fatal_error = err
