"""The transactional requests and how each answer is handled: Java's TransactionManager.TxnRequestHandler and its
subclasses (FindCoordinatorHandler, InitProducerIdHandler, AddPartitionsToTxnHandler, AddOffsetsToTxnHandler,
TxnOffsetCommitHandler, EndTxnHandler), and the offsets and group that send_offsets_to_transaction() carries.

A TransactionManager queues these and the Sender sends them; each class builds its request's body and, given the
answer under the TransactionManager's lock, decides as Java's handler does what is retried, what makes the
transaction abortable and what is fatal.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kafkaprod import errors
from kafkaprod.protocol.messages import (
    ADD_OFFSETS_TO_TXN, ADD_PARTITIONS_TO_TXN, COORDINATOR_GROUP, COORDINATOR_TRANSACTION, END_TXN,
    FIND_COORDINATOR, INIT_PRODUCER_ID, TXN_OFFSET_COMMIT,
)
from kafkaprod.protocol.schema import Api

if TYPE_CHECKING:
    from kafkaprod.transaction_manager import TransactionManager

log = logging.getLogger("kafkaprod")

E = errors.ErrorCode
FENCED = frozenset({E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH})
COORDINATOR_MOVED = frozenset({E.COORDINATOR_NOT_AVAILABLE, E.NOT_COORDINATOR})
# The coordinator no longer knows this producer id: the transaction can be aborted and the epoch bumped.
PRODUCER_ID_LOST = frozenset({E.UNKNOWN_PRODUCER_ID, E.INVALID_PRODUCER_ID_MAPPING})
# Java's ADD_PARTITIONS_RETRY_BACKOFF_MS: the coordinator answers CONCURRENT_TRANSACTIONS while it still writes the
# markers of the previous transaction, which takes a few milliseconds.
_CONCURRENT_TRANSACTIONS_BACKOFF = 0.02


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

class TxnRequest:
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
        self.tm.enqueue(self, self.tm.retry_backoff if backoff is None else backoff)

    def find_coordinator_and_retry(self) -> None:
        self.tm.lookup_coordinator(self.coordinator_type, self.coordinator_key)
        self.retry()

    def fatal(self, err: errors.KafkaError) -> None:
        self.tm.transition_to_fatal_error(err)

    def fenced(self) -> None:
        self.fatal(self.tm.fenced_error())

    def abortable(self, err: errors.KafkaError, bump_epoch: bool = False) -> None:
        tm = self.tm
        if bump_epoch:
            tm.epoch_bump_required = True
        self.result.done(tm.abortable_error(err))
        tm.transition_to_abortable_error(err)

    def unexpected(self, err: errors.KafkaError) -> None:
        # Java makes any error its handler does not list fatal; one a retry may get past is retried here instead.
        if err.retriable:
            self.retry()
        else:
            self.fatal(err)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class FindCoordinatorRequest(TxnRequest):
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
            self.tm.set_coordinator(self.key_type, self.key, (body["node_id"], body["host"], body["port"]))
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
            self.fatal(errors.KafkaError(f"could not find the {coordinator_kind(self.key_type)} coordinator for "
                                         f"{self.key!r}: {err}"))

    def __repr__(self) -> str:
        return f"<FindCoordinator {coordinator_kind(self.key_type)} {self.key!r}>"


class InitProducerIdRequest(TxnRequest):

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
            tm.producer_id_ready()
            self.result.done()
            return
        err = errors.broker_error(code)
        if code in COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in FENCED:
            self.fenced()
        elif code == E.TRANSACTION_ABORTABLE:
            self.abortable(err)
        else:
            self.unexpected(err)  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TRANSACTION_TIMEOUT: fatal


class AddPartitionsRequest(TxnRequest):
    priority = 2

    def __init__(self, tm: TransactionManager, partitions: list[tuple[str, int]]) -> None:
        super().__init__(tm, ADD_PARTITIONS_TO_TXN)
        self.partitions = partitions

    def body(self) -> dict[str, Any]:
        acc = self.tm.acc
        return {"v3_and_below_transactional_id": self.tm.transactional_id,
                "v3_and_below_producer_id": acc.producer_id,
                "v3_and_below_producer_epoch": acc.producer_epoch,
                "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in by_topic(self.partitions)]}

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
                if code in COORDINATOR_MOVED:
                    self.find_coordinator_and_retry()
                    return
                if code == E.CONCURRENT_TRANSACTIONS:
                    self.retry(min(self.tm.retry_backoff, _CONCURRENT_TRANSACTIONS_BACKOFF))
                    return
                if code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.UNKNOWN_TOPIC_OR_PARTITION):
                    self.retry()
                    return
                if code in FENCED:
                    self.fenced()
                    return
                if code in (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.INVALID_TXN_STATE):
                    self.fatal(err)
                    return
                if code in PRODUCER_ID_LOST:
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
            self.tm.partitions_added(self.partitions)
            self.result.done()

    def __repr__(self) -> str:
        return f"<AddPartitionsToTxn {self.partitions}>"


class AddOffsetsRequest(TxnRequest):
    priority = 2

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, offsets: list[Offset],
                 group: Group) -> None:
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
            tm.transaction_started = True
            tm.enqueue(TxnOffsetCommitRequest(tm, self.result, self.offsets, self.group), 0.0)
            return
        err = errors.broker_error(code, f"group {self.group.group_id!r}")
        if code in COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in PRODUCER_ID_LOST:
            self.abortable(err, bump_epoch=True)
        elif code in FENCED:
            self.fenced()
        elif code in (E.GROUP_AUTHORIZATION_FAILED, E.TRANSACTION_ABORTABLE):
            self.abortable(err)
        else:
            self.unexpected(err)  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED: fatal


class TxnOffsetCommitRequest(TxnRequest):
    priority = 2
    coordinator_type = COORDINATOR_GROUP

    def __init__(self, tm: TransactionManager, result: TransactionalRequestResult, offsets: list[Offset],
                 group: Group) -> None:
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
                if code in (*COORDINATOR_MOVED, E.REQUEST_TIMED_OUT):
                    retry = True
                    if not self.coordinator_reloaded:
                        self.coordinator_reloaded = True
                        self.tm.lookup_coordinator(COORDINATOR_GROUP, self.group.group_id)
                elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.UNKNOWN_TOPIC_OR_PARTITION):
                    retry = True
                elif code in FENCED:
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


class EndTxnRequest(TxnRequest):
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
            tm.complete_transaction(self.result)
            return
        err = errors.broker_error(code)
        if code in COORDINATOR_MOVED:
            self.find_coordinator_and_retry()
        elif code in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS):
            self.retry()
        elif code in FENCED:
            self.fenced()
        elif code in (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.INVALID_TXN_STATE):
            self.fatal(err)
        elif code in PRODUCER_ID_LOST:
            if self.commit:
                self.abortable(err, bump_epoch=True)
            else:
                tm.epoch_bump_required = True
                tm.complete_transaction(self.result)
        elif code == E.TRANSACTION_ABORTABLE and self.commit:
            self.abortable(err)
        elif not self.commit:
            # An abort must get through: anything else short of fatal is tried again.
            self.retry()
        else:
            self.unexpected(err)

    def __repr__(self) -> str:
        return f"<EndTxn {'commit' if self.commit else 'abort'}>"


class Offset:
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


class Group:
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


def coordinator_kind(key_type: int | None) -> str:
    return "transaction" if key_type == COORDINATOR_TRANSACTION else "group"


def by_topic(partitions: Iterable[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    out: dict[str, list[int]] = {}
    for topic, p in partitions:
        if p not in out.setdefault(topic, []):
            out[topic].append(p)
    return [(t, sorted(ps)) for t, ps in out.items()]


def make_offsets(offsets: Any) -> list[Offset]:
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
    out: list[Offset] = []
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
        out.append(Offset(topic, partition, offset, metadata, leader_epoch))
    return out


def make_group(group_id: Any) -> Group:
    """send_offsets_to_transaction()'s group: a group id, or a consumer-group metadata object with ``group_id``
    (and, if it has them, ``generation_id``, ``member_id``, ``group_instance_id``, for KIP-447's fencing)."""
    if isinstance(group_id, str):
        if not group_id:
            raise ValueError("send_offsets_to_transaction(group_id): the group id must not be empty")
        return Group(group_id)
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
    return Group(gid, generation, member, instance)
