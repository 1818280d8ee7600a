"""Transactions (Java's transactional producer API), against the three reference peers and a fake network.

- noida-db hides aborted records from read_committed readers, keeps transactional offsets on the group and fences
  zombies: what a transaction commits is read exactly once, what it aborts never.
- Tansu: transactions, offsets and fencing; it does not filter aborted records for read_committed readers (its
  fetch sends no aborted-transactions list), so nothing here asserts that on it.
- librdkafka's mock cluster checks sequences for transactional producers and takes injected errors on every
  transactional API: each error ends in the state Java's TransactionManager specifies (retried, abortable or
  fatal). It neither stores TxnOffsetCommit offsets nor fences.
- A fake network client (test_sender's) shows the order of requests within one Sender loop.

Every reader is confluent-kafka's Consumer with isolation.level=read_committed. Waits have generous limits only so
that a broken producer fails a test instead of hanging it; nothing is timed.
"""
from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from kafkaprod import KafkaProducer
from kafkaprod import config as _config
from kafkaprod._native.accumulator import RecordAccumulator
from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod.errors import (
    ErrorCode, GroupAuthorizationFailedError, InvalidRecordError, InvalidTransactionTimeoutError,
    InvalidTxnStateError, KafkaError, KafkaTimeoutError,
    ProducerClosedError, ProducerFencedError, TopicAuthorizationFailedError, TransactionAbortableError,
    TransactionAbortedError, TransactionalIdAuthorizationFailedError, TransactionStateError, UnknownMemberIdError,
    UnknownProducerIdError,
)
from kafkaprod.metadata import Metadata
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.protocol.messages import (
    ADD_OFFSETS_TO_TXN, ADD_PARTITIONS_TO_TXN, END_TXN, FIND_COORDINATOR, INIT_PRODUCER_ID, METADATA, PRODUCE,
    TXN_OFFSET_COMMIT,
)
from kafkaprod.sender import Sender
from kafkaprod.transaction_manager import State

from mock_cluster import MockCluster
from producer_support import FAST, SENTINEL, WAIT_S
from test_sender import TOPIC, FakeClient, Request, metadata_body, on_wire, produce_body

E = ErrorCode
KEY = {"FindCoordinator": 10, "InitProducerId": 22, "AddPartitionsToTxn": 24, "AddOffsetsToTxn": 25, "EndTxn": 26,
       "TxnOffsetCommit": 28, "Produce": 0}


def txn_producer(bootstrap: str, transactional_id: str | None = None, **options: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap, transactional_id=transactional_id or f"txn-{uuid.uuid4().hex[:10]}",
                         **{**FAST, **options})


# ---- readers ----------------------------------------------------------------------------------------------------

def read_committed(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes | None]]:
    """Every value a read_committed reader sees in the topic, per partition in offset order.

    A non-transactional marker is appended to each partition after the producers under test finished; the
    reader reads up to it, so a record seen twice fails as surely as one missing -- and since a read_committed
    reader stops at the first open transaction, reaching the markers also proves no transaction was left open.
    """
    marker = Producer({"bootstrap.servers": bootstrap, "enable.metrics.push": False, "acks": "all", "linger.ms": 0})
    delivered: list[Any] = []
    for p in range(partitions):
        marker.produce(topic, SENTINEL, partition=p, on_delivery=lambda err, _msg: delivered.append(err))
    assert marker.flush(WAIT_S) == 0 and delivered == [None] * partitions, delivered
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafkaprod-txn-tests-unused",
                         "enable.auto.commit": False, "enable.metrics.push": False,
                         "isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out: dict[int, list[bytes | None]] = {p: [] for p in range(partitions)}
        ended: set[int] = set()
        empty = 0
        while len(ended) < partitions:
            message = consumer.poll(1.0)
            if message is None:
                empty += 1
                assert empty < WAIT_S, f"read {out}, then nothing; partitions {sorted(ended)} reached their marker"
                continue
            assert message.error() is None, message.error()
            if message.partition() in ended:
                continue
            if message.value() == SENTINEL:
                ended.add(message.partition())
            else:
                out[message.partition()].append(message.value())
        return out
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets (OffsetFetch, by confluent-kafka's consumer); -1001 where there is none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "enable.metrics.push": False})
    try:
        got = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=WAIT_S)
        return {(tp.topic, tp.partition): tp.offset for tp in got}
    finally:
        consumer.close()


def send_until_refused(p: KafkaProducer, topic: str, vals: list[bytes], partitions: int | None = None,
                       refused: type[Exception] = Exception) -> list:
    """Sends vals (round-robin over partitions if given) until a send() raises `refused` -- as every send() does
    once the transaction failed -- and returns the futures of those sent."""
    futures = []
    for i, v in enumerate(vals):
        try:
            futures.append(p.send(topic, v, partition=None if partitions is None else i % partitions))
        except refused:
            break
    return futures


def values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def flat(by_partition: dict[int, list[bytes | None]]) -> list[bytes | None]:
    return [v for p in sorted(by_partition) for v in by_partition[p]]


# ---- options and calls out of order (any peer: the mock) ---------------------------------------------------------

def test_transactional_id_implies_idempotence_and_acks_all_and_refuses_options_against_it():
    cfg = _config.resolve(config={"transactional.id": "t1", "transaction.timeout.ms": 9000})
    assert (cfg.transactional_id, cfg.transaction_timeout_ms, cfg.enable_idempotence, cfg.acks) == ("t1", 9000, True,
                                                                                                    -1)
    with pytest.raises(ValueError, match="transactional_id.*acks"):
        _config.resolve(transactional_id="t1", acks=1)
    with pytest.raises(ValueError, match="transactional_id.*enable_idempotence=False"):
        _config.resolve(transactional_id="t1", enable_idempotence=False)
    with pytest.raises(ValueError, match="transactional_id.*max_in_flight"):
        _config.resolve(transactional_id="t1", max_in_flight_requests_per_connection=6)
    with pytest.raises(ValueError, match="non-empty"):
        _config.resolve(transactional_id="")


def test_calls_out_of_order_raise_naming_the_call_expected(mock_cluster, mock_topic):
    topic = mock_topic(2)
    with txn_producer(mock_cluster.bootstrap_servers) as p:
        with pytest.raises(TransactionStateError, match=r"begin_transaction\(\) .*call init_transactions\(\) first"):
            p.begin_transaction()
        with pytest.raises(TransactionStateError, match=r"send\(\) .*call init_transactions\(\) first"):
            p.send(topic, b"v")
        p.init_transactions()
        with pytest.raises(TransactionStateError, match=r"init_transactions\(\) in state READY"):
            p.init_transactions()
        for call in (p.commit_transaction, p.abort_transaction):
            with pytest.raises(TransactionStateError, match=r"call begin_transaction\(\) first"):
                call()
        with pytest.raises(TransactionStateError, match=r"call begin_transaction\(\) first"):
            p.send_offsets_to_transaction({(topic, 0): 1}, "g")
        # send() and send_batch() outside a transaction raise at once, even for a topic never seen
        for send in (lambda: p.send("never-seen", b"v"), lambda: p.send_batch(topic, [b"a"])):
            with pytest.raises(TransactionStateError, match=r"call begin_transaction\(\) first"):
                send()
        p.begin_transaction()
        with pytest.raises(TransactionStateError, match=r"commit_transaction\(\) or abort_transaction\(\)"):
            p.begin_transaction()
        p.send(topic, b"in")
        p.commit_transaction()
        with pytest.raises(TransactionStateError, match=r"send\(\) .*call begin_transaction\(\) first"):
            p.send(topic, b"after")
    with pytest.raises(ProducerClosedError):
        p.begin_transaction()


def test_transactional_calls_on_a_producer_without_transactional_id_name_the_option(mock_cluster):
    with KafkaProducer(mock_cluster.bootstrap_servers, **FAST) as p:
        for call in (p.init_transactions, p.begin_transaction, p.commit_transaction, p.abort_transaction):
            with pytest.raises(TransactionStateError, match="transactional_id"):
                call()


def test_send_offsets_arguments_are_checked_before_anything_is_sent(mock_cluster, mock_topic):
    topic = mock_topic(1)
    with txn_producer(mock_cluster.bootstrap_servers) as p:
        p.init_transactions()
        p.begin_transaction()
        with pytest.raises(TypeError, match="(topic, partition)"):
            p.send_offsets_to_transaction({topic: 3}, "g")
        with pytest.raises(ValueError, match="offset .* must be an int >= 0"):
            p.send_offsets_to_transaction({(topic, 0): -1}, "g")
        with pytest.raises(TypeError, match="group_id"):
            p.send_offsets_to_transaction({(topic, 0): 1}, 42)
        p.send_offsets_to_transaction({}, "g")  # nothing to send: nothing happens
        p.abort_transaction()


def test_a_refused_transactional_call_leaves_the_transaction_where_it_was(mock_cluster, mock_topic):
    # A bad timeout, or a call from a producer callback (it would wait for the thread running it), is refused
    # before the call changes anything: the transaction is still open and can be committed.
    topic = mock_topic(1)
    with txn_producer(mock_cluster.bootstrap_servers) as p:
        p.init_transactions()
        p.begin_transaction()
        with pytest.raises(ValueError, match=r"commit_transaction\(timeout\): timeout must be >= 0"):
            p.commit_transaction(timeout=-1)
        with pytest.raises(TypeError, match=r"send_offsets_to_transaction\(timeout\)"):
            p.send_offsets_to_transaction({(topic, 0): 1}, "g", timeout="soon")
        refused = []
        called = threading.Event()

        def commit_from_callback(metadata, exc):
            try:
                p.commit_transaction()
            except KafkaError as err:
                refused.append(err)
            finally:
                called.set()

        p.send(topic, b"in", callback=commit_from_callback)
        p.flush()
        assert called.wait(WAIT_S)
        assert len(refused) == 1 and "from a producer callback" in str(refused[0])
        assert p._txn.state is State.IN_TRANSACTION
        p.commit_transaction()
        assert p._txn.state is State.READY


# ---- noida-db: what read_committed readers see, offsets, fencing --------------------------------------------------

def test_committed_records_are_read_once_and_aborted_ones_never(noida, noida_topic):
    """Several transactions over four partitions, send() and send_batch() in each; every other one aborted after
    its records were written (flush), so the reader must skip them in the log."""
    partitions = 4
    topic = noida_topic(partitions)
    expected: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    with txn_producer(noida.bootstrap_servers) as p:
        p.init_transactions()
        for txn in range(6):
            commit = txn % 2 == 0
            p.begin_transaction()
            sent = [(v, p.send(topic, v, partition=i % partitions)) for i, v in enumerate(values(f"t{txn}-send", 40))]
            batch = values(f"t{txn}-batch", 200)
            batch_partition = txn % partitions
            batch_future = p.send_batch(topic, batch, partition=batch_partition)
            p.flush()  # written to the log, committed or not
            if commit:
                p.commit_transaction()
                for v, f in sent:
                    expected[f.get(WAIT_S).partition].append(v)
                expected[batch_partition].extend(batch)
                assert len(batch_future.get(WAIT_S)) == len(batch)
            else:
                p.abort_transaction()

    seen = read_committed(noida.bootstrap_servers, topic, partitions)

    assert seen == expected
    assert not any(v.startswith(b"t1") or v.startswith(b"t3") or v.startswith(b"t5") for v in flat(seen))


def test_abort_fails_records_never_sent_and_the_reader_sees_none_of_the_transaction(noida, noida_topic):
    topic = noida_topic(2)
    with txn_producer(noida.bootstrap_servers, linger_ms=60_000, batch_size=1_000_000) as p:
        p.init_transactions()
        p.begin_transaction()
        queued = [p.send(topic, v, partition=0) for v in values("queued", 50)]  # held back by linger
        p.abort_transaction()
        for f in queued:
            with pytest.raises(TransactionAbortedError):
                f.get(WAIT_S)
        p.begin_transaction()
        kept = [p.send(topic, v, partition=1) for v in values("kept", 5)]
        p.commit_transaction()  # commit flushes: linger does not hold it back
        assert [f.get(0).partition for f in kept] == [1] * 5

    assert read_committed(noida.bootstrap_servers, topic, 2) == {0: [], 1: values("kept", 5)}


@pytest.mark.parametrize("broker", ["noida", "tansu"])
def test_offsets_sent_in_a_transaction_are_on_the_group_after_commit_and_absent_after_abort(broker, request):
    peer = request.getfixturevalue(broker)
    source = f"in-{uuid.uuid4().hex[:10]}"
    out = f"out-{uuid.uuid4().hex[:10]}"
    peer.create_topics({source: 2, out: 1})
    committed_group, aborted_group = f"g-commit-{uuid.uuid4().hex[:8]}", f"g-abort-{uuid.uuid4().hex[:8]}"

    class GroupMetadata:  # a consumer-group metadata object, as Java's ConsumerGroupMetadata
        group_id = aborted_group
        generation_id = -1
        member_id = ""
        group_instance_id = None

    with txn_producer(peer.bootstrap_servers) as p:
        p.init_transactions()
        p.begin_transaction()
        p.send(out, b"with-offsets")
        p.send_offsets_to_transaction({(source, 0): 7, (source, 1): 3}, committed_group)
        p.commit_transaction()

        p.begin_transaction()
        p.send(out, b"aborted")
        p.send_offsets_to_transaction([TopicPartition(source, 0, 99)], GroupMetadata())
        p.abort_transaction()

    tps = [(source, 0), (source, 1)]
    assert committed_offsets(peer.bootstrap_servers, committed_group, tps) == {(source, 0): 7, (source, 1): 3}
    assert committed_offsets(peer.bootstrap_servers, aborted_group, tps) == {(source, 0): -1001, (source, 1): -1001}


@pytest.mark.parametrize("broker", ["noida", "tansu"])
def test_a_zombie_is_fenced_by_a_new_instance_and_commits_nothing(broker, request):
    peer = request.getfixturevalue(broker)
    topic, source = f"z-{uuid.uuid4().hex[:10]}", f"zin-{uuid.uuid4().hex[:10]}"
    peer.create_topics({topic: 2, source: 1})
    group = f"zg-{uuid.uuid4().hex[:8]}"
    transactional_id = f"zombie-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(peer.bootstrap_servers, transactional_id)
    successor = txn_producer(peer.bootstrap_servers, transactional_id)
    try:
        zombie.init_transactions()
        zombie.begin_transaction()
        written = [zombie.send(topic, v, partition=0) for v in values("zombie-written", 10)]
        zombie.send_offsets_to_transaction({(source, 0): 5}, group)
        zombie.flush()
        assert all(f.get(0).offset >= 0 for f in written)

        successor.init_transactions()  # the same transactional id: the zombie's epoch is fenced

        # The first of these adds partition 1 to the transaction: the answer fences the zombie, and every send()
        # after that raises at once.
        pending = send_until_refused(zombie, topic, values("zombie-pending", 10), refused=ProducerFencedError)
        with pytest.raises(ProducerFencedError):
            zombie.commit_transaction()
        for f in pending:
            with pytest.raises(ProducerFencedError):
                f.get(WAIT_S)
        for call in (zombie.begin_transaction, zombie.abort_transaction, zombie.commit_transaction):
            with pytest.raises(ProducerFencedError):
                call()
        with pytest.raises(ProducerFencedError):
            zombie.send(topic, b"after")

        successor.begin_transaction()
        successor.send(topic, b"successor", partition=1)
        successor.commit_transaction()
    finally:
        zombie.close()
        successor.close()

    assert committed_offsets(peer.bootstrap_servers, group, [(source, 0)]) == {(source, 0): -1001}
    seen = read_committed(peer.bootstrap_servers, topic, 2)
    assert seen[1] == [b"successor"]  # nothing the zombie sent after it was fenced reached the log
    if broker == "noida":  # Tansu does not hide aborted records from read_committed readers
        assert seen[0] == []


def test_close_aborts_an_open_transaction(noida, noida_topic):
    topic = noida_topic(1)
    p = txn_producer(noida.bootstrap_servers)
    p.init_transactions()
    p.begin_transaction()
    futures = [p.send(topic, v) for v in values("open-at-close", 20)]
    p.flush()
    p.close()
    assert all(f.get(0).offset >= 0 for f in futures)  # written, then aborted with the transaction

    assert read_committed(noida.bootstrap_servers, topic, 1) == {0: []}


# ---- the mock: injected errors end in Java's state --------------------------------------------------------------

def mock_producer(cluster: MockCluster, **options: Any) -> KafkaProducer:
    return txn_producer(cluster.bootstrap_servers, **options)


def one_transaction(p: KafkaProducer, topic: str, prefix: str, n: int = 20, partitions: int = 3) -> list:
    p.begin_transaction()
    futures = [p.send(topic, v, partition=i % partitions) for i, v in enumerate(values(prefix, n))]
    p.commit_transaction()
    return futures


RETRIED = [E.COORDINATOR_NOT_AVAILABLE, E.NOT_COORDINATOR, E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS]


@pytest.mark.parametrize("api", ["FindCoordinator", "InitProducerId"])
def test_init_transactions_retries_coordinator_errors(mock_cluster, mock_topic, api):
    topic = mock_topic(3)
    codes = [E.COORDINATOR_NOT_AVAILABLE] * 3 if api == "FindCoordinator" else RETRIED
    mock_cluster.start_request_tracking()
    mock_cluster.push_request_errors(KEY[api], codes)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        assert p._txn.state is State.READY
        futures = one_transaction(p, topic, "after-init-errors")
        assert all(f.get(0).offset >= 0 for f in futures)
    finds = mock_cluster.requests(KEY["FindCoordinator"])
    if api == "InitProducerId":
        # NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE each send the producer back to FindCoordinator
        assert len(finds) >= 3
        assert len(mock_cluster.requests(KEY["InitProducerId"])) == 1 + len(codes)
    else:
        assert len(finds) >= 1 + len(codes)


@pytest.mark.parametrize("api, code, error", [
    ("FindCoordinator", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TransactionalIdAuthorizationFailedError),
    ("InitProducerId", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TransactionalIdAuthorizationFailedError),
    ("InitProducerId", E.PRODUCER_FENCED, ProducerFencedError),
    ("InitProducerId", E.INVALID_PRODUCER_EPOCH, ProducerFencedError),
    ("InitProducerId", E.INVALID_TRANSACTION_TIMEOUT, InvalidTransactionTimeoutError),
])
def test_init_transactions_fatal_errors_stop_the_producer(mock_cluster, mock_topic, api, code, error):
    topic = mock_topic(1)
    mock_cluster.push_request_errors(KEY[api], [code])
    with mock_producer(mock_cluster) as p:
        with pytest.raises(error):
            p.init_transactions()
        assert p._txn.state is State.FATAL_ERROR
        for call in (p.init_transactions, p.begin_transaction, p.abort_transaction):
            with pytest.raises(error):
                call()
        with pytest.raises(error):
            p.send(topic, b"v")


@pytest.mark.parametrize("code", [*RETRIED, E.UNKNOWN_TOPIC_OR_PARTITION])
def test_add_partitions_retriable_errors_are_retried_and_the_transaction_commits(mock_cluster, mock_topic, code):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        mock_cluster.push_request_errors(KEY["AddPartitionsToTxn"], [code, code])
        futures = one_transaction(p, topic, "retried")
        assert sorted(f.get(0).partition for f in futures) == sorted(i % 3 for i in range(20))
        futures = one_transaction(p, topic, "next")  # and the producer goes on
        assert all(f.get(0).offset >= 0 for f in futures)


@pytest.mark.parametrize("api", ["AddPartitionsToTxn", "AddOffsetsToTxn", "TxnOffsetCommit", "EndTxn", "Produce"])
@pytest.mark.parametrize("code", [E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH])
def test_fencing_on_any_request_fails_every_pending_record_and_every_later_call(mock_cluster, mock_topic, api, code):
    topic = mock_topic(3)
    with mock_producer(mock_cluster, linger_ms=0) as p:
        p.init_transactions()
        p.begin_transaction()
        mock_cluster.push_request_errors(KEY[api], [code])
        futures = send_until_refused(p, topic, values("fenced", 30), 3, ProducerFencedError)
        with pytest.raises(ProducerFencedError):
            p.send_offsets_to_transaction({(topic, 0): 1}, "grp")
            p.commit_transaction()
        assert p._txn.state is State.FATAL_ERROR
        # Every record is either written (before the fencing) or fails with ProducerFencedError; none waits.
        outcomes = [type(f.exception(WAIT_S)) for f in futures]
        assert set(outcomes) <= {type(None), ProducerFencedError}, outcomes
        if api == "AddPartitionsToTxn":  # fenced before any record could be sent
            assert set(outcomes) == {ProducerFencedError}
        if api == "Produce":
            assert ProducerFencedError in outcomes
        for call in (p.begin_transaction, p.commit_transaction, p.abort_transaction):
            with pytest.raises(ProducerFencedError):
                call()
        with pytest.raises(ProducerFencedError):
            p.send(topic, b"later")


@pytest.mark.parametrize("api, code, cause", [
    ("AddPartitionsToTxn", E.TOPIC_AUTHORIZATION_FAILED, TopicAuthorizationFailedError),
    ("AddPartitionsToTxn", E.UNKNOWN_PRODUCER_ID, UnknownProducerIdError),
    ("Produce", E.INVALID_RECORD, InvalidRecordError),
    ("EndTxn", E.UNKNOWN_PRODUCER_ID, UnknownProducerIdError),
])
def test_an_abortable_error_fails_the_commit_and_abort_lets_the_producer_go_on(mock_cluster, mock_topic, api, code,
                                                                                cause):
    topic = mock_topic(3)
    with mock_producer(mock_cluster, linger_ms=0) as p:
        p.init_transactions()
        epoch = p._accumulator.producer_epoch
        p.begin_transaction()
        mock_cluster.push_request_errors(KEY[api], [code])
        futures = send_until_refused(p, topic, values("doomed", 30), 3, TransactionAbortableError)
        with pytest.raises(TransactionAbortableError) as raised:
            p.commit_transaction()
        assert isinstance(raised.value.__cause__, cause)
        assert p._txn.state is State.ABORTABLE_ERROR
        failed = sum(1 for f in futures if f.exception(WAIT_S) is not None)
        if api == "EndTxn":
            assert failed == 0  # written; the transaction failed only at its end
        elif api == "AddPartitionsToTxn":
            assert failed == len(futures)  # none of them could be sent
        else:
            assert failed > 0
        for call in (p.commit_transaction, p.begin_transaction):
            with pytest.raises(TransactionAbortableError):
                call()
        with pytest.raises(TransactionAbortableError):
            p.send(topic, b"refused")
        p.abort_transaction()
        assert p._txn.state is State.READY
        if code in (E.UNKNOWN_PRODUCER_ID, E.INVALID_RECORD):
            # The sequences broke (or the coordinator lost the producer): the epoch was bumped (KIP-360). The mock
            # checks sequences for transactional producers, so the next transaction proves the restart right.
            assert p._accumulator.producer_epoch == epoch + 1
        futures = one_transaction(p, topic, "after")
        assert all(f.get(0).offset >= 0 for f in futures)


def test_a_batch_refused_in_a_transaction_bumps_the_epoch_and_the_sequences_restart(mock_cluster, mock_topic):
    topic = mock_topic(1)
    with mock_producer(mock_cluster, linger_ms=0) as p:
        p.init_transactions()
        for txn in range(2):
            one_transaction(p, topic, f"ok{txn}", partitions=1)
        mock_cluster.push_request_errors(KEY["Produce"], [E.OUT_OF_ORDER_SEQUENCE_NUMBER])
        p.begin_transaction()
        doomed = p.send(topic, b"doomed", partition=0)
        with pytest.raises(TransactionAbortableError):
            p.commit_transaction()
        assert doomed.exception(WAIT_S) is not None
        p.abort_transaction()
        futures = [f for txn in range(3) for f in one_transaction(p, topic, f"after{txn}", partitions=1)]
        assert all(f.get(0).offset >= 0 for f in futures)


@pytest.mark.parametrize("api, code", [
    *[("AddOffsetsToTxn", code) for code in RETRIED],
    *[("TxnOffsetCommit", code) for code in (E.COORDINATOR_NOT_AVAILABLE, E.NOT_COORDINATOR,
                                             E.COORDINATOR_LOAD_IN_PROGRESS, E.UNKNOWN_TOPIC_OR_PARTITION,
                                             E.REQUEST_TIMED_OUT)],
])
def test_offsets_requests_retry_retriable_errors(mock_cluster, mock_topic, api, code):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"v")
        mock_cluster.push_request_errors(KEY[api], [code, code])
        p.send_offsets_to_transaction({(topic, 0): 11}, "grp")
        p.commit_transaction()


@pytest.mark.parametrize("api, code, cause", [
    ("AddOffsetsToTxn", E.GROUP_AUTHORIZATION_FAILED, GroupAuthorizationFailedError),
    ("TxnOffsetCommit", E.GROUP_AUTHORIZATION_FAILED, GroupAuthorizationFailedError),
    ("TxnOffsetCommit", E.UNKNOWN_MEMBER_ID, UnknownMemberIdError),
])
def test_offsets_abortable_errors(mock_cluster, mock_topic, api, code, cause):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"v")
        mock_cluster.push_request_errors(KEY[api], [code])
        with pytest.raises(TransactionAbortableError) as raised:
            p.send_offsets_to_transaction({(topic, 0): 11}, "grp")
        assert isinstance(raised.value.__cause__, cause)
        assert p._txn.state is State.ABORTABLE_ERROR
        with pytest.raises(TransactionAbortableError):
            p.commit_transaction()
        p.abort_transaction()
        one_transaction(p, topic, "after")


@pytest.mark.parametrize("code", RETRIED)
def test_end_txn_retriable_errors_are_retried_and_the_records_are_committed_once(mock_cluster, mock_topic, code):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        mock_cluster.start_request_tracking()
        mock_cluster.push_request_errors(KEY["EndTxn"], [code, code])
        futures = one_transaction(p, topic, "committed")
        assert len({(f.get(0).partition, f.get(0).offset) for f in futures}) == 20
        assert len(mock_cluster.requests(KEY["EndTxn"])) == 3
        one_transaction(p, topic, "next")


@pytest.mark.parametrize("code, error", [(E.INVALID_TXN_STATE, InvalidTxnStateError),
                                         (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                          TransactionalIdAuthorizationFailedError)])
def test_end_txn_fatal_errors(mock_cluster, mock_topic, code, error):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        mock_cluster.push_request_errors(KEY["EndTxn"], [code])
        with pytest.raises(error):
            one_transaction(p, topic, "v")
        assert p._txn.state is State.FATAL_ERROR
        with pytest.raises(error):
            p.begin_transaction()


def test_abort_retries_end_txn_until_it_gets_through(mock_cluster, mock_topic):
    topic = mock_topic(3)
    with mock_producer(mock_cluster) as p:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"v")
        p.flush()
        mock_cluster.push_request_errors(KEY["EndTxn"], [E.COORDINATOR_NOT_AVAILABLE, E.NOT_COORDINATOR,
                                                         E.CONCURRENT_TRANSACTIONS, E.UNKNOWN_SERVER_ERROR])
        p.abort_transaction()
        one_transaction(p, topic, "next")


# ---- timeouts leave the call retryable ---------------------------------------------------------------------------

def test_a_timed_out_init_transactions_goes_on_and_the_same_call_waits_for_it(mock_cluster, mock_topic):
    topic = mock_topic(1)
    mock_cluster.push_request_errors(KEY["InitProducerId"], [E.COORDINATOR_LOAD_IN_PROGRESS] * 20)
    with mock_producer(mock_cluster, retry_backoff_ms=50) as p:
        with pytest.raises(KafkaTimeoutError, match=r"call init_transactions\(\) again"):
            p.init_transactions(timeout=0.05)
        with pytest.raises(TransactionStateError, match=r"init_transactions\(\) .*in progress"):
            p.begin_transaction()
        p.init_transactions()
        one_transaction(p, topic, "v", partitions=1)


def test_a_timed_out_commit_goes_on_and_the_same_call_waits_for_it(mock_cluster, mock_topic):
    topic = mock_topic(3)
    with mock_producer(mock_cluster, retry_backoff_ms=50) as p:
        p.init_transactions()
        p.begin_transaction()
        futures = [p.send(topic, v, partition=i % 3) for i, v in enumerate(values("slow", 12))]
        mock_cluster.push_request_errors(KEY["EndTxn"], [E.CONCURRENT_TRANSACTIONS] * 20)
        with pytest.raises(KafkaTimeoutError, match=r"call commit_transaction\(\) again"):
            p.commit_transaction(timeout=0.05)
        with pytest.raises(TransactionStateError, match=r"commit_transaction\(\) .*in progress"):
            p.abort_transaction()
        with pytest.raises(TransactionStateError):
            p.send(topic, b"during the commit")
        p.commit_transaction()
        assert all(f.get(0).offset >= 0 for f in futures)
        one_transaction(p, topic, "next")


# ---- the order of requests, one Sender loop at a time (fake network) ---------------------------------------------

class TxnHarness:
    """A transactional Sender on the fake client of test_sender; each run() is one loop."""

    def __init__(self, **options: Any) -> None:
        cfg = _config.resolve(bootstrap_servers="bootstrap:9092", linger_ms=0, retry_backoff_ms=0,
                              transactional_id="tx", **options)
        self.client = FakeClient()
        self.pool = BufferPool(cfg.buffer_memory, cfg.batch_size)
        self.metadata = Metadata(cfg.bootstrap_servers, cfg.retry_backoff_ms, cfg.metadata_max_age_ms)
        self.acc = RecordAccumulator(self.pool, cfg.batch_size, 0, cfg.linger_ms, cfg.retry_backoff_ms,
                                     cfg.delivery_timeout_ms, cfg.max_block_ms, True, self.client.wakeup,
                                     cfg.max_request_size, True)
        self.sender = Sender(self.client, self.metadata, self.acc, cfg, ProducerMetrics(self.pool))
        self.tm = self.sender.tm
        assert self.tm is not None
        self.metadata.add_topic(TOPIC)
        [md] = self.run()
        md.answer(metadata_body({0: 0, 1: 1}))

    def run(self) -> list[Request]:
        before = len(self.client.sent)
        self.sender.run_once()
        return self.client.sent[before:]

    def only(self, api) -> Request:
        sent = self.run()
        assert [r.api for r in sent] == [api], [r.api.name for r in sent]
        return sent[0]

    def init(self) -> None:
        result = self.tm.initialize_transactions()
        self.only(FIND_COORDINATOR).answer({"error_code": 0, "node_id": 1, "host": "broker1", "port": 9092})
        init = self.only(INIT_PRODUCER_ID)
        assert (init.node, init.body["transactional_id"]) == (1, "tx")
        init.answer({"error_code": 0, "producer_id": 7, "producer_epoch": 3})
        assert result.wait(0) and result.error is None

    def append(self, partition: int, n: int = 1) -> list:
        return [self.acc.append(TOPIC, partition, None, b"v", None, None, None) for _ in range(n)]


def add_partitions_answer(request: Request, code: int = 0) -> dict:
    return {"results_by_topic_v3_and_below": [
        {"name": t["name"], "results_by_partition": [{"partition_index": p, "partition_error_code": code}
                                                     for p in t["partitions"]]}
        for t in request.body["v3_and_below_topics"]]}


def test_a_partition_is_added_to_the_transaction_before_its_first_batch_is_sent():
    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    h.append(0)
    h.append(1)
    assert h.run() == []  # ready() found both partitions outside the transaction: nothing drains
    add = h.only(ADD_PARTITIONS_TO_TXN)  # one request for both, to the transaction coordinator
    assert add.node == 1
    assert add.body["v3_and_below_topics"] == [{"name": TOPIC, "partitions": [0, 1]}]
    assert (add.body["v3_and_below_producer_id"], add.body["v3_and_below_producer_epoch"]) == (7, 3)
    assert h.run() == []  # still not added
    add.answer(add_partitions_answer(add))
    produces = h.run()
    assert sorted(r.node for r in produces) == [0, 1] and {r.api for r in produces} == {PRODUCE}
    for r in produces:
        assert r.body["transactional_id"] == "tx"
        for pid, epoch, seq, _ in on_wire(r).values():
            assert (pid, epoch, seq) == (7, 3, 0)
        for t in r.body["topic_data"]:
            for part in t["partition_data"]:
                attributes = struct.unpack_from(">h", bytes(part["records"]), 21)[0]
                assert attributes & 0x10, "the batch's transactional bit"
        r.answer(produce_body(r))
    h.append(0)  # an added partition drains at once from now on
    [again] = h.run()
    assert again.api is PRODUCE


def test_end_txn_waits_for_every_batch_of_the_transaction():
    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    futures = h.append(0, 3)
    h.run()
    add = h.only(ADD_PARTITIONS_TO_TXN)
    add.answer(add_partitions_answer(add))
    [produce] = h.run()
    result = h.tm.begin_commit()
    assert h.run() == []  # the batch is in flight: no EndTxn yet
    produce.answer(produce_body(produce))
    end = h.only(END_TXN)
    assert end.body == {"transactional_id": "tx", "producer_id": 7, "producer_epoch": 3, "committed": True}
    assert not result.is_done
    end.answer({"error_code": 0})
    assert result.wait(0) and result.error is None and h.tm.state is State.READY
    assert all(f.get(0).offset == 100 + i for i, f in enumerate(futures))


def test_abort_fails_what_was_never_sent_and_waits_for_what_is_in_flight():
    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    sent = h.append(0)
    h.run()
    add = h.only(ADD_PARTITIONS_TO_TXN)
    add.answer(add_partitions_answer(add))
    [produce] = h.run()
    queued = h.append(0) + h.append(1)  # partition 1 is not even in the transaction
    result = h.tm.begin_abort()
    assert h.run() == []
    assert all(isinstance(f.exception(0), TransactionAbortedError) for f in queued)
    produce.answer(produce_body(produce))
    end = h.only(END_TXN)
    assert end.body["committed"] is False
    end.answer({"error_code": 0})
    assert result.wait(0) and result.error is None
    assert sent[0].get(0).offset == 100  # written, and aborted with its transaction


def test_a_transaction_that_added_nothing_ends_without_end_txn():
    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    result = h.tm.begin_commit()
    assert h.run() == []
    assert result.wait(0) and result.error is None and h.tm.state is State.READY


def test_offsets_go_to_the_transaction_coordinator_then_to_the_group_coordinator():
    from kafkaprod.txn_requests import make_group, make_offsets

    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    result = h.tm.send_offsets_to_transaction(make_offsets({("in", 2): 40}), make_group("grp"))
    add = h.only(ADD_OFFSETS_TO_TXN)
    assert (add.node, add.body["group_id"]) == (1, "grp")
    add.answer({"error_code": 0})
    find = h.only(FIND_COORDINATOR)
    assert find.body == {"key": "grp", "key_type": 0}
    find.answer({"error_code": 0, "node_id": 0, "host": "broker0", "port": 9092})
    commit = h.only(TXN_OFFSET_COMMIT)
    assert commit.node == 0
    assert commit.body["topics"] == [{"name": "in", "partitions": [
        {"partition_index": 2, "committed_offset": 40, "committed_leader_epoch": -1, "committed_metadata": None}]}]
    commit.answer({"topics": [{"name": "in", "partitions": [{"partition_index": 2, "error_code": 0}]}]})
    assert result.wait(0) and result.error is None
    end_result = h.tm.begin_commit()
    h.only(END_TXN).answer({"error_code": 0})  # something was added (the offsets): EndTxn is sent
    assert end_result.wait(0) and end_result.error is None


def test_not_coordinator_sends_the_request_back_through_find_coordinator():
    h = TxnHarness()
    h.init()
    h.tm.begin_transaction()
    h.append(0)
    h.run()
    add = h.only(ADD_PARTITIONS_TO_TXN)
    add.answer(add_partitions_answer(add, E.NOT_COORDINATOR))
    find = h.only(FIND_COORDINATOR)
    find.answer({"error_code": 0, "node_id": 0, "host": "broker0", "port": 9092})
    again = h.only(ADD_PARTITIONS_TO_TXN)
    assert again.node == 0 and again.body == add.body


# ---- kafkaprod.aio ------------------------------------------------------------------------------------------------

def test_aio_producer_commits_and_aborts_and_its_transaction_context_aborts_on_error(noida, noida_topic,
                                                                                     run_async):
    from kafkaprod.aio import AIOKafkaProducer

    topic = noida_topic(2)
    source = noida_topic(1, prefix="src")
    group = f"aio-{uuid.uuid4().hex[:8]}"

    async def main() -> list:
        async with AIOKafkaProducer(noida.bootstrap_servers, transactional_id=f"aio-{uuid.uuid4().hex[:8]}",
                                    **FAST) as producer:
            await producer.init_transactions()  # start() did it already: returns at once
            await producer.begin_transaction()
            committed = [await producer.send(topic, v, partition=0) for v in values("aio-commit", 5)]
            batch = await producer.send_batch(topic, values("aio-batch", 5), partition=1)
            await producer.send_offsets_to_transaction({(source, 0): 42}, group)
            await producer.commit_transaction()
            assert [md.partition for md in await batch] == [1] * 5

            await producer.begin_transaction()
            [await producer.send(topic, v, partition=0) for v in values("aio-abort", 5)]
            await producer.flush()
            await producer.abort_transaction()

            with pytest.raises(RuntimeError, match="boom"):
                async with producer.transaction():
                    await producer.send(topic, b"aio-context-aborted", partition=1)
                    await producer.flush()
                    raise RuntimeError("boom")
            async with producer.transaction():
                await producer.send(topic, b"aio-context-committed", partition=1)
            return [await r for r in committed]

    metadata = run_async(main())
    assert [md.partition for md in metadata] == [0] * 5
    assert read_committed(noida.bootstrap_servers, topic, 2) == {
        0: values("aio-commit", 5), 1: values("aio-batch", 5) + [b"aio-context-committed"]}
    assert committed_offsets(noida.bootstrap_servers, group, [(source, 0)]) == {(source, 0): 42}
