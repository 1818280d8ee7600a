"""Sender: the I/O thread that moves batches from the accumulator to the brokers (the Java client's Sender).

Each loop (``run_once``, Java's Sender.runOnce) asks for metadata when it is due; lets the TransactionManager
apply the sequence restarts the last answers asked for and sends its InitProducerId when the producer needs an id;
asks the accumulator which leaders have sendable batches, keeps those whose connection is ready, drains one
ProduceRequest's worth of batches per broker, expires queued batches past delivery_timeout_ms, sends the
requests, and polls the network. Each Produce answer completes, retries, splits (MESSAGE_TOO_LARGE) or fails its
batches; where idempotence decides -- whether a numbered batch may be retried, what a failure means for its
partition's sequences, which errors end the producer -- the TransactionManager is asked, and once it holds a fatal
error the loop only fails whatever is pending and stops. With transactions, the TransactionManager's requests
(FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) go out here, one at
a time, to the broker each names; while a transaction completes the loop flushes (commit) or fails the batches
never sent (abort), so that EndTxn follows the last batch. All of its Python work is per request or per batch,
never per record.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafkaprod import errors
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.batch import ProducerBatch
from kafkaprod.config import ProducerConfig
from kafkaprod.metadata import Cluster, Metadata
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse, NetworkClient
from kafkaprod.protocol.messages import METADATA, PRODUCE
from kafkaprod.splitter import split_batch
from kafkaprod.transaction_manager import TransactionManager

log = logging.getLogger("kafkaprod")

_FAR = 1e18
_BUSY_RECHECK_S = 0.1

E = errors.ErrorCode
# Partition errors after which the leader may have moved (of Java's InvalidMetadataException family, NetworkException
# among them): refresh metadata before the retry.
_METADATA_ERRORS = frozenset({E.UNKNOWN_TOPIC_OR_PARTITION, E.LEADER_NOT_AVAILABLE, E.NOT_LEADER_OR_FOLLOWER,
                              E.FENCED_LEADER_EPOCH, E.UNKNOWN_LEADER_EPOCH, E.UNKNOWN_TOPIC_ID,
                              E.NETWORK_EXCEPTION})

# What is in flight is tracked in two places, each for its own reason, and in no third:
# - NetworkClient, per connection: requests by correlation id, to match answers to requests, time them out after
#   request_timeout_ms and cap them at max_in_flight_requests_per_connection;
# - the accumulator, per partition: its batches on the wire, in order, and the broker they went to, so that a later or
#   renumbered batch never overtakes them, and, with idempotence, a drain waits for them after a leader change or
#   after one of them came back with an error (RecordAccumulator._held).
# Whether anything at all is still pending (the close loop, aborts) is the accumulator's set of incomplete batches.


class Sender(threading.Thread):
    def __init__(
        self,
        client: NetworkClient,
        metadata: Metadata,
        accumulator: RecordAccumulator,
        config: ProducerConfig,
        metrics: ProducerMetrics,
    ) -> None:
        super().__init__(name="kafkaprod-sender", daemon=True)
        self.client = client
        self.metadata = metadata
        self.acc = accumulator
        self.metrics = metrics
        # As in the Java client, there is a TransactionManager only with idempotence (which transactions imply).
        self.tm = (TransactionManager(accumulator, metrics, config.retry_backoff_ms, config.transactional_id,
                                      config.transaction_timeout_ms, config.fail_on_broker_data_loss)
                   if config.enable_idempotence else None)
        self.transactional_id: str | None = config.transactional_id
        self._txn_flushing = False  # the accumulator flush begun for a transaction being completed
        self.acks: int = config.acks
        self.retries: int = config.retries
        self.request_timeout_ms: int = config.request_timeout_ms
        self.delivery_timeout: float = config.delivery_timeout_ms / 1000.0
        self.max_request_size: int = config.max_request_size
        self.retry_backoff: float = config.retry_backoff_ms / 1000.0
        self.running = True
        self.force_close = False
        self._metadata_in_flight = False
        # The broker a TLS handshake or authentication last failed with; the failure itself, until a connection
        # authenticates, is metadata.auth_error (send() and metadata waiters raise it).
        self._auth_node = 0
        #: Told of each change of the authentication state (the error, or None once it clears): the producer
        #: makes send() raise the error meanwhile.
        self.on_auth_change: Callable[[errors.AuthenticationError | None], None] | None = None
        client.on_auth = self._on_auth
        for node in metadata.cluster.nodes.values():
            client.set_node(node.id, node.host, node.port)

    # ---- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        log.debug("sender thread started")
        try:
            while self.running:
                self.run_once()
            # close(): keep sending until everything queued and in flight is finished, unless forced; an open
            # transaction is aborted first (Java's Sender on shutdown).
            tm = self.tm if self.tm is not None and self.tm.transactional else None
            while not self.force_close and (self.acc.has_incomplete() or
                                            (tm is not None and tm.has_ongoing_transaction() and
                                             tm.fatal_error is None)):
                if tm is not None:
                    tm.abort_on_close()
                self.run_once()
            if self.force_close:
                self._abort_all(errors.ProducerClosedError("the producer was closed with pending records (close(timeout) ran out)"))
        except Exception:  # pragma: no cover - a bug; fail everything rather than hang callers
            log.exception("sender thread died")
            self._abort_all(errors.KafkaError("the sender thread died; see the kafkaprod log"))
        finally:
            if self.tm is not None and self.tm.transactional:
                # Calls still waiting for a transactional request fail instead of waiting for a closed thread.
                self.tm.fail_waiting(errors.ProducerClosedError("the producer was closed before the transactional request "
                                                         "completed"))
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
        # Awake: a batch queued from here on wakes the next poll (see RecordAccumulator.wake_for).
        self.acc.sender_wakes_at = _FAR
        now = monotonic()
        tm = self.tm
        if tm is not None and tm.fatal_error is not None:
            self._stop_fatal(tm.fatal_error)
            return
        poll_timeout = self._maybe_update_metadata(now)
        if self.metadata.auth_error is not None:
            poll_timeout = min(poll_timeout, self._while_auth_failed(now))
        if tm is not None:
            tm.restart_sequences_if_needed()
            # Nothing is drained without a producer id, so nothing else would wake the loop for the next try.
            poll_timeout = min(poll_timeout, self._maybe_send_transactional_request(now))
        ready_nodes, next_delay, unknown = self.acc.ready(now)
        if tm is not None and tm.transactional and self.acc.has_new_txn_partitions():
            poll_timeout = 0.0  # the next loop adds them to the transaction (AddPartitionsToTxn)
        if unknown:
            self.metadata.request_update()
            if not self._metadata_in_flight:
                # The refresh just asked for is due after the metadata backoff; this loop's poll timeout was
                # computed before the request, and nothing else may wake it -- the batch would wait for the
                # periodic refresh (metadata_max_age_ms) after its partition got a leader again.
                poll_timeout = min(poll_timeout, self.metadata.time_to_next_update(now))
        known = self.metadata.cluster.nodes
        for node in list(ready_nodes):
            if node not in known:
                ready_nodes.discard(node)
                continue
            if not self.client.ready(node, now):
                ready_nodes.discard(node)
                delay = self.client.connection_delay(node, now)
                # 0: connected with every request slot taken, and an answer wakes the poll (Java's
                # NetworkClient.pollDelayMs); the bound is a safety net. Waking every few ms instead would be a loop
                # over every partition with queued batches each time.
                next_delay = min(next_delay, _BUSY_RECHECK_S if delay == 0 else max(delay, 0.005))
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
        self.acc.sender_wakes_at = now + poll_timeout
        self.client.poll(poll_timeout)

    # ---- metadata ------------------------------------------------------------------------------------------------
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
        for topic in cluster.topics:
            self.acc.update_topic(topic, cluster.leaders(topic))
        self.metadata.update(cluster, now)
        if cluster.unauthorized_topics:
            self.metadata.fail_waiters(errors.broker_error(
                E.TOPIC_AUTHORIZATION_FAILED, f"topics {sorted(cluster.unauthorized_topics)}"))

    # ---- authentication failures ---------------------------------------------------------------------------------
    def _on_auth(self, node: int, err: errors.AuthenticationError | None) -> None:
        """A TLS handshake or authentication failed (err), or succeeded after failures (None). A failure is not
        retried record by record for max_block_ms or delivery_timeout_ms, as Java's producer does not: queued
        records fail with it now, and send() and metadata waiters raise it until a connection authenticates."""
        changed = (err is None) != (self.metadata.auth_error is None)
        self._auth_node = node
        self.metadata.set_auth_error(err)
        if err is not None:
            self.metadata.request_update()
            self._fail_queued(err)
        else:
            log.info("authenticated with broker %d again; sends go through", node)
        if changed and self.on_auth_change is not None:
            self.on_auth_change(err)

    def _while_auth_failed(self, now: float) -> float:
        # Records that slipped in (a send() racing the failure) fail too; the broker that refused is retried in
        # the background with the reconnect backoff, so that fixed credentials or certificates are noticed.
        err = self.metadata.auth_error
        assert err is not None
        if self.acc.has_incomplete():
            self._fail_queued(err)
        node = self._auth_node
        if self.client.ready(node, now):
            return float("inf")
        return max(self.client.connection_delay(node, now), 0.005)

    def _fail_queued(self, err: errors.KafkaError) -> None:
        # Batches waiting in the queues fail; those in flight on other connections get their answers.
        tm = self.tm
        for batch in self.acc.abort_undrained(err):
            self.metrics.record_errors(batch.record_count)
            if tm is not None:
                tm.handle_failed_batch(batch, err)
            self.acc.deallocate(batch)

    # ---- the TransactionManager's requests -----------------------------------------------------------------------
    def _maybe_send_transactional_request(self, now: float) -> float:
        """Sends the TransactionManager's request when one is due (Java's
        Sender.maybeSendAndPollTransactionalRequest); returns the seconds until it should be tried again."""
        tm = self.tm
        if tm is None:  # only called with idempotence
            return float("inf")
        if tm.transactional:
            return self._maybe_send_txn_request(tm, now)
        wait = tm.time_to_next_request(now)
        if wait > 0:
            return wait
        node = self.client.least_loaded_node(now, list(self.metadata.cluster.nodes) or None)
        if node is None:
            return self.retry_backoff  # every broker is backing off from a failed connection
        if not self.client.ready(node, now):
            # Connecting (I/O wakes the poll sooner), backing off after a failed connect, or busy.
            return max(self.client.connection_delay(node, now), 0.005)
        api, body, on_done = tm.next_request()
        self.client.send(node, api, body, on_done=on_done, now=now)
        return float("inf")

    def _maybe_send_txn_request(self, tm: TransactionManager, now: float) -> float:
        """A transactional producer's request, if one is due: to any broker (FindCoordinator), or to the
        coordinator it names (found first). Returns the seconds until the next try."""
        self._complete_transaction_batches(tm)
        incomplete = self.acc.has_incomplete()
        for _ in range(4):  # a request whose coordinator is unknown makes way for its FindCoordinator
            request, wait = tm.poll_request(now, incomplete)
            if request is None:
                return wait
            if request.coordinator_type is None:
                node = self.client.least_loaded_node(now, list(self.metadata.cluster.nodes) or None)
                if node is None:
                    tm.requeue(request, self.retry_backoff)
                    self.metadata.request_update()
                    return self.retry_backoff
            else:
                coordinator = tm.coordinator_of(request)
                if coordinator is None:
                    tm.lookup_coordinator_for(request)
                    tm.requeue(request, 0.0)
                    continue
                node, host, port = coordinator
                self.client.set_node(node, host, port)
            if not self.client.ready(node, now):
                delay = self.client.connection_delay(node, now)
                if request.coordinator_type is not None and 0 < delay < self.request_timeout_ms / 1000.0:
                    # Its connection failed and is backing off: ask again where the coordinator is (Java's
                    # maybeFindCoordinatorAndRetry), after the retry backoff.
                    tm.lookup_coordinator_for(request)
                    tm.requeue(request, self.retry_backoff)
                    continue
                # Connecting (its I/O wakes the poll sooner), or every request slot to it is taken.
                tm.requeue(request, 0.0)
                return max(delay, 0.005)
            log.debug("transactional_id %r: sending %r to broker %d", self.transactional_id, request, node)
            on_done = tm.sent(request)
            self.client.send(node, request.api, request.body(), on_done=on_done, now=now)
            return float("inf")
        return 0.0

    def _complete_transaction_batches(self, tm: TransactionManager) -> None:
        """While a transaction commits, everything queued is sent at once (a flush); while it aborts, or can only
        be aborted, the batches never sent fail (TransactionAbortedError, or the abortable error), and those that
        were sent are waited for (Java's Sender.maybeSendAndPollTransactionalRequest)."""
        err = tm.records_error()  # None unless the transaction is being aborted or can only be aborted
        if err is not None:
            for batch in self.acc.abort_undrained(err, unnumbered_only=True):
                self.acc.deallocate(batch)
        if tm.is_completing():
            if not self._txn_flushing and self.acc.has_incomplete():
                self.acc.begin_flush()
                self._txn_flushing = True
        elif self._txn_flushing:
            self.acc.end_flush()
            self._txn_flushing = False

    def _stop_fatal(self, err: errors.KafkaError) -> None:
        # Nothing will ever be sent (Java's Sender.runOnce with a TransactionManager in FATAL_ERROR). Refuse appends
        # first (naming the cause), so no record can be queued after the abort below and wait forever, then fail
        # what is queued and in flight, and stop. Harmless when repeated.
        self.acc.close(err)
        self.metadata.fail_waiters(err)
        self._abort_all(err)
        self.running = False

    # ---- produce -------------------------------------------------------------------------------------------------
    def _send_produce(self, node: int, batches: list[ProducerBatch], now: float) -> None:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        by_tp: dict[tuple[str, int], ProducerBatch] = {}
        for batch in batches:
            records = batch.close()
            by_topic.setdefault(batch.topic, []).append({"index": batch.partition, "records": records})
            by_tp[batch.tp] = batch
        body = {
            "transactional_id": self.transactional_id,
            "acks": self.acks,
            "timeout_ms": self.request_timeout_ms,
            "topic_data": [{"name": t, "partition_data": pd} for t, pd in by_topic.items()],
        }
        self.metrics.record_request(batches, now)
        self.client.send(node, PRODUCE, body, request=by_tp, expect_response=self.acks != 0,
                         on_done=self._on_produce, now=now)

    def _on_produce(self, resp: ClientResponse) -> None:
        by_tp: dict[tuple[str, int], ProducerBatch] = resp.request
        now = monotonic()
        if resp.body is None and resp.disconnected:
            # No answer: every batch of the request is retried (it keeps its sequence number).
            self.metadata.request_update()
            lost = errors.NetworkExceptionError(str(resp.error))
            for batch in by_tp.values():
                self._complete_batch(batch, lost, -1, -1, now)
            return
        self.metrics.record_latency(resp.latency)
        if self.acks == 0:
            for batch in by_tp.values():
                self._complete_batch(batch, None, -1, -1, now)
            return
        # Only acks=0 requests complete without an answer when their connection did not close.
        assert resp.body is not None
        seen = set()
        for t in resp.body.get("responses", ()):
            name = t["name"]
            for p in t.get("partition_responses", ()):
                tp = (name, p["index"])
                answered = by_tp.get(tp)
                if answered is None:
                    continue
                seen.add(tp)
                code = p.get("error_code", E.NONE)
                err: errors.KafkaError | None = None
                if code != E.NONE:
                    msg = p.get("error_message") or ""
                    err = errors.broker_error(code, f"{name}[{p['index']}] {msg}".strip())
                self._complete_batch(answered, err, p.get("base_offset", -1), p.get("log_append_time_ms", -1), now)
        for tp, batch in by_tp.items():
            if tp not in seen:
                self._complete_batch(batch, errors.ProtocolError(f"the produce response did not mention {tp[0]}[{tp[1]}]"), -1, -1, now)

    def _complete_batch(self, batch: ProducerBatch, err: errors.KafkaError | None, base_offset: int,
                        log_append_time: int, now: float) -> None:
        """One batch's answer (Java's Sender.completeBatch): success, a split, a retry, or a failure."""
        if err is not None and err.errno == E.DUPLICATE_SEQUENCE_NUMBER:  # already written: a success
            err = None
        if err is None:
            if batch.done(base_offset, log_append_time, None):
                self.metrics.record_done(batch)
                if self.tm is not None and batch.base_sequence >= 0:
                    self.tm.acknowledged(batch, base_offset)
            self.acc.deallocate(batch, succeeded=True)
        elif err.errno == E.MESSAGE_TOO_LARGE and batch.record_count > 1 and not batch.is_done:
            self._split(batch, now)
        elif self._can_retry(batch, err, now):
            log.debug("retrying %r after %s", batch, err)
            if err.errno in _METADATA_ERRORS:
                self.metadata.request_update()
            self.metrics.record_retry(batch.record_count)
            self.acc.reenqueue(batch, now)
        else:
            self._fail_batch(batch, err)

    def _can_retry(self, batch: ProducerBatch, err: errors.KafkaError, now: float) -> bool:
        # Java's Sender.canRetry: attempts and time left here, the error's own verdict from the TransactionManager.
        if batch.is_done or batch.attempts >= self.retries or now - batch.created >= self.delivery_timeout:
            return False
        return err.retriable if self.tm is None else self.tm.can_retry(batch, err)

    def _fail_batch(self, batch: ProducerBatch, err: errors.KafkaError) -> None:
        # Java's Sender.failBatch: the records fail once; the TransactionManager learns of it (a gap in the
        # partition's sequences, or an error that ends the producer -- then everything pending fails with it).
        self.metrics.record_errors(batch.record_count)
        tm = self.tm
        if tm is not None:
            err = tm.batch_error(err)
        if batch.done(-1, -1, err) and tm is not None:
            tm.handle_failed_batch(batch, err)
        self.acc.deallocate(batch)
        if tm is not None and tm.fatal_error is not None:
            self._stop_fatal(tm.fatal_error)

    def _split(self, batch: ProducerBatch, now: float) -> None:
        log.info("%r was too large for the broker; splitting it", batch)
        split_batch(self.acc, batch, now)

    def _expire(self, now: float) -> None:
        for batch in self.acc.expired_batches(now):
            self._fail_batch(batch, errors.KafkaTimeoutError(
                f"{batch.record_count} record(s) for {batch.topic}[{batch.partition}] expired: "
                f"{(now - batch.created) * 1000:.0f} ms since the batch was created, past delivery_timeout_ms"))

    def _abort_all(self, err: errors.KafkaError) -> None:
        # Queued batches leave their queues (so that nothing drains them again) and fail; then every other batch not
        # yet deallocated -- in flight, or between an answer and its retry -- fails, oldest first.
        for batch in self.acc.abort_undrained(err):
            self.acc.deallocate(batch)
        for batch in sorted(self.acc.incomplete_batches(), key=lambda b: (b.created, b.base_sequence)):
            batch.done(-1, -1, err)
            self.acc.deallocate(batch)
