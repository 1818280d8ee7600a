"""TransactionManager: the producer id, what idempotence decides, and transactions, as the Java client's
TransactionManager.

An idempotent producer numbers each partition's batches under a producer id and epoch, so that a broker writes a
retried batch once. This module owns that id: it asks for one (InitProducerId), decides which errors a numbered
batch may be retried after, which ones end the producer, and when a partition's numbering must restart -- under
a new producer id when the numbering broke under the current one. The numbers themselves are given in the
accumulator's drain, next to the queues (RecordAccumulator.set_producer_id / restart_sequences); the Sender sends
this class's requests and asks it about each batch that comes back with an error.

With a ``transactional_id`` it is also Java's transaction state machine::

    UNINITIALIZED -init_transactions()-> INITIALIZING -InitProducerId-> READY -begin_transaction()-> IN_TRANSACTION
    IN_TRANSACTION -commit_transaction()-> COMMITTING_TRANSACTION -EndTxn(commit)-> READY
    IN_TRANSACTION or ABORTABLE_ERROR -abort_transaction()-> ABORTING_TRANSACTION -EndTxn(abort)-> READY
        (or -> INITIALIZING -InitProducerId(epoch bump, KIP-360)-> READY when the transaction broke the sequences)
    IN_TRANSACTION, COMMITTING_TRANSACTION, INITIALIZING -an abortable error-> ABORTABLE_ERROR
    anything -a fatal error (fenced, not authorized, ...)-> FATAL_ERROR (the producer can only be closed)

The user-facing calls (KafkaProducer.init_transactions() ...) change the state and queue requests here under one
lock, then wait on a TransactionalRequestResult; the Sender takes the requests one at a time through
``poll_request()`` -- highest priority first: FindCoordinator, InitProducerId, AddPartitionsToTxn /
AddOffsetsToTxn / TxnOffsetCommit, EndTxn, the epoch bump -- and sends each to the node it names (any broker, the
transaction coordinator, or a group's coordinator; found with FindCoordinator and found again after
NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or a lost connection). Each answer is handled by its request's class
in kafkaprod/txn_requests.py, which decides, as Java's handler of that request does, what is retried, what is
abortable and what is fatal.

Partitions join a transaction through the accumulator: ready() finds each partition with queued batches that is
not in the transaction yet and holds it back; ``poll_request()`` takes those partitions and sends one
AddPartitionsToTxn for all of them, and only once it succeeded does the partition drain
(RecordAccumulator.add_txn_partitions). EndTxn waits until no batch is incomplete: on commit the Sender flushes
first; on abort it fails the batches never sent with TransactionAbortedError and waits for those in flight.
"""
from __future__ import annotations

import copy
import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

from kafkaprod import errors
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.batch import ProducerBatch
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse
from kafkaprod.protocol.messages import INIT_PRODUCER_ID
from kafkaprod.protocol.schema import Api
from kafkaprod.txn_requests import (
    FENCED, AddOffsetsRequest, AddPartitionsRequest, EndTxnRequest, FindCoordinatorRequest, Group,
    InitProducerIdRequest, Offset, TransactionalRequestResult, TxnRequest, coordinator_kind,
)

log = logging.getLogger("kafkaprod")

E = errors.ErrorCode
# Produce errors that end an idempotent producer, as in Java's TransactionManager.maybeTransitionToErrorState: no
# retry or new producer id helps.
_FATAL_FOR_IDEMPOTENCE = frozenset({E.CLUSTER_AUTHORIZATION_FAILED, E.UNSUPPORTED_VERSION,
                                    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.PRODUCER_FENCED})
_INF = float("inf")


class State(enum.Enum):
    """Java's TransactionManager.State."""

    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    IN_TRANSACTION = "IN_TRANSACTION"
    COMMITTING_TRANSACTION = "COMMITTING_TRANSACTION"
    ABORTING_TRANSACTION = "ABORTING_TRANSACTION"
    ABORTABLE_ERROR = "ABORTABLE_ERROR"
    FATAL_ERROR = "FATAL_ERROR"


S = State
# Java's State.isTransitionValid: the states each state may be entered from (FATAL_ERROR from any).
_SOURCES: dict[State, frozenset[State]] = {
    S.UNINITIALIZED: frozenset(),
    S.INITIALIZING: frozenset({S.UNINITIALIZED, S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION}),
    S.READY: frozenset({S.INITIALIZING, S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION}),
    S.IN_TRANSACTION: frozenset({S.READY}),
    S.COMMITTING_TRANSACTION: frozenset({S.IN_TRANSACTION}),
    S.ABORTING_TRANSACTION: frozenset({S.IN_TRANSACTION, S.ABORTABLE_ERROR}),
    S.ABORTABLE_ERROR: frozenset({S.IN_TRANSACTION, S.COMMITTING_TRANSACTION, S.ABORTABLE_ERROR, S.INITIALIZING}),
    S.FATAL_ERROR: frozenset(State),
}

# What each state expects next: the end of every out-of-order call's message.
_EXPECTED: dict[State, str] = {
    S.UNINITIALIZED: "call init_transactions() first",
    S.INITIALIZING: "init_transactions() is in progress: call it again to wait for it",
    S.READY: "no transaction is open: call begin_transaction() first",
    S.IN_TRANSACTION: "a transaction is open: call commit_transaction() or abort_transaction()",
    S.COMMITTING_TRANSACTION: "the transaction is being committed: call commit_transaction() again to wait for it",
    S.ABORTING_TRANSACTION: "the transaction is being aborted: call abort_transaction() again to wait for it",
    S.ABORTABLE_ERROR: "the transaction failed and can only be aborted: call abort_transaction()",
    S.FATAL_ERROR: "the producer stopped after a fatal error: close it",
}


class _PendingTransition:
    """A state change whose request is under way (Java's PendingStateTransition): calling the same method again
    waits for the same result."""

    __slots__ = ("state", "result", "operation")

    def __init__(self, state: State, result: TransactionalRequestResult, operation: str) -> None:
        self.state = state
        self.result = result
        self.operation = operation


class TransactionManager:
    """The producer id and epoch of an idempotent producer, the rules that keep its sequences unbroken, and, with a
    transactional id, the transaction state machine and its requests."""

    def __init__(self, accumulator: RecordAccumulator, metrics: ProducerMetrics, retry_backoff_ms: int,
                 transactional_id: str | None = None, transaction_timeout_ms: int = 60000,
                 fail_on_broker_data_loss: bool = False) -> None:
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
        # What each partition's broker acknowledged last: (producer id, epoch, last sequence, last offset); and the
        # partitions whose loss of acknowledged records was reported already, until an append there shows where
        # the log now ends.
        self._acked: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        self._loss_reported: set[tuple[str, int]] = set()
        self.fail_on_broker_data_loss = fail_on_broker_data_loss
        # ---- transactions
        self.transactional_id = transactional_id
        self.transactional = transactional_id is not None
        self.transaction_timeout_ms = transaction_timeout_ms
        self.state = S.UNINITIALIZED
        self.last_error: errors.KafkaError | None = None
        self._lock = threading.RLock()
        self._queue: list[TxnRequest] = []
        self._order = 0
        self._in_flight: TxnRequest | None = None
        self._coordinators: dict[tuple[int, str], tuple[int, str, int]] = {}
        self._adding: AddPartitionsRequest | None = None   # the AddPartitionsToTxn queued or in flight
        self.transaction_started = False           # something was added: EndTxn has a transaction to end
        self.epoch_bump_required = False
        self._pending: _PendingTransition | None = None
        self._offsets_call: tuple[Any, TransactionalRequestResult] | None = None
        self._closed = False
        if self.transactional:
            accumulator.txn_refusal = self.refusal

    # ---- requests for the Sender to send (Java: nextRequest and its InitProducerIdHandler) -----------------------
    def time_to_next_request(self, now: float) -> float:
        """Seconds until next_request() has a request to send: 0 now; infinite while none is needed or one is
        awaited (its answer, or its connection closing, wakes the Sender's poll). Idempotence only."""
        if self.fatal_error is not None or self._init_in_flight or self.acc.producer_id >= 0 or self.transactional:
            return _INF
        return max(0.0, self._init_not_before - now)

    def next_request(self) -> tuple[Api, dict[str, Any], Callable[[ClientResponse], None]]:
        """(api, body, on_done) of the request due now -- InitProducerId without a transactional id -- for the
        Sender to send to any ready broker. Call only when time_to_next_request() is 0."""
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
                self.transition_to_fatal_error(err)
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
        if self.transactional:
            # A transaction cannot take a new producer id or restart a partition's numbering halfway: a batch
            # behind an earlier one being retried is retried too (its sequence will fit then); a real gap or a
            # lost producer fails the batch, the transaction becomes abortable, and the epoch is bumped after the
            # abort (handle_failed_batch).
            return err.errno == E.OUT_OF_ORDER_SEQUENCE_NUMBER and (batch.retry or self.acc.has_earlier_pending(batch))
        if err.errno == E.UNKNOWN_PRODUCER_ID:
            # The broker lost this producer's state for the partition (log truncated or deleted): numbering from 0
            # again, under a new producer id, is accepted; the batch is retried with its new number. Retention can
            # do that legitimately; whether acknowledged records went too, the next append's offset shows.
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
                if self._broker_lost_acknowledged(batch) and self.fail_on_broker_data_loss:
                    return False  # the producer is stopping (see _broker_lost_acknowledged)
                self._request_restart(batch, "OUT_OF_ORDER_SEQUENCE_NUMBER with no earlier batch pending")
            return True
        return False

    def handle_failed_batch(self, batch: ProducerBatch, err: errors.KafkaError) -> None:
        """A batch failed for good with err (an error answer, or delivery_timeout_ms): Java's
        TransactionManager.handleFailedBatch. A fatal error stops the producer; otherwise a numbered batch leaves
        a gap in its partition's sequences that the batches after it must not wait behind -- and in a transaction,
        the transaction can then only be aborted."""
        if not self.transactional:
            if err.errno in _FATAL_FOR_IDEMPOTENCE:
                self.transition_to_fatal_error(err)
            elif batch.has_sequence:
                self._request_restart(batch, f"failed with {type(err).__name__}")
            return
        with self._lock:
            if err.errno in FENCED:
                # kafkaprod bumps its epoch only through InitProducerId after an abort, never during a transaction:
                # an epoch the broker calls old means another producer took this transactional id.
                self.transition_to_fatal_error(self.fenced_error())
            elif err.errno in _FATAL_FOR_IDEMPOTENCE:
                self.transition_to_fatal_error(err)
            else:
                if batch.has_sequence:
                    # Its sequences now have a gap (or the broker lost them): the next transaction needs a new epoch.
                    self.epoch_bump_required = True
                self.transition_to_abortable_error(err)

    def batch_error(self, err: errors.KafkaError) -> errors.KafkaError:
        """The error a batch that failed with err completes with: in a transaction, an old epoch means fenced
        (see handle_failed_batch), and its records say so."""
        if isinstance(self.fatal_error, errors.BrokerDataLossError) and err.errno == E.OUT_OF_ORDER_SEQUENCE_NUMBER:
            return self.fatal_error  # the refusal that showed the loss (fail_on_broker_data_loss)
        if self.transactional and err.errno == E.INVALID_PRODUCER_EPOCH:
            fenced = self.fenced_error()
            fenced.__cause__ = err
            return fenced
        return err

    # ---- a broker that lost what it acknowledged ---------------------------------------------------------------
    def acknowledged(self, batch: ProducerBatch, base_offset: int) -> None:
        """A numbered batch was written at base_offset (the Sender, for every success of an idempotent producer).

        A partition's log only grows: an append that lands at or below the last offset acknowledged there means
        the broker lost acknowledged records -- whatever the sequences showed, since a new producer id (which a
        loss on another partition asks for) numbers from 0 again and is accepted where the old one would have
        been refused."""
        tp = batch.tp
        count = batch.record_count
        acked = self._acked.get(tp)
        if acked is not None and 0 <= base_offset <= acked[3]:
            self._report_gone(tp, acked[3], base_offset)
        if base_offset >= 0:
            self._acked[tp] = (batch.producer_id, batch.producer_epoch, batch.base_sequence + count - 1,
                               base_offset + count - 1)

    def _broker_lost_acknowledged(self, batch: ProducerBatch) -> bool:
        """Whether the broker refused, as out of order, the very sequence after the last one it acknowledged for the
        batch's partition under the same producer id and epoch: it no longer has what it acknowledged (a crash
        ahead of its storage). Java (KIP-360) restarts the sequences and goes on in silence; librdkafka stops with
        a fatal error. kafkaprod restarts and goes on, and says so: ERROR, counted in metrics(), and how many
        acknowledged records are gone once an append there shows where the log now ends; or, with
        fail_on_broker_data_loss, stops the producer with BrokerDataLossError."""
        tp = batch.tp
        acked = self._acked.get(tp)
        if acked is None or acked[:2] != (batch.producer_id, batch.producer_epoch) or batch.base_sequence != acked[2] + 1:
            return False
        producer_id, epoch, last_sequence, last_offset = acked
        what = (f"the broker leading {tp[0]}[{tp[1]}] lost records it had acknowledged: it acknowledged up to offset "
                f"{last_offset} (sequence {last_sequence}, producer id {producer_id}, epoch {epoch}) and now refuses "
                f"sequence {batch.base_sequence} as out of order")
        if tp not in self._loss_reported:
            self.metrics.record_broker_data_loss()
        if self.fail_on_broker_data_loss:
            self.transition_to_fatal_error(errors.BrokerDataLossError(f"{what} (fail_on_broker_data_loss)"))
            return True
        if tp not in self._loss_reported:
            self._loss_reported.add(tp)
            log.error("%s; sending on with new sequences, and the next append there will show how many "
                      "acknowledged records are gone (fail_on_broker_data_loss=True stops the producer instead)", what)
        return True

    def _report_gone(self, tp: tuple[str, int], last_acked_offset: int, log_end: int) -> None:
        gone = last_acked_offset + 1 - log_end
        if tp in self._loss_reported:
            self._loss_reported.discard(tp)
        else:  # found by the offset alone: the event counts too
            self.metrics.record_broker_data_loss()
        self.metrics.record_broker_data_loss(gone)
        log.error("%s[%d]: the broker's log now ends at offset %d, below the %d it had acknowledged: %d acknowledged "
                  "record(s) are gone (offsets %d to %d)", tp[0], tp[1], log_end, last_acked_offset + 1, gone,
                  log_end, last_acked_offset)

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
    def transition_to_fatal_error(self, err: errors.KafkaError) -> None:
        # Java's transitionToFatalError: the Sender fails every pending record with it and stops; with
        # transactions, every call waiting here fails with it too, and so does every later call.
        with self._lock:
            if self.fatal_error is not None:
                return
            log.error("%s producer stopped by a fatal error: %s",
                      "transactional" if self.transactional else "idempotent", err)
            self.fatal_error = err
            if not self.transactional:
                return
            self.last_error = err
            self.state = S.FATAL_ERROR
            self.acc.close_transaction()
            self._fail_all(err)

    def _fail_all(self, err: errors.KafkaError) -> None:
        for request in [*self._queue, *([self._in_flight] if self._in_flight is not None else [])]:
            request.result.done(err)
        self._queue.clear()
        if self._pending is not None:
            self._pending.result.done(err)
        if self._offsets_call is not None:
            self._offsets_call[1].done(err)

    def fenced_error(self) -> errors.ProducerFencedError:
        return errors.ProducerFencedError(
            f"transactional_id {self.transactional_id!r}: another producer with this id called init_transactions() "
            f"(producer id {self.acc.producer_id}, epoch {self.acc.producer_epoch} is fenced); close this one")

    # ================================================================================================================
    # Transactions
    # ================================================================================================================

    # ---- the user's calls (on the caller's thread) -----------------------------------------------------------------
    def initialize_transactions(self) -> TransactionalRequestResult:
        """init_transactions(): InitProducerId with the transactional id (Java's initializeTransactions)."""
        with self._lock:
            what = "init_transactions()"
            cached = self._cached_result(S.INITIALIZING, what)
            if cached is not None:
                return cached
            self._raise_if_fatal()
            if self.state is not S.UNINITIALIZED:
                raise self._out_of_order(what)
            self.transition_to(S.INITIALIZING)
            result = TransactionalRequestResult(what)
            self.enqueue(InitProducerIdRequest(self, result, bump=False), 0.0)
            self._pending = _PendingTransition(S.INITIALIZING, result, what)
            return result

    def begin_transaction(self) -> None:
        with self._lock:
            what = "begin_transaction()"
            self._raise_if_pending(what)
            self._raise_if_error(what)
            if self.state is not S.READY:
                raise self._out_of_order(what)
            self.transition_to(S.IN_TRANSACTION)
            self.acc.open_transaction()

    def send_offsets_to_transaction(self, offsets: list[Offset], group: Group) -> TransactionalRequestResult:
        """AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to the group's coordinator."""
        with self._lock:
            what = "send_offsets_to_transaction()"
            self._raise_if_pending(what)
            self._raise_if_error(what)
            if self.state is not S.IN_TRANSACTION:
                raise self._out_of_order(what)
            key = (tuple(sorted(o.key() for o in offsets)), group.key())
            previous = self._offsets_call
            if previous is not None and not previous[1].acked:
                if previous[0] == key:
                    return previous[1]  # called again after a timeout: wait for the same request
                raise errors.TransactionStateError(
                    f"{what}: a previous call with other offsets is still in progress; call it again with the same "
                    f"arguments to wait for it")
            result = TransactionalRequestResult(what)
            self.enqueue(AddOffsetsRequest(self, result, offsets, group), 0.0)
            self._offsets_call = (key, result)
            return result

    def begin_commit(self) -> TransactionalRequestResult:
        """commit_transaction(): no more appends, flush, then EndTxn(commit)."""
        with self._lock:
            what = "commit_transaction()"
            cached = self._cached_result(S.COMMITTING_TRANSACTION, what)
            if cached is not None:
                return cached
            self._raise_if_error(what)
            if self.state is not S.IN_TRANSACTION:
                raise self._out_of_order(what)
            self.transition_to(S.COMMITTING_TRANSACTION)
            return self._begin_completing(commit=True, what=what)

    def begin_abort(self) -> TransactionalRequestResult:
        """abort_transaction(): no more appends, fail what was never sent, wait for what is in flight, then
        EndTxn(abort) -- and the epoch bump, if the transaction broke the sequences."""
        with self._lock:
            what = "abort_transaction()"
            cached = self._cached_result(S.ABORTING_TRANSACTION, what)
            if cached is not None:
                return cached
            self._raise_if_fatal()
            if self.state not in (S.IN_TRANSACTION, S.ABORTABLE_ERROR):
                raise self._out_of_order(what)
            self.transition_to(S.ABORTING_TRANSACTION)
            self.acc.take_new_txn_partitions()  # nothing more is added to a transaction being aborted
            return self._begin_completing(commit=False, what=what)

    def _begin_completing(self, commit: bool, what: str) -> TransactionalRequestResult:
        self.acc.close_transaction()
        result = TransactionalRequestResult(what)
        end = EndTxnRequest(self, result, commit)
        end.skip = not commit and isinstance(self.last_error, (errors.UnknownProducerIdError,
                                                                errors.InvalidProducerIdMappingError))
        self.enqueue(end, 0.0)
        self._pending = _PendingTransition(self.state, result, what)
        return result

    def abort_on_close(self) -> None:
        """close() with a transaction open: abort it, as Java's Sender does on shutdown."""
        with self._lock:
            if self.state in (S.IN_TRANSACTION, S.ABORTABLE_ERROR) and (
                    self._pending is None or self._pending.result.is_done):
                log.info("transactional_id %r: aborting the open transaction, since the producer closes",
                         self.transactional_id)
                self.begin_abort()

    def has_ongoing_transaction(self) -> bool:
        return self.state in (S.IN_TRANSACTION, S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION,
                              S.ABORTABLE_ERROR)

    def is_completing(self) -> bool:
        return self.state in (S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION)

    def fail_waiting(self, err: errors.KafkaError) -> None:
        """The Sender stopped: calls still waiting for a request fail with err."""
        with self._lock:
            self._fail_all(err)

    def mark_closed(self) -> None:
        """close() was called: later calls, and sends, raise ProducerClosedError."""
        self._closed = True

    def state_allows_send(self) -> bool:
        """Whether send() may append now (the accumulator's gate decides for good; this only lets send() raise
        before it waits for a topic's metadata)."""
        return self.state is S.IN_TRANSACTION and not self._closed

    def refusal(self, what: str) -> errors.KafkaError:
        """The error an append outside an open transaction raises (the accumulator's txn_refusal). Reads the
        state without the lock: the accumulator calls this inside its own critical section."""
        if self._closed:
            return errors.ProducerClosedError(f"{what} after the producer was closed")
        state = self.state
        if state is S.FATAL_ERROR and self.last_error is not None:
            return _fresh(self.last_error)
        if state is S.ABORTABLE_ERROR and self.last_error is not None:
            return self.abortable_error(self.last_error, what)
        return errors.TransactionStateError(f"{what} on a transactional producer in state {state.value}: "
                                            f"{_EXPECTED[state]}")

    def raise_error(self, err: errors.KafkaError) -> None:
        """Raises a result's error: a fresh copy, since the same error may reach several calls."""
        raise _fresh(err)

    # ---- checks ------------------------------------------------------------------------------------------------------
    def _cached_result(self, state: State, what: str) -> TransactionalRequestResult | None:
        # Java's handleCachedTransactionRequestResult: the same call made again after a timeout waits for the same
        # request; another call meanwhile is out of order.
        pending = self._pending
        if pending is None:
            return None
        if pending.result.acked or (pending.state is not state and pending.result.is_done):
            # Seen, or finished while its caller had stopped waiting: the state tells what it did.
            self._pending = None
            return None
        if pending.state is not state:
            raise errors.TransactionStateError(
                f"{what} while {pending.operation} is still in progress: call {pending.operation} again to wait "
                f"for it")
        return pending.result

    def _raise_if_pending(self, what: str) -> None:
        pending = self._pending
        if pending is not None and not pending.result.is_done:
            raise errors.TransactionStateError(
                f"{what} while {pending.operation} is still in progress (it timed out): call "
                f"{pending.operation} again to wait for it")

    def _raise_if_fatal(self) -> None:
        if self.state is S.FATAL_ERROR and self.last_error is not None:
            raise _fresh(self.last_error)

    def _raise_if_error(self, what: str) -> None:
        # Java's maybeFailWithError.
        self._raise_if_fatal()
        if self.state is S.ABORTABLE_ERROR and self.last_error is not None:
            raise self.abortable_error(self.last_error, what)

    def _out_of_order(self, what: str) -> errors.TransactionStateError:
        return errors.TransactionStateError(f"{what} in state {self.state.value}: {_EXPECTED[self.state]}")

    def abortable_error(self, err: errors.KafkaError, what: str = "") -> errors.KafkaError:
        if isinstance(err, errors.TransactionAbortableError) and err.__cause__ is not None:
            return err
        doing = f"{what}: " if what else ""
        out = errors.TransactionAbortableError(
            f"{doing}the transaction failed with {type(err).__name__}: {err}; call abort_transaction(), then "
            f"begin_transaction() again")
        out.__cause__ = err
        return out

    # ---- state --------------------------------------------------------------------------------------------------------
    def transition_to(self, target: State) -> None:
        if self.state not in _SOURCES[target]:
            raise errors.TransactionStateError(
                f"transactional_id {self.transactional_id!r}: invalid transition from {self.state.value} to "
                f"{target.value}")
        log.debug("transactional_id %r: %s -> %s", self.transactional_id, self.state.value, target.value)
        self.state = target

    def transition_to_abortable_error(self, err: errors.KafkaError) -> None:
        # Java's transitionToAbortableError; an error while the transaction is being aborted changes nothing.
        if self.state in (S.ABORTING_TRANSACTION, S.FATAL_ERROR):
            log.debug("transactional_id %r: %s while %s", self.transactional_id, err, self.state.value)
            return
        if self.state not in _SOURCES[S.ABORTABLE_ERROR]:
            self.transition_to_fatal_error(err)
            return
        if self.state is not S.ABORTABLE_ERROR:
            log.info("transactional_id %r: the transaction can only be aborted now: %s", self.transactional_id, err)
            self.last_error = err
        self.state = S.ABORTABLE_ERROR
        self.acc.close_transaction()

    def complete_transaction(self, result: TransactionalRequestResult) -> None:
        """EndTxn succeeded (or had nothing to end): the transaction is over; on to READY, or first to the epoch
        bump, which then completes the call (Java's completeTransaction)."""
        self.transaction_started = False
        self._adding = None
        self.acc.end_transaction()
        self.last_error = None
        if self.epoch_bump_required:
            self.transition_to(S.INITIALIZING)
            log.info("transactional_id %r: bumping the epoch after the aborted transaction (KIP-360)",
                     self.transactional_id)
            self.enqueue(InitProducerIdRequest(self, result, bump=True), 0.0)
            return
        self.transition_to(S.READY)
        result.done()

    def producer_id_ready(self) -> None:
        """InitProducerId succeeded (the accumulator has the id): the producer is ready for a transaction."""
        self.epoch_bump_required = False
        self.transition_to(S.READY)

    def partitions_added(self, partitions: list[tuple[str, int]]) -> None:
        self._adding = None
        self.transaction_started = True
        self.acc.add_txn_partitions(partitions)

    # ---- coordinators -------------------------------------------------------------------------------------------------
    def lookup_coordinator(self, key_type: int | None, key: str) -> None:
        if key_type is None:
            return
        self._coordinators.pop((key_type, key), None)
        for request in self._queue:
            if isinstance(request, FindCoordinatorRequest) and (request.key_type, request.key) == (key_type, key):
                return
        if isinstance(self._in_flight, FindCoordinatorRequest) and \
                (self._in_flight.key_type, self._in_flight.key) == (key_type, key):
            return
        self.enqueue(FindCoordinatorRequest(self, key_type, key), 0.0)

    def set_coordinator(self, key_type: int, key: str, node: tuple[int, str, int]) -> None:
        log.debug("the %s coordinator of %r is broker %d at %s:%d", coordinator_kind(key_type), key, *node)
        self._coordinators[(key_type, key)] = node

    # ---- the Sender's side --------------------------------------------------------------------------------------------
    def enqueue(self, request: TxnRequest, backoff: float) -> None:
        request.not_before = monotonic() + backoff if backoff > 0 else 0.0
        self._order += 1
        request.order = self._order
        self._queue.append(request)

    def poll_request(self, now: float, has_incomplete: bool) -> tuple[TxnRequest | None, float]:
        """(the request to send now, or None; seconds until one may be due) -- Java's nextRequest. One request is in
        flight at a time; new partitions found by the accumulator go into one AddPartitionsToTxn; EndTxn waits
        until no batch is incomplete, and is not sent at all when nothing was added to the transaction."""
        with self._lock:
            if self.state is S.FATAL_ERROR or self._in_flight is not None:
                return None, _INF
            new = self.acc.take_new_txn_partitions() if self.acc.has_new_txn_partitions() else []
            if new:
                if self.state in (S.IN_TRANSACTION, S.COMMITTING_TRANSACTION):
                    if self._adding is not None and self._adding in self._queue and self._adding.not_before == 0.0:
                        self._adding.partitions.extend(new)
                    else:
                        self._adding = AddPartitionsRequest(self, new)
                        self.enqueue(self._adding, 0.0)
                # else: an abortable error or an abort -- their batches fail, nothing is added.
            while self._queue:
                request = min(self._queue, key=lambda r: (r.priority, r.order))
                if request.is_end_txn:
                    if has_incomplete:
                        return None, _INF  # the batches' answers wake the Sender
                    assert isinstance(request, EndTxnRequest)
                    if (not self.transaction_started or request.skip) and self.state is not S.ABORTABLE_ERROR:
                        self._queue.remove(request)
                        self.complete_transaction(request.result)
                        continue
                if self.state is S.ABORTABLE_ERROR and not isinstance(request, FindCoordinatorRequest) and \
                        self.last_error is not None:
                    # Java's maybeTerminateRequestWithError: a transaction that can only be aborted sends nothing
                    # more for it (its coordinator may still be looked up).
                    self._queue.remove(request)
                    request.result.done(self.abortable_error(self.last_error))
                    if request is self._adding:
                        self._adding = None
                    continue
                wait = request.not_before - now
                if wait > 0:
                    return None, wait
                self._queue.remove(request)
                return request, 0.0
            return None, _INF

    def coordinator_of(self, request: TxnRequest) -> tuple[int, str, int] | None:
        """The (node id, host, port) the request goes to; None when its coordinator is unknown (then
        lookup_coordinator_for() queues a FindCoordinator) or when any broker will do (coordinator_type None)."""
        if request.coordinator_type is None:
            return None
        return self._coordinators.get((request.coordinator_type, request.coordinator_key))

    def lookup_coordinator_for(self, request: TxnRequest) -> None:
        with self._lock:
            self.lookup_coordinator(request.coordinator_type, request.coordinator_key)

    def requeue(self, request: TxnRequest, backoff: float) -> None:
        """A request polled but not sent (its node was not ready): back in the queue."""
        with self._lock:
            if self.state is S.FATAL_ERROR:
                request.result.done(self.last_error)
                return
            self.enqueue(request, backoff)

    def sent(self, request: TxnRequest) -> Callable[[ClientResponse], None]:
        """The request is on its way; returns the callback for its answer."""
        with self._lock:
            self._in_flight = request

        def on_done(resp: ClientResponse) -> None:
            self._on_response(request, resp)

        return on_done

    def _on_response(self, request: TxnRequest, resp: ClientResponse) -> None:
        with self._lock:
            if self._in_flight is request:
                self._in_flight = None
            if self.state is S.FATAL_ERROR:
                return
            if resp.body is None:
                # No answer (the connection closed or timed out): its coordinator may have moved.
                log.info("transactional_id %r: %r got no answer from broker %d: %s", self.transactional_id,
                         request, resp.node_id, resp.error)
                if request.coordinator_type is not None:
                    self.lookup_coordinator(request.coordinator_type, request.coordinator_key)
                request.retry()
                return
            code = resp.body.get("error_code", E.NONE)
            if code:
                log.debug("transactional_id %r: %r answered %s", self.transactional_id, request,
                          errors.error_class(code).__name__)
            try:
                request.handle(resp.body)
            except Exception as exc:  # pragma: no cover - a bug: stop rather than hang the caller
                log.exception("transactional_id %r: handling the answer to %r failed", self.transactional_id,
                              request)
                self.transition_to_fatal_error(errors.KafkaError(f"handling the answer to {request!r} failed: "
                                                                  f"{exc!r}"))

    def records_error(self) -> errors.KafkaError | None:
        """The error the Sender fails never-sent batches with, this loop: TransactionAbortedError while aborting,
        the abortable error while the transaction can only be aborted, None otherwise."""
        state = self.state
        if state is S.ABORTING_TRANSACTION:
            return errors.TransactionAbortedError(
                f"transactional_id {self.transactional_id!r}: the transaction was aborted before the record was sent")
        if state is S.ABORTABLE_ERROR and self.last_error is not None:
            return self.abortable_error(self.last_error)
        return None


def _fresh(err: errors.KafkaError) -> errors.KafkaError:
    # A copy to raise, so that raising the same stored error from several calls does not chain their tracebacks.
    out = copy.copy(err)
    out.__traceback__ = None
    out.__cause__ = err.__cause__
    return out
