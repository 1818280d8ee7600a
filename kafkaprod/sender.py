"""Sender: the I/O thread that moves batches from the accumulator to the brokers (the seed's Sender).

One loop, as in the seed: refresh metadata when due -> ask the accumulator which brokers have sendable data ->
check connections -> drain batches per broker -> expire batches past delivery_timeout_ms -> one ProduceRequest
per broker -> poll the network -> complete, retry or fail batches from the responses. All of its Python work
is per request or per batch, never per record.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafkaprod import errors
from kafkaprod.protocol.messages import INIT_PRODUCER_ID, METADATA, PRODUCE
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod.metadata import Cluster, Metadata
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse, NetworkClient

log = logging.getLogger("kafkaprod")

E = errors.ErrorCode
# Partition errors after which the leader may have moved: refresh metadata before the retry.
_METADATA_ERRORS = frozenset({E.UNKNOWN_TOPIC_OR_PARTITION, E.LEADER_NOT_AVAILABLE, E.NOT_LEADER_OR_FOLLOWER,
                              E.FENCED_LEADER_EPOCH, E.UNKNOWN_LEADER_EPOCH, E.UNKNOWN_TOPIC_ID})
# Produce errors that end an idempotent producer, as in the Java client: no retry or new producer id helps.
_FATAL_FOR_IDEMPOTENCE = frozenset({E.CLUSTER_AUTHORIZATION_FAILED, E.UNSUPPORTED_VERSION,
                                    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.PRODUCER_FENCED})


# What is in flight is tracked in two places, each for its own reason, and in no third:
# - NetworkClient, per connection: requests by correlation id, to match answers to requests, time them out after
#   request_timeout_ms and cap them at max_in_flight_requests_per_connection;
# - the accumulator, per partition: how many of its batches are on the wire and to which broker, so that a later or
#   renumbered batch never overtakes them, and a drain waits for them after a leader change.
# Whether anything at all is still pending (the close loop, aborts) is the accumulator's set of incomplete batches.


class Sender(threading.Thread):
    def __init__(
        self,
        client: NetworkClient,
        metadata: Metadata,
        accumulator: RecordAccumulator,
        config: Any,
        metrics: ProducerMetrics,
    ) -> None:
        super().__init__(name="kafkaprod-sender", daemon=True)
        self.client = client
        self.metadata = metadata
        self.acc = accumulator
        self.metrics = metrics
        self.acks = config.acks
        self.idempotent = config.enable_idempotence
        self.retries = config.retries
        self.request_timeout_ms = config.request_timeout_ms
        self.delivery_timeout = config.delivery_timeout_ms / 1000.0
        self.max_request_size = config.max_request_size
        self.retry_backoff = config.retry_backoff_ms / 1000.0
        self.running = True
        self.force_close = False
        self._metadata_in_flight = False
        self._known_nodes: set[int] = set()
        self._init_pid_in_flight = False
        self._init_pid_not_before = 0.0
        # Idempotence recovery asked for by this loop's answers, applied at the start of the next loop: the
        # partitions whose sequences restart from 0, and whether a new producer id must be fetched first.
        self._restart: set[tuple[str, int]] = set()
        self._new_producer_id = False
        self._fatal: Exception | None = None
        for node in metadata.cluster.nodes.values():
            client.set_node(node.id, node.host, node.port)

    # ---- the loop -------------------------------------------------------------------------------------------------
    def run(self) -> None:
        log.debug("sender thread started")
        try:
            while self.running:
                self.run_once()
            # close(): keep sending until everything queued and in flight is finished, unless forced.
            while not self.force_close and self.acc.has_incomplete():
                self.run_once()
            if self.force_close:
                self._abort_all(errors.ProducerClosedError("the producer was closed with pending records (close(timeout) ran out)"))
        except Exception:  # pragma: no cover - a bug; fail everything rather than hang callers
            log.exception("sender thread died")
            self._abort_all(errors.KafkaError("the sender thread died; see the kafkaprod log"))
        finally:
            self.client.close()
            log.debug("sender thread stopped")

    def wakeup(self) -> None:
        self.client.wakeup()

    def initiate_close(self, force: bool = False) -> None:
        self.acc.close()
        self.running = False
        if force:
            self.force_close = True
        self.wakeup()

    def run_once(self) -> None:
        now = monotonic()
        poll_timeout = self._maybe_update_metadata(now)
        if self._restart:
            self._restart_sequences()
        if self.idempotent and self.acc.producer_id < 0:
            # Nothing is drained without a producer id, so nothing else would wake the loop for the next try.
            poll_timeout = min(poll_timeout, self._maybe_init_producer_id(now))
        ready_nodes, next_delay, unknown = self.acc.ready(now)
        if unknown:
            self.metadata.request_update()
            if not self._metadata_in_flight:
                # The refresh just asked for is due after the metadata backoff; this loop's poll timeout was
                # computed before the request, and nothing else may wake it -- the batch would wait for the
                # periodic refresh (metadata_max_age_ms) after its partition got a leader again.
                poll_timeout = min(poll_timeout, self.metadata.time_to_next_update(now))
        for node in list(ready_nodes):
            if node not in self._known_nodes:
                ready_nodes.discard(node)
                continue
            if not self.client.ready(node, now):
                ready_nodes.discard(node)
                next_delay = min(next_delay, max(self.client.connection_delay(node, now), 0.005))
        batches_by_node = self.acc.drain(ready_nodes, self.max_request_size, now) if ready_nodes else {}
        self._expire(now)
        for node, batches in batches_by_node.items():
            self._send_produce(node, batches, now)
        if batches_by_node:
            poll_timeout = 0.0
        else:
            poll_timeout = min(poll_timeout, next_delay)
        if not self.running:
            poll_timeout = min(poll_timeout, 0.05)
        self.client.poll(poll_timeout)

    # ---- metadata -------------------------------------------------------------------------------------------------
    def _maybe_update_metadata(self, now: float) -> float:
        wait = self.metadata.time_to_next_update(now)
        if wait > 0 or self._metadata_in_flight:
            return max(wait, 0.0) if not self._metadata_in_flight else 1.0
        node = self.client.least_loaded_node(now)
        if node is None:
            self.metadata.failed_update(now)
            return self.retry_backoff
        if not self.client.ready(node, now):
            return 0.01
        topics = self.metadata.topics()
        body = {"topics": [{"name": t} for t in topics], "allow_auto_topic_creation": True}
        self._metadata_in_flight = True
        self.client.send(node, METADATA, body, on_done=self._on_metadata, now=now)
        return 1.0

    def _on_metadata(self, resp: ClientResponse) -> None:
        self._metadata_in_flight = False
        now = monotonic()
        if resp.body is None:
            log.info("metadata request to broker %d failed: %s", resp.node_id, resp.error)
            self.metadata.failed_update(now)
            return
        cluster = Cluster.from_metadata_response(resp.body)
        for node in cluster.nodes.values():
            self.client.set_node(node.id, node.host, node.port)
        self._known_nodes = set(cluster.nodes)
        for topic in cluster.topics:
            self.acc.update_topic(topic, cluster.leaders(topic))
        self.metadata.update(cluster, now)
        if cluster.unauthorized_topics:
            self.metadata.fail_waiters(errors.broker_error(
                E.TOPIC_AUTHORIZATION_FAILED, f"topics {sorted(cluster.unauthorized_topics)}"))

    # ---- idempotence ----------------------------------------------------------------------------------------------
    def _maybe_init_producer_id(self, now: float) -> float:
        """Sends InitProducerId when due; returns the seconds until it should be tried again."""
        if self._fatal is not None:
            return float("inf")
        if self._init_pid_in_flight:
            return float("inf")  # its answer (or the connection closing) wakes the poll
        if now < self._init_pid_not_before:
            return self._init_pid_not_before - now
        node = self.client.least_loaded_node(now, [n for n in self._known_nodes] or None)
        if node is None:
            return self.retry_backoff  # every broker is backing off from a failed connection
        if not self.client.ready(node, now):
            # Connecting (I/O wakes the poll sooner), backing off after a failed connect, or busy.
            return max(self.client.connection_delay(node, now), 0.005)
        self._init_pid_in_flight = True
        body = {"transactional_id": None, "transaction_timeout_ms": 2147483647, "producer_id": -1, "producer_epoch": -1}
        self.client.send(node, INIT_PRODUCER_ID, body, on_done=self._on_init_producer_id, now=now)
        return float("inf")

    def _on_init_producer_id(self, resp: ClientResponse) -> None:
        self._init_pid_in_flight = False
        body = resp.body
        if body is None or body.get("error_code", 0) != 0:
            code = None if body is None else body["error_code"]
            err = resp.error if body is None else errors.broker_error(code)
            log.info("InitProducerId failed: %s", err)
            if code is not None and not err.retriable:
                self._stop_fatal(err)
                return
            self._init_pid_not_before = monotonic() + self.retry_backoff
            return
        # Sequences restart from 0 under the new id partition by partition, in the accumulator's drain.
        self.acc.set_producer_id(body["producer_id"], body["producer_epoch"])
        log.info("idempotent producer id %d epoch %d", body["producer_id"], body["producer_epoch"])

    def _stop_fatal(self, err: Exception) -> None:
        # Nothing will ever be sent. Refuse appends first (naming the cause), so no record can be queued after
        # the abort below and wait forever, then fail what is queued and in flight, and stop.
        log.error("idempotent producer stopped by a fatal error: %s", err)
        self._fatal = err
        self.acc.close(err)
        self.metadata.fail_waiters(err)
        self._abort_all(err)
        self.running = False

    def _is_current(self, batch) -> bool:
        return batch.producer_id == self.acc.producer_id and batch.producer_epoch == self.acc.producer_epoch

    def _request_restart(self, batch, why: object) -> None:
        """The batch's partition must number its batches from 0 again; under a new producer id if the batch was
        numbered under the current one (a gap, or state the broker lost, there). The Java client's
        requestIdempotentEpochBumpForPartition (see RecordAccumulator.restart_sequences for why a new id)."""
        # DEBUG: in an outage every expiring batch comes here; the new producer id is logged once, at INFO.
        log.debug("%r: %s; its partition's sequences restart%s", batch, why,
                 " under a new producer id" if self._is_current(batch) else "")
        self._restart.add(batch.tp)
        if self._is_current(batch):
            self._new_producer_id = True

    def _restart_sequences(self) -> None:
        if self._new_producer_id:
            self.metrics.record_producer_id_reset()
            log.info("idempotent producer id %d given up; fetching a new one (sequences restart for %d "
                     "partition(s))", self.acc.producer_id, len(self._restart))
        self.acc.restart_sequences(list(self._restart), self._new_producer_id)
        self._restart.clear()
        self._new_producer_id = False

    # ---- produce --------------------------------------------------------------------------------------------------
    def _send_produce(self, node: int, batches: list, now: float) -> None:
        by_topic: dict[str, list] = {}
        by_tp = {}
        for batch in batches:
            records = batch.close()
            by_topic.setdefault(batch.topic, []).append({"index": batch.partition, "records": records})
            by_tp[batch.tp] = batch
        body = {
            "transactional_id": None,
            "acks": self.acks,
            "timeout_ms": self.request_timeout_ms,
            "topic_data": [{"name": t, "partition_data": pd} for t, pd in by_topic.items()],
        }
        self.metrics.record_request(batches, now)
        self.client.send(node, PRODUCE, body, request=by_tp, expect_response=self.acks != 0,
                         on_done=self._on_produce, now=now)

    def _on_produce(self, resp: ClientResponse) -> None:
        by_tp = resp.request
        now = monotonic()
        if resp.body is None and resp.disconnected:
            # No answer: every batch of the request is retried (it keeps its sequence number).
            self.metadata.request_update()
            err = errors.NetworkExceptionError(str(resp.error))
            for batch in by_tp.values():
                self._complete_batch(batch, err, -1, -1, now)
            return
        self.metrics.record_latency(resp.latency)
        if self.acks == 0:
            for batch in by_tp.values():
                self._complete_batch(batch, None, -1, -1, now)
            return
        seen = set()
        for t in resp.body.get("responses", ()):
            name = t["name"]
            for p in t.get("partition_responses", ()):
                tp = (name, p["index"])
                batch = by_tp.get(tp)
                if batch is None:
                    continue
                seen.add(tp)
                code = p.get("error_code", 0)
                err = None
                if code != 0:
                    msg = p.get("error_message") or ""
                    err = errors.broker_error(code, f"{name}[{p['index']}] {msg}".strip())
                self._complete_batch(batch, err, p.get("base_offset", -1), p.get("log_append_time_ms", -1), now)
        for tp, batch in by_tp.items():
            if tp not in seen:
                self._complete_batch(batch, errors.ProtocolError(f"the produce response did not mention {tp[0]}[{tp[1]}]"), -1, -1, now)

    def _complete_batch(self, batch, err, base_offset: int, log_append_time: int, now: float) -> None:
        if err is not None and err.errno == E.DUPLICATE_SEQUENCE_NUMBER:  # already written: a success
            err = None
        if err is not None and err.errno == E.MESSAGE_TOO_LARGE and batch.record_count > 1:
            self._split(batch, now)
            return
        if err is not None and self.idempotent and err.errno in _FATAL_FOR_IDEMPOTENCE:
            self._stop_fatal(err)
            return
        if err is not None and self._can_retry(batch, err, now):
            log.debug("retrying %r after %s", batch, err)
            if err.errno in _METADATA_ERRORS or isinstance(err, errors.NetworkExceptionError):
                self.metadata.request_update()
            self.metrics.record_retry(batch.record_count)
            self.acc.reenqueue(batch, now)
            return
        if err is not None:
            self.metrics.record_errors(batch.record_count)
            if self.idempotent and batch.has_sequence and not batch.is_done:
                # Its sequences will never be written: the batches after it must not wait behind the gap.
                self._request_restart(batch, f"failed with {type(err).__name__}")
        if batch.done(base_offset, log_append_time, err):
            self.metrics.record_done(batch)
        self.acc.deallocate(batch)

    def _can_retry(self, batch, err, now: float) -> bool:
        if batch.is_done or batch.attempts >= self.retries or now - batch.created >= self.delivery_timeout:
            return False
        if err.retriable:
            return True
        if not (self.idempotent and batch.has_sequence):
            return False
        if err.errno == E.UNKNOWN_PRODUCER_ID:
            # The broker lost this producer's state for the partition (log truncated or deleted): numbering
            # from 0 again, under a new producer id, is accepted; the batch is retried with its new number.
            self._request_restart(batch, "UNKNOWN_PRODUCER_ID")
            return True
        if err.errno == E.OUT_OF_ORDER_SEQUENCE_NUMBER:
            # Behind an earlier batch of the partition that is being retried: retried too, keeping its number,
            # and written once the earlier one is. Otherwise the broker misses sequences that will never come
            # (a batch failed or expired): the partition restarts its numbering and the batch is retried.
            # An earlier batch is usually back in the queue for a retry (answered before this one, since answers
            # come in order); a batch that was itself retried is taken to be behind one too.
            if not (batch.retry or self.acc.has_earlier_pending(batch)):
                self._request_restart(batch, "OUT_OF_ORDER_SEQUENCE_NUMBER with no earlier batch pending")
            return True
        return False

    def _split(self, batch, now: float) -> None:
        from kafkaprod.splitter import split_batch  # rare path: MESSAGE_TOO_LARGE

        log.info("%r was too large for the broker; splitting it", batch)
        split_batch(self.acc, batch, now)

    def _expire(self, now: float) -> None:
        expired = self.acc.expired_batches(now)
        for batch in expired:
            err = errors.KafkaTimeoutError(
                f"{batch.record_count} record(s) for {batch.topic}[{batch.partition}] expired: "
                f"{(now - batch.created) * 1000:.0f} ms since the batch was created, past delivery_timeout_ms")
            self.metrics.record_errors(batch.record_count)
            if self.idempotent and batch.has_sequence:
                self._request_restart(batch, "expired after it had been sent")
            batch.done(-1, -1, err)
            self.acc.deallocate(batch)

    def _abort_all(self, err: Exception) -> None:
        # Queued batches leave their queues (so that nothing drains them again) and fail; then every other batch not
        # yet deallocated -- in flight, or between an answer and its retry -- fails, oldest first.
        for batch in self.acc.abort_undrained(err):
            self.acc.deallocate(batch)
        for batch in sorted(self.acc.incomplete_batches(), key=lambda b: (b.created, b.base_sequence)):
            batch.done(-1, -1, err)
            self.acc.deallocate(batch)
