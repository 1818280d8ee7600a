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
below, which decides, as Java's handler of that request does, what is retried, what is abortable and what is
fatal.

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
from collections.abc import Callable, Iterable
from typing import Any

from kafkaprod import errors
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.batch import ProducerBatch
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse
from kafkaprod.protocol.messages import (
    ADD_OFFSETS_TO_TXN, ADD_PARTITIONS_TO_TXN, COORDINATOR_GROUP, COORDINATOR_TRANSACTION, END_TXN,
    FIND_COORDINATOR, INIT_PRODUCER_ID, TXN_OFFSET_COMMIT,
)
from kafkaprod.protocol.schema import Api

log = logging.getLogger("kafkaprod")

E = errors.ErrorCode
# Produce errors that end an idempotent producer, as in Java's TransactionManager.maybeTransitionToErrorState: no
# retry or new producer id helps.
_FATAL_FOR_IDEMPOTENCE = frozenset({E.CLUSTER_AUTHORIZATION_FAILED, E.UNSUPPORTED_VERSION,
                                    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.PRODUCER_FENCED})
_FENCED = frozenset({E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH})
_COORDINATOR_MOVED = frozenset({E.COORDINATOR_NOT_AVAILABLE, E.NOT_COORDINATOR})
# The coordinator no longer knows this producer id: the transaction can be aborted and the epoch bumped.
_PRODUCER_ID_LOST = frozenset({E.UNKNOWN_PRODUCER_ID, E.INVALID_PRODUCER_ID_MAPPING})
# Java's ADD_PARTITIONS_RETRY_BACKOFF_MS: the coordinator answers CONCURRENT_TRANSACTIONS while it still writes the
# markers of the previous transaction, which takes a few milliseconds.
_CONCURRENT_TRANSACTIONS_BACKOFF = 0.02
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


class TransactionalRequestResult:
    """What a transactional call waits for (Java's TransactionalRequestResult): done once, with or without an
    error; ``acked`` once a caller has seen the outcome, so that the same call made again starts anew."""

    __slots__ = ("operation", "error", "acked", "_event")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.error: errors.KafkaError | None = None
        self.acked = False
        self._event = threading.Event()

    def done(self, error: errors.KafkaError | None = None) -> None:
        if not self._event.is_set():
            self.error = error
            self._event.set()

    @property
    def is_done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Whether the result is done within timeout seconds (None: wait for it)."""
        if not self._event.wait(timeout):
            return False
        self.acked = True
        return True


# ---- the requests (Java's TxnRequestHandler and its subclasses) ----------------------------------------------------

class _Request:
    """One transactional request: what it asks, where it goes, how its answer is handled."""

    priority = 0
    #: COORDINATOR_TRANSACTION or COORDINATOR_GROUP: sent to that coordinator; None: to any broker.
    coordinator_type: int | None = COORDINATOR_TRANSACTION
    is_end_txn = False

    def __init__(self, tm: TransactionManager, api: Api, result: TransactionalRequestResult | None = None) -> None:
        self.tm = tm
        self.api = api
        self.result = result if result is not None else TransactionalRequestResult(type(self).__name__)
        self.not_before = 0.0
        self.order = 0  # first come, first served within a priority

    @property
    def coordinator_key(self) -> str:
        return self.tm.transactional_id or ""

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, body: dict[str, Any]) -> None:
        """The answer's body, under the TransactionManager's lock."""
        raise NotImplementedError

    # What a handler does with an error (Java's TxnRequestHandler.reenqueue / fatalError / abortableError).
    def retry(self, backoff: float | None = None) -> None:
        self.tm._enqueue(self, self.tm.retry_backoff if backoff is None else backoff)

    def find_coordinator_and_retry(self) -> None:
        self.tm._lookup_coordinator(self.coordinator_type, self.coordinator_key)
        self.retry()

    def fatal(self, err: errors.KafkaError) -> None:
        self.tm._transition_to_fatal_error(err)

    def fenced(self) -> None:
        self.fatal(self.tm._fenced_error())

    def abortable(self, err: errors.KafkaError, bump_epoch: bool = False) -> None:
        tm = self.tm
        if bump_epoch:
            tm._epoch_bump_required = True
        self.result.done(tm._abortable_error(err))
        tm._transition_to_abortable_error(err)

    def unexpected(self, err: errors.KafkaError) -> None:
        # Java makes any error its handler does not list fatal; one a retry may get past is retried here instead.
        if err.retriable:
            self.retry()
        else:
            self.fatal(err)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class _FindCoordinator(_Request):
    priority = 0
    coordinator_type = None

    def __init__(self, tm: TransactionManager, key_type: int, key: str) -> None:
        super().__init__(tm, FIND_COORDINATOR)
        self.key_type = key_type
        self.key = key

    def body(self) -> dict[str, Any]:
        return {"key": self.key, "key_type": self.key_type}

    def handle(self, body: dict[str, Any]) -> None:
        code = body.get("error_code", E.NONE)
        if code == E.NONE:
            self.tm._set_coordinator(self.key_type, self.key, (body["node_id"], body["host"], body["port"]))
            self.result.done()
            return
        err = errors.broker_error(code, body.get("error_message") or "")
        if code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            self.fatal(err)
        elif code == E.GROUP_AUTHORIZATION_FAILED:
            self.abortable(errors.broker_error(code, f"group {self.key!r}"))
        elif err.retriable:
            self.retry()  # COORDINATOR_NOT_AVAILABLE: the coordinator is still being elected
        else:
            self.fatal(errors.KafkaError(f"could not find the {_kind(self.key_type)} coordinator for "
                                         f"{self.key!r}: {err}"))

    def __repr__(self) -> str:
        return f"<FindCoordinator {_kind(self.key_type)} {self.key!r}>"


class _InitProducerId(_Request):

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, bump: bool) -> None:
        super().__init__(tm, INIT_PRODUCER_ID, result)
        # The epoch bump of KIP-360 after a transaction broke the sequences: the current id and epoch are sent,
        # and the request goes after EndTxn (Java's EPOCH_BUMP priority). A broker without InitProducerId v3
        # drops those two fields and answers as for a first init, which also bumps the epoch.
        self.bump = bump
        self.priority = 4 if bump else 1

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        return {"transactional_id": self.tm.transactional_id,
                "transaction_timeout_ms": self.tm.transaction_timeout_ms,
                "producer_id": acc.producer_id if self.bump else -1,
                "producer_epoch": acc.producer_epoch if self.bump else -1}

    def handle(self, body: dict[str, Any]) -> None:
        code = body.get("error_code", E.NONE)
        tm = self.tm
        if code == E.NONE:
            tm.acc.set_producer_id(body["producer_id"], body["producer_epoch"])
            log.info("transactional_id %r: producer id %d epoch %d%s", tm.transactional_id, body["producer_id"],
                     body["producer_epoch"], " (epoch bumped)" if self.bump else "")
            tm._epoch_bump_required = False
            tm._transition_to(S.READY)
            self.result.done()
            return
        err = errors.broker_error(code)
        if code in _COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in _FENCED:
            self.fenced()
        elif code == E.TRANSACTION_ABORTABLE:
            self.abortable(err)
        else:
            self.unexpected(err)  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TRANSACTION_TIMEOUT: fatal


class _AddPartitions(_Request):
    priority = 2

    def __init__(self, tm: TransactionManager, partitions: list[tuple[str, int]]) -> None:
        super().__init__(tm, ADD_PARTITIONS_TO_TXN)
        self.partitions = partitions

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        return {"v3_and_below_transactional_id": self.tm.transactional_id,
                "v3_and_below_producer_id": acc.producer_id,
                "v3_and_below_producer_epoch": acc.producer_epoch,
                "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in _by_topic(self.partitions)]}

    def handle(self, body: dict[str, Any]) -> None:
        unauthorized: list[str] = []
        failed: dict[tuple[str, int], int] = {}
        for topic in body.get("results_by_topic_v3_and_below", ()):
            for p in topic.get("results_by_partition", ()):
                code = p.get("partition_error_code", E.NONE)
                tp = (topic["name"], p["partition_index"])
                if code in (E.NONE, E.OPERATION_NOT_ATTEMPTED):
                    continue
                err = errors.broker_error(code, f"{tp[0]}[{tp[1]}]")
                if code in _COORDINATOR_MOVED:
                    self.find_coordinator_and_retry()
                    return
                if code == E.CONCURRENT_TRANSACTIONS:
                    self.retry(min(self.tm.retry_backoff, _CONCURRENT_TRANSACTIONS_BACKOFF))
                    return
                if code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.UNKNOWN_TOPIC_OR_PARTITION):
                    self.retry()
                    return
                if code in _FENCED:
                    self.fenced()
                    return
                if code in (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.INVALID_TXN_STATE):
                    self.fatal(err)
                    return
                if code in _PRODUCER_ID_LOST:
                    self.abortable(err, bump_epoch=True)
                    return
                if code == E.TRANSACTION_ABORTABLE:
                    self.abortable(err)
                    return
                if code == E.TOPIC_AUTHORIZATION_FAILED:
                    unauthorized.append(tp[0])
                else:
                    failed[tp] = code
        if unauthorized:
            self.abortable(errors.broker_error(E.TOPIC_AUTHORIZATION_FAILED, f"topics {sorted(set(unauthorized))}"))
        elif failed:
            named = ", ".join(f"{t}[{p}]: {errors.error_class(c).__name__}" for (t, p), c in sorted(failed.items()))
            self.abortable(errors.KafkaError(f"could not add partitions to the transaction: {named}"))
        else:
            self.tm._partitions_added(self.partitions)
            self.result.done()

    def __repr__(self) -> str:
        return f"<AddPartitionsToTxn {self.partitions}>"


class _AddOffsets(_Request):
    priority = 2

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, offsets: list[_Offset],
                 group: _Group) -> None:
        super().__init__(tm, ADD_OFFSETS_TO_TXN, result)
        self.offsets = offsets
        self.group = group

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        return {"transactional_id": self.tm.transactional_id, "producer_id": acc.producer_id,
                "producer_epoch": acc.producer_epoch, "group_id": self.group.group_id}

    def handle(self, body: dict[str, Any]) -> None:
        code = body.get("error_code", E.NONE)
        tm = self.tm
        if code == E.NONE:
            # The group's offsets topic is in the transaction now; the offsets go to the group's coordinator.
            tm._transaction_started = True
            tm._enqueue(_TxnOffsetCommit(tm, self.result, self.offsets, self.group), 0.0)
            return
        err = errors.broker_error(code, f"group {self.group.group_id!r}")
        if code in _COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in _PRODUCER_ID_LOST:
            self.abortable(err, bump_epoch=True)
        elif code in _FENCED:
            self.fenced()
        elif code in (E.GROUP_AUTHORIZATION_FAILED, E.TRANSACTION_ABORTABLE):
            self.abortable(err)
        else:
            self.unexpected(err)  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED: fatal


class _TxnOffsetCommit(_Request):
    priority = 2
    coordinator_type = COORDINATOR_GROUP

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, offsets: list[_Offset],
                 group: _Group) -> None:
        super().__init__(tm, TXN_OFFSET_COMMIT, result)
        self.offsets = offsets
        self.group = group
        self.coordinator_reloaded = False

    @property
    def coordinator_key(self) -> str:
        return self.group.group_id

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for o in self.offsets:
            by_topic.setdefault(o.topic, []).append({
                "partition_index": o.partition, "committed_offset": o.offset,
                "committed_leader_epoch": o.leader_epoch, "committed_metadata": o.metadata})
        g = self.group
        return {"transactional_id": self.tm.transactional_id, "group_id": g.group_id,
                "producer_id": acc.producer_id, "producer_epoch": acc.producer_epoch,
                "generation_id": g.generation_id, "member_id": g.member_id,
                "group_instance_id": g.group_instance_id,
                "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}

    def handle(self, body: dict[str, Any]) -> None:
        remaining = {(o.topic, o.partition): o for o in self.offsets}
        retry = False
        for topic in body.get("topics", ()):
            for p in topic.get("partitions", ()):
                tp = (topic["name"], p["partition_index"])
                code = p.get("error_code", E.NONE)
                if code == E.NONE:
                    remaining.pop(tp, None)
                    continue
                err = errors.broker_error(code, f"group {self.group.group_id!r}, {tp[0]}[{tp[1]}]")
                if code in (*_COORDINATOR_MOVED, E.REQUEST_TIMED_OUT):
                    retry = True
                    if not self.coordinator_reloaded:
                        self.coordinator_reloaded = True
                        self.tm._lookup_coordinator(COORDINATOR_GROUP, self.group.group_id)
                elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.UNKNOWN_TOPIC_OR_PARTITION):
                    retry = True
                elif code in _FENCED:
                    self.fenced()
                    return
                elif code in (E.GROUP_AUTHORIZATION_FAILED, E.UNKNOWN_MEMBER_ID, E.ILLEGAL_GENERATION,
                              E.TRANSACTION_ABORTABLE):
                    # The consumer whose offsets these are left the group or was fenced (Java's
                    # CommitFailedException): abortable.
                    self.abortable(err)
                    return
                elif err.retriable:
                    retry = True
                else:
                    # FENCED_INSTANCE_ID, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, UNSUPPORTED_FOR_MESSAGE_FORMAT, ...
                    self.fatal(err)
                    return
        if retry and remaining:
            self.offsets = list(remaining.values())
            self.retry()
        else:
            self.result.done()

    def __repr__(self) -> str:
        return f"<TxnOffsetCommit group {self.group.group_id!r}>"


class _EndTxn(_Request):
    priority = 3
    is_end_txn = True

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, commit: bool) -> None:
        super().__init__(tm, END_TXN, result)
        self.commit = commit
        # Abort only: the coordinator no longer knows our producer id (so there is no transaction of ours to end):
        # go straight to the epoch bump.
        self.skip = False

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        return {"transactional_id": self.tm.transactional_id, "producer_id": acc.producer_id,
                "producer_epoch": acc.producer_epoch, "committed": self.commit}

    def handle(self, body: dict[str, Any]) -> None:
        code = body.get("error_code", E.NONE)
        tm = self.tm
        if code == E.NONE:
            tm._complete_transaction(self.result)
            return
        err = errors.broker_error(code)
        if code in _COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in _FENCED:
            self.fenced()
        elif code in (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.INVALID_TXN_STATE):
            self.fatal(err)
        elif code in _PRODUCER_ID_LOST:
            if self.commit:
                self.abortable(err, bump_epoch=True)
            else:
                tm._epoch_bump_required = True
                tm._complete_transaction(self.result)
        elif code == E.TRANSACTION_ABORTABLE and self.commit:
            self.abortable(err)
        elif not self.commit:
            # An abort must get through: anything else short of fatal is tried again.
            self.retry()
        else:
            self.unexpected(err)

    def __repr__(self) -> str:
        return f"<EndTxn {'commit' if self.commit else 'abort'}>"


class _Offset:
    """One partition's offset for send_offsets_to_transaction()."""

    __slots__ = ("topic", "partition", "offset", "metadata", "leader_epoch")

    def __init__(self, topic: str, partition: int, offset: int, metadata: str | None, leader_epoch: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.metadata = metadata
        self.leader_epoch = leader_epoch

    def key(self) -> tuple[str, int, int, str | None, int]:
        return (self.topic, self.partition, self.offset, self.metadata, self.leader_epoch)


class _Group:
    """The consumer group of send_offsets_to_transaction() (Java's ConsumerGroupMetadata)."""

    __slots__ = ("group_id", "generation_id", "member_id", "group_instance_id")

    def __init__(self, group_id: str, generation_id: int = -1, member_id: str = "",
                 group_instance_id: str | None = None) -> None:
        self.group_id = group_id
        self.generation_id = generation_id
        self.member_id = member_id
        self.group_instance_id = group_instance_id

    def key(self) -> tuple[str, int, str, str | None]:
        return (self.group_id, self.generation_id, self.member_id, self.group_instance_id)


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
                 transactional_id: str | None = None, transaction_timeout_ms: int = 60000) -> None:
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
        # ---- transactions
        self.transactional_id = transactional_id
        self.transactional = transactional_id is not None
        self.transaction_timeout_ms = transaction_timeout_ms
        self.state = S.UNINITIALIZED
        self.last_error: errors.KafkaError | None = None
        self._lock = threading.RLock()
        self._queue: list[_Request] = []
        self._order = 0
        self._in_flight: _Request | None = None
        self._coordinators: dict[tuple[int, str], tuple[int, str, int]] = {}
        self._adding: _AddPartitions | None = None   # the AddPartitionsToTxn queued or in flight
        self._transaction_started = False           # something was added: EndTxn has a transaction to end
        self._epoch_bump_required = False
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
        if self.transactional:
            # A transaction cannot take a new producer id or restart a partition's numbering halfway: a batch
            # behind an earlier one being retried is retried too (its sequence will fit then); a real gap or a
            # lost producer fails the batch, the transaction becomes abortable, and the epoch is bumped after the
            # abort (handle_failed_batch).
            return err.errno == E.OUT_OF_ORDER_SEQUENCE_NUMBER and (batch.retry or self.acc.has_earlier_pending(batch))
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
        a gap in its partition's sequences that the batches after it must not wait behind -- and in a transaction,
        the transaction can then only be aborted."""
        if not self.transactional:
            if err.errno in _FATAL_FOR_IDEMPOTENCE:
                self._transition_to_fatal_error(err)
            elif batch.has_sequence:
                self._request_restart(batch, f"failed with {type(err).__name__}")
            return
        with self._lock:
            if err.errno in _FENCED:
                # kafkaprod bumps its epoch only through InitProducerId after an abort, never during a transaction:
                # an epoch the broker calls old means another producer took this transactional id.
                self._transition_to_fatal_error(self._fenced_error())
            elif err.errno in _FATAL_FOR_IDEMPOTENCE:
                self._transition_to_fatal_error(err)
            else:
                if batch.has_sequence:
                    # Its sequences now have a gap (or the broker lost them): the next transaction needs a new epoch.
                    self._epoch_bump_required = True
                self._transition_to_abortable_error(err)

    def batch_error(self, err: errors.KafkaError) -> errors.KafkaError:
        """The error a batch that failed with err completes with: in a transaction, an old epoch means fenced
        (see handle_failed_batch), and its records say so."""
        if self.transactional and err.errno == E.INVALID_PRODUCER_EPOCH:
            fenced = self._fenced_error()
            fenced.__cause__ = err
            return fenced
        return err

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

    def _fenced_error(self) -> errors.ProducerFencedError:
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
            self._transition_to(S.INITIALIZING)
            result = TransactionalRequestResult(what)
            self._enqueue(_InitProducerId(self, result, bump=False), 0.0)
            self._pending = _PendingTransition(S.INITIALIZING, result, what)
            return result

    def begin_transaction(self) -> None:
        with self._lock:
            what = "begin_transaction()"
            self._raise_if_pending(what)
            self._raise_if_error(what)
            if self.state is not S.READY:
                raise self._out_of_order(what)
            self._transition_to(S.IN_TRANSACTION)
            self.acc.open_transaction()

    def send_offsets_to_transaction(self, offsets: list[_Offset], group: _Group) -> TransactionalRequestResult:
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
            self._enqueue(_AddOffsets(self, result, offsets, group), 0.0)
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
            self._transition_to(S.COMMITTING_TRANSACTION)
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
            self._transition_to(S.ABORTING_TRANSACTION)
            self.acc.take_new_txn_partitions()  # nothing more is added to a transaction being aborted
            return self._begin_completing(commit=False, what=what)

    def _begin_completing(self, commit: bool, what: str) -> TransactionalRequestResult:
        self.acc.close_transaction()
        result = TransactionalRequestResult(what)
        end = _EndTxn(self, result, commit)
        end.skip = not commit and isinstance(self.last_error, (errors.UnknownProducerIdError,
                                                                errors.InvalidProducerIdMappingError))
        self._enqueue(end, 0.0)
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
            return self._abortable_error(self.last_error, what)
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
            raise self._abortable_error(self.last_error, what)

    def _out_of_order(self, what: str) -> errors.TransactionStateError:
        return errors.TransactionStateError(f"{what} in state {self.state.value}: {_EXPECTED[self.state]}")

    def _abortable_error(self, err: errors.KafkaError, what: str = "") -> errors.KafkaError:
        if isinstance(err, errors.TransactionAbortableError) and err.__cause__ is not None:
            return err
        doing = f"{what}: " if what else ""
        out = errors.TransactionAbortableError(
            f"{doing}the transaction failed with {type(err).__name__}: {err}; call abort_transaction(), then "
            f"begin_transaction() again")
        out.__cause__ = err
        return out

    # ---- state --------------------------------------------------------------------------------------------------------
    def _transition_to(self, target: State) -> None:
        if self.state not in _SOURCES[target]:
            raise errors.TransactionStateError(
                f"transactional_id {self.transactional_id!r}: invalid transition from {self.state.value} to "
                f"{target.value}")
        log.debug("transactional_id %r: %s -> %s", self.transactional_id, self.state.value, target.value)
        self.state = target

    def _transition_to_abortable_error(self, err: errors.KafkaError) -> None:
        # Java's transitionToAbortableError; an error while the transaction is being aborted changes nothing.
        if self.state in (S.ABORTING_TRANSACTION, S.FATAL_ERROR):
            log.debug("transactional_id %r: %s while %s", self.transactional_id, err, self.state.value)
            return
        if self.state not in _SOURCES[S.ABORTABLE_ERROR]:
            self._transition_to_fatal_error(err)
            return
        if self.state is not S.ABORTABLE_ERROR:
            log.info("transactional_id %r: the transaction can only be aborted now: %s", self.transactional_id, err)
            self.last_error = err
        self.state = S.ABORTABLE_ERROR
        self.acc.close_transaction()

    def _complete_transaction(self, result: TransactionalRequestResult) -> None:
        """EndTxn succeeded (or had nothing to end): the transaction is over; on to READY, or first to the epoch
        bump, which then completes the call (Java's completeTransaction)."""
        self._transaction_started = False
        self._adding = None
        self.acc.end_transaction()
        self.last_error = None
        if self._epoch_bump_required:
            self._transition_to(S.INITIALIZING)
            log.info("transactional_id %r: bumping the epoch after the aborted transaction (KIP-360)",
                     self.transactional_id)
            self._enqueue(_InitProducerId(self, result, bump=True), 0.0)
            return
        self._transition_to(S.READY)
        result.done()

    def _partitions_added(self, partitions: list[tuple[str, int]]) -> None:
        self._adding = None
        self._transaction_started = True
        self.acc.add_txn_partitions(partitions)

    # ---- coordinators -------------------------------------------------------------------------------------------------
    def _lookup_coordinator(self, key_type: int | None, key: str) -> None:
        if key_type is None:
            return
        self._coordinators.pop((key_type, key), None)
        for request in self._queue:
            if isinstance(request, _FindCoordinator) and (request.key_type, request.key) == (key_type, key):
                return
        if isinstance(self._in_flight, _FindCoordinator) and \
                (self._in_flight.key_type, self._in_flight.key) == (key_type, key):
            return
        self._enqueue(_FindCoordinator(self, key_type, key), 0.0)

    def _set_coordinator(self, key_type: int, key: str, node: tuple[int, str, int]) -> None:
        log.debug("the %s coordinator of %r is broker %d at %s:%d", _kind(key_type), key, *node)
        self._coordinators[(key_type, key)] = node

    # ---- the Sender's side --------------------------------------------------------------------------------------------
    def _enqueue(self, request: _Request, backoff: float) -> None:
        request.not_before = monotonic() + backoff if backoff > 0 else 0.0
        self._order += 1
        request.order = self._order
        self._queue.append(request)

    def poll_request(self, now: float, has_incomplete: bool) -> tuple[_Request | None, float]:
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
                        self._adding = _AddPartitions(self, new)
                        self._enqueue(self._adding, 0.0)
                # else: an abortable error or an abort -- their batches fail, nothing is added.
            while self._queue:
                request = min(self._queue, key=lambda r: (r.priority, r.order))
                if request.is_end_txn:
                    if has_incomplete:
                        return None, _INF  # the batches' answers wake the Sender
                    assert isinstance(request, _EndTxn)
                    if (not self._transaction_started or request.skip) and self.state is not S.ABORTABLE_ERROR:
                        self._queue.remove(request)
                        self._complete_transaction(request.result)
                        continue
                if self.state is S.ABORTABLE_ERROR and not isinstance(request, _FindCoordinator) and \
                        self.last_error is not None:
                    # Java's maybeTerminateRequestWithError: a transaction that can only be aborted sends nothing
                    # more for it (its coordinator may still be looked up).
                    self._queue.remove(request)
                    request.result.done(self._abortable_error(self.last_error))
                    if request is self._adding:
                        self._adding = None
                    continue
                wait = request.not_before - now
                if wait > 0:
                    return None, wait
                self._queue.remove(request)
                return request, 0.0
            return None, _INF

    def coordinator_of(self, request: _Request) -> tuple[int, str, int] | None:
        """The (node id, host, port) the request goes to; None when its coordinator is unknown (then
        lookup_coordinator_for() queues a FindCoordinator) or when any broker will do (coordinator_type None)."""
        if request.coordinator_type is None:
            return None
        return self._coordinators.get((request.coordinator_type, request.coordinator_key))

    def lookup_coordinator_for(self, request: _Request) -> None:
        with self._lock:
            self._lookup_coordinator(request.coordinator_type, request.coordinator_key)

    def requeue(self, request: _Request, backoff: float) -> None:
        """A request polled but not sent (its node was not ready): back in the queue."""
        with self._lock:
            if self.state is S.FATAL_ERROR:
                request.result.done(self.last_error)
                return
            self._enqueue(request, backoff)

    def sent(self, request: _Request) -> Callable[[ClientResponse], None]:
        """The request is on its way; returns the callback for its answer."""
        with self._lock:
            self._in_flight = request

        def on_done(resp: ClientResponse) -> None:
            self._on_response(request, resp)

        return on_done

    def _on_response(self, request: _Request, resp: ClientResponse) -> None:
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
                    self._lookup_coordinator(request.coordinator_type, request.coordinator_key)
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
                self._transition_to_fatal_error(errors.KafkaError(f"handling the answer to {request!r} failed: "
                                                                  f"{exc!r}"))

    def records_error(self) -> errors.KafkaError | None:
        """The error the Sender fails never-sent batches with, this loop: TransactionAbortedError while aborting,
        the abortable error while the transaction can only be aborted, None otherwise."""
        state = self.state
        if state is S.ABORTING_TRANSACTION:
            return errors.TransactionAbortedError(
                f"transactional_id {self.transactional_id!r}: the transaction was aborted before the record was sent")
        if state is S.ABORTABLE_ERROR and self.last_error is not None:
            return self._abortable_error(self.last_error)
        return None


def _kind(key_type: int | None) -> str:
    return "transaction" if key_type == COORDINATOR_TRANSACTION else "group"


def _by_topic(partitions: Iterable[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    out: dict[str, list[int]] = {}
    for topic, p in partitions:
        if p not in out.setdefault(topic, []):
            out[topic].append(p)
    return [(t, sorted(ps)) for t, ps in out.items()]


def _fresh(err: errors.KafkaError) -> errors.KafkaError:
    # A copy to raise, so that raising the same stored error from several calls does not chain their tracebacks.
    out = copy.copy(err)
    out.__traceback__ = None
    out.__cause__ = err.__cause__
    return out


def make_offsets(offsets: Any) -> list[_Offset]:
    """send_offsets_to_transaction()'s offsets: a mapping of (topic, partition) to the next offset to consume (an
    int, or an object with ``offset`` and optionally ``metadata`` and ``leader_epoch``), or an iterable of objects
    with ``topic``, ``partition`` and ``offset`` (confluent-kafka's TopicPartition)."""
    items: list[tuple[Any, Any, Any]] = []
    if hasattr(offsets, "items"):
        for key, value in offsets.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise TypeError(f"send_offsets_to_transaction(offsets): keys must be (topic, partition) tuples, got "
                                f"{key!r}")
            items.append((key[0], key[1], value))
    else:
        try:
            iterator = iter(offsets)
        except TypeError:
            raise TypeError(f"send_offsets_to_transaction(offsets) must map (topic, partition) to an offset, got "
                            f"{type(offsets).__name__}") from None
        for item in iterator:
            if not all(hasattr(item, a) for a in ("topic", "partition", "offset")):
                raise TypeError(f"send_offsets_to_transaction(offsets): {item!r} has no topic, partition and offset")
            items.append((item.topic, item.partition, item))
    out: list[_Offset] = []
    seen: set[tuple[str, int]] = set()
    for topic, partition, value in items:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"send_offsets_to_transaction(offsets): topic must be a non-empty str, got {topic!r}")
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition <= 0x7FFFFFFF:
            raise ValueError(f"send_offsets_to_transaction(offsets): partition of {topic!r} must be an int >= 0, got "
                             f"{partition!r}")
        metadata: Any = None
        leader_epoch: Any = -1
        offset = value
        if not isinstance(value, int):
            offset = getattr(value, "offset", value)
            metadata = getattr(value, "metadata", None)
            epoch = getattr(value, "leader_epoch", None)
            leader_epoch = -1 if epoch is None else epoch
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"send_offsets_to_transaction(offsets): the offset of {topic}[{partition}] must be an "
                             f"int >= 0 (the next offset to consume), got {offset!r}")
        if metadata is not None and not isinstance(metadata, str):
            raise TypeError(f"send_offsets_to_transaction(offsets): metadata of {topic}[{partition}] must be a str "
                            f"or None, got {metadata!r}")
        if isinstance(leader_epoch, bool) or not isinstance(leader_epoch, int):
            raise TypeError(f"send_offsets_to_transaction(offsets): leader_epoch of {topic}[{partition}] must be "
                            f"an int, got {leader_epoch!r}")
        if (topic, partition) in seen:
            raise ValueError(f"send_offsets_to_transaction(offsets): {topic}[{partition}] is given twice")
        seen.add((topic, partition))
        out.append(_Offset(topic, partition, offset, metadata, leader_epoch))
    return out


def make_group(group_id: Any) -> _Group:
    """send_offsets_to_transaction()'s group: a group id, or a consumer-group metadata object with ``group_id``
    (and, if it has them, ``generation_id``, ``member_id``, ``group_instance_id``, for KIP-447's fencing)."""
    if isinstance(group_id, str):
        if not group_id:
            raise ValueError("send_offsets_to_transaction(group_id): the group id must not be empty")
        return _Group(group_id)
    gid = getattr(group_id, "group_id", None)
    if not isinstance(gid, str) or not gid:
        raise TypeError(f"send_offsets_to_transaction(group_id) must be a group id (str) or an object with a "
                        f"group_id, got {type(group_id).__name__} {group_id!r:.60}")
    generation = getattr(group_id, "generation_id", -1)
    member = getattr(group_id, "member_id", "")
    instance = getattr(group_id, "group_instance_id", None)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise TypeError(f"send_offsets_to_transaction(group_id): generation_id must be an int, got {generation!r}")
    if not isinstance(member, str):
        raise TypeError(f"send_offsets_to_transaction(group_id): member_id must be a str, got {member!r}")
    if instance is not None and not isinstance(instance, str):
        raise TypeError(f"send_offsets_to_transaction(group_id): group_instance_id must be a str or None, got "
                        f"{instance!r}")
    return _Group(gid, generation, member, instance)
