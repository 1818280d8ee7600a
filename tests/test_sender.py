"""The Sender's decisions, one loop at a time, against a fake network client (as the Java client's SenderTest does
with MockClient).

The accumulator, buffer pool, metadata and metrics are the real ones; only the NetworkClient is ours: it records
every request the Sender sends and lets a test answer one -- with a decoded body, as the protocol codec would
hand it over, or with a disconnect -- by calling the request's on_done. The tests call ``sender.run_once()``
themselves (the thread is never started) and observe outcomes through the records' futures and through the
producer id, epoch and base sequence written in each batch's header on the wire.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from kafkaprod import config as _config
from kafkaprod import sender as sender_module
from kafkaprod import transaction_manager as tm_module
from kafkaprod._native.accumulator import RecordAccumulator
from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod.errors import (
    BrokerDataLossError, ErrorCode, KafkaError, KafkaTimeoutError, ProducerClosedError, ProducerFencedError,
    TopicAuthorizationFailedError,
)
from kafkaprod.metadata import Metadata
from kafkaprod.metrics import ProducerMetrics
from kafkaprod.network import ClientResponse
from kafkaprod.protocol.messages import INIT_PRODUCER_ID, METADATA, PRODUCE
from kafkaprod.sender import Sender

TOPIC = "t"
PID = 7


@dataclass
class Request:
    """One request the Sender sent through the fake client."""

    node: int
    api: Any
    body: dict
    request: Any
    on_done: Any
    answered: bool = False

    def answer(self, body: dict) -> None:
        assert not self.answered, "a request is answered once"
        self.answered = True
        self.on_done(ClientResponse(self.node, self.api.key, self.api.max_version, self.request, body=body,
                                    latency=0.001))

    def disconnect(self) -> None:
        assert not self.answered, "a request is answered once"
        self.answered = True
        self.on_done(ClientResponse(self.node, self.api.key, self.api.max_version, self.request, disconnected=True,
                                    error=ConnectionError(f"broker {self.node}: closed by the test")))


class FakeClient:
    """The NetworkClient methods the Sender calls. Every known broker is ready unless listed in `down`."""

    def __init__(self) -> None:
        self.nodes: dict[int, tuple[str, int]] = {}
        self.down: set[int] = set()
        self.sent: list[Request] = []
        self.closed = False

    def set_node(self, node_id: int, host: str, port: int) -> None:
        self.nodes[node_id] = (host, port)

    def ready(self, node_id: int, now: float) -> bool:
        return node_id in self.nodes and node_id not in self.down

    def connection_delay(self, node_id: int, now: float) -> float:
        return 0.0

    def least_loaded_node(self, now: float, candidates: Any = None) -> int | None:
        for node_id in sorted(self.nodes if candidates is None else candidates):
            if self.ready(node_id, now):
                return node_id
        return None

    def send(self, node_id: int, api: Any, body: dict, request: Any = None, expect_response: bool = True,
             on_done: Any = None, now: float | None = None) -> int:
        assert self.ready(node_id, 0.0), f"send() to broker {node_id}, which is not ready"
        assert expect_response, "every request here wants an answer (acks != 0)"
        self.sent.append(Request(node_id, api, body, request, on_done))
        return len(self.sent)

    def poll(self, timeout: float) -> list:
        return []

    def wakeup(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def metadata_body(leaders: dict[int, int], brokers: tuple[int, ...] = (0, 1), topic_error: int = 0) -> dict:
    return {
        "throttle_time_ms": 0,
        "brokers": [{"node_id": b, "host": f"broker{b}", "port": 9092, "rack": None} for b in brokers],
        "cluster_id": "cluster", "controller_id": brokers[0],
        "topics": [{
            "error_code": topic_error, "name": TOPIC, "is_internal": False,
            "partitions": [] if topic_error else [
                {"error_code": 0, "partition_index": p, "leader_id": leader, "leader_epoch": 0,
                 "replica_nodes": [leader], "isr_nodes": [leader], "offline_replicas": []}
                for p, leader in leaders.items()],
        }],
    }


def init_producer_id_body(producer_id: int, epoch: int = 0, error: int = 0) -> dict:
    return {"throttle_time_ms": 0, "error_code": error, "producer_id": producer_id, "producer_epoch": epoch}


def produce_body(request: Request, errors: dict[int, int] | None = None, base_offset: int = 100) -> dict:
    """An answer to every partition of a Produce request: error code per partition (default none)."""
    errors = errors or {}
    return {"throttle_time_ms": 0, "responses": [
        {"name": t["name"], "partition_responses": [
            {"index": p["index"], "error_code": errors.get(p["index"], 0),
             "base_offset": -1 if errors.get(p["index"], 0) else base_offset, "log_append_time_ms": -1,
             "log_start_offset": -1, "record_errors": [], "error_message": None}
            for p in t["partition_data"]]}
        for t in request.body["topic_data"]]}


def on_wire(request: Request) -> dict[int, tuple[int, int, int, int]]:
    """Per partition of a Produce request: (producer id, epoch, base sequence, record count) from its batch header."""
    out = {}
    for t in request.body["topic_data"]:
        for p in t["partition_data"]:
            out[p["index"]] = struct.unpack_from(">qhii", bytes(p["records"]), 43)
    return out


class Harness:
    """A Sender wired to real parts and the fake client; each run() is one loop and returns what it sent."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("linger_ms", 0)
        options.setdefault("retry_backoff_ms", 0)  # retries and metadata refreshes are due at once
        cfg = _config.resolve(bootstrap_servers="bootstrap:9092", **options)
        self.client = FakeClient()
        self.pool = BufferPool(cfg.buffer_memory, cfg.batch_size)
        self.metadata = Metadata(cfg.bootstrap_servers, cfg.retry_backoff_ms, cfg.metadata_max_age_ms)
        self.acc = RecordAccumulator(self.pool, cfg.batch_size, 0, cfg.linger_ms, cfg.retry_backoff_ms,
                                     cfg.delivery_timeout_ms, cfg.max_block_ms, cfg.enable_idempotence,
                                     self.client.wakeup, cfg.max_request_size)
        self.metrics = ProducerMetrics(self.pool)
        self.sender = Sender(self.client, self.metadata, self.acc, cfg, self.metrics)
        self.metadata.add_topic(TOPIC)

    def run(self) -> list[Request]:
        before = len(self.client.sent)
        self.sender.run_once()
        return self.client.sent[before:]

    def start(self, leaders: dict[int, int] | None = None) -> None:
        """Metadata answered (partition -> leader; default two partitions on brokers 0 and 1), then, with
        idempotence, producer id PID."""
        first = {r.api: r for r in self.run()}  # the first loop asks for both at once
        first.pop(METADATA).answer(metadata_body(leaders or {0: 0, 1: 1}))
        if self.sender.tm is not None:
            first.pop(INIT_PRODUCER_ID).answer(init_producer_id_body(PID))
        assert not first

    def append(self, partition: int, count: int = 1) -> list:
        return [self.acc.append(TOPIC, partition, None, b"p%d-%d" % (partition, i), None, None, None)
                for i in range(count)]

    def produce(self) -> Request:
        """Runs one loop, which must send exactly one Produce request."""
        [request] = [r for r in self.run() if r.api is PRODUCE]
        return request

    def send(self, partition: int, count: int = 1) -> tuple[list, Request]:
        """Appends count records to partition and runs one loop, which sends them in one Produce request."""
        futures = self.append(partition, count)
        return futures, self.produce()


@pytest.fixture
def clock(monkeypatch):
    """Moves the Sender's clock (and the TransactionManager's) ahead of the real one by `advance(seconds)`."""
    skew = [0.0]
    real = sender_module.monotonic

    def skewed() -> float:
        return real() + skew[0]

    monkeypatch.setattr(sender_module, "monotonic", skewed)
    monkeypatch.setattr(tm_module, "monotonic", skewed)

    def advance(seconds: float) -> None:
        skew[0] += seconds

    return advance


def test_metadata_answer_installs_brokers_and_partition_leaders():
    h = Harness(enable_idempotence=False)
    [md] = h.run()
    assert (md.node, md.api) == (-1, METADATA)  # the bootstrap broker
    assert md.body["topics"] == [{"name": TOPIC}]

    md.answer(metadata_body({0: 1, 1: 0, 2: 1}))

    assert h.client.nodes == {-1: ("bootstrap", 9092), 0: ("broker0", 9092), 1: ("broker1", 9092)}
    assert h.acc.partition_count(TOPIC) == 3
    assert [(p.partition, p.leader) for p in h.metadata.cluster.partitions_for_topic(TOPIC)] == [(0, 1), (1, 0), (2, 1)]
    for p in range(3):
        h.append(p)
    sent = h.run()
    assert {r.node: sorted(on_wire(r)) for r in sent if r.api is PRODUCE} == {0: [1], 1: [0, 2]}


def test_unauthorized_topic_in_the_metadata_answer_fails_the_threads_waiting_for_it():
    h = Harness(enable_idempotence=False)
    [md] = h.run()
    md.answer(metadata_body({}, topic_error=ErrorCode.TOPIC_AUTHORIZATION_FAILED))

    assert h.metadata.cluster.unauthorized_topics == {TOPIC}
    with pytest.raises(TopicAuthorizationFailedError):
        h.metadata.await_update(h.metadata.request_update(), 5.0, TOPIC)


def test_init_producer_id_is_answered_before_any_produce_request():
    h = Harness()
    md, init = h.run()
    assert (md.api, init.api) == (METADATA, INIT_PRODUCER_ID)
    md.answer(metadata_body({0: 0, 1: 1}))
    futures = h.append(0)

    assert h.run() == []  # nothing is drained without a producer id, and one InitProducerId is enough

    init.answer(init_producer_id_body(PID, epoch=3))
    produce = h.produce()
    assert on_wire(produce) == {0: (PID, 3, 0, 1)}
    produce.answer(produce_body(produce, base_offset=40))
    assert futures[0].get(0).offset == 40


def test_not_leader_or_follower_retries_the_batch_with_its_sequence_and_refreshes_metadata():
    h = Harness()
    h.start()
    futures, first = h.send(0, 2)
    assert on_wire(first) == {0: (PID, 0, 0, 2)}

    first.answer(produce_body(first, {0: ErrorCode.NOT_LEADER_OR_FOLLOWER}))
    assert not any(f.done() for f in futures)
    assert h.metrics.records_retried == 2

    sent = h.run()
    assert [r.api for r in sent] == [METADATA, PRODUCE]
    assert on_wire(sent[1]) == {0: (PID, 0, 0, 2)}
    sent[1].answer(produce_body(sent[1], base_offset=10))
    assert [f.get(0).offset for f in futures] == [10, 11]


def test_duplicate_sequence_number_counts_as_success():
    h = Harness()
    h.start()
    [future], produce = h.send(1)

    produce.answer(produce_body(produce, {1: ErrorCode.DUPLICATE_SEQUENCE_NUMBER}))

    assert future.done() and future.exception() is None
    assert future.get(0).partition == 1
    assert h.metrics.records_sent == 1 and h.metrics.records_errored == 0
    assert [r.api for r in h.run()] == []  # not sent again


def test_message_too_large_splits_a_multi_record_batch_into_two_keeping_its_sequence_range():
    h = Harness()
    h.start()
    futures, whole = h.send(0, 4)
    assert on_wire(whole) == {0: (PID, 0, 0, 4)}

    whole.answer(produce_body(whole, {0: ErrorCode.MESSAGE_TOO_LARGE}))
    halves = [h.produce()]
    assert h.run() == []  # like retries, the halves go one at a time
    halves[0].answer(produce_body(halves[0], base_offset=100))
    halves.append(h.produce())

    assert [on_wire(r) for r in halves] == [{0: (PID, 0, 0, 2)}, {0: (PID, 0, 2, 2)}]
    halves[1].answer(produce_body(halves[1], base_offset=200))
    assert [f.get(0).offset for f in futures] == [100, 101, 200, 201]


def test_batch_past_delivery_timeout_expires_and_its_partition_restarts_numbering(clock):
    h = Harness(delivery_timeout_ms=30_000)
    h.start()
    [future], first = h.send(0)
    first.answer(produce_body(first, {0: ErrorCode.NOT_LEADER_OR_FOLLOWER}))  # back in the queue, numbered
    h.client.down.add(0)  # ... and its leader unreachable from now on

    clock(31.0)
    h.run()

    assert isinstance(future.exception(0), KafkaTimeoutError)
    assert h.metrics.records_errored == 1
    # Its sequence will never be written: the partition numbers from 0 again, under a new producer id.
    [init] = [r for r in h.run() if r.api is INIT_PRODUCER_ID]
    assert h.metrics.producer_id_resets == 1
    init.answer(init_producer_id_body(PID + 1))
    h.client.down.discard(0)
    h.append(0)
    assert on_wire(h.produce()) == {0: (PID + 1, 0, 0, 1)}


def test_unknown_producer_id_fetches_a_new_producer_id_and_the_partition_numbers_from_zero():
    h = Harness()
    h.start()
    _, acknowledged = h.send(0, 3)
    acknowledged.answer(produce_body(acknowledged))
    futures, lost = h.send(0, 2)
    assert on_wire(lost) == {0: (PID, 0, 3, 2)}

    lost.answer(produce_body(lost, {0: ErrorCode.UNKNOWN_PRODUCER_ID}))
    assert not any(f.done() for f in futures)
    [init] = h.run()
    assert init.api is INIT_PRODUCER_ID and h.metrics.producer_id_resets == 1

    init.answer(init_producer_id_body(PID + 1))
    again = h.produce()
    assert on_wire(again) == {0: (PID + 1, 0, 0, 2)}
    again.answer(produce_body(again, base_offset=50))
    assert [f.get(0).offset for f in futures] == [50, 51]


def test_out_of_order_sequence_behind_a_pending_earlier_batch_is_retried_keeping_its_number():
    h = Harness()
    h.start()
    _, lead = h.send(0)
    earlier = h.append(0)
    lead.answer(produce_body(lead))  # written with a batch behind it: partition 0 pipelines
    first = h.produce()
    later, second = h.send(0)
    assert (on_wire(first), on_wire(second)) == ({0: (PID, 0, 1, 1)}, {0: (PID, 0, 2, 1)})

    first.answer(produce_body(first, {0: ErrorCode.NOT_LEADER_OR_FOLLOWER}))
    second.answer(produce_body(second, {0: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER}))

    resent = [r for r in h.run() + h.run() if r.api is PRODUCE]
    assert [on_wire(r) for r in resent] == [{0: (PID, 0, 1, 1)}]  # the earlier one first, alone
    resent[0].answer(produce_body(resent[0], base_offset=101))  # right after the lead's offset 100
    resent.append(h.produce())
    assert [on_wire(r) for r in resent] == [{0: (PID, 0, 1, 1)}, {0: (PID, 0, 2, 1)}]  # in order, same numbers
    assert h.metrics.producer_id_resets == 0
    resent[1].answer(produce_body(resent[1], base_offset=102))
    assert (earlier[0].get(0).offset, later[0].get(0).offset) == (101, 102)
    assert h.metrics.snapshot()["broker-data-loss-total"] == 0  # an earlier batch pending is no loss


def test_out_of_order_sequence_with_no_earlier_batch_pending_restarts_the_partition_under_a_new_producer_id():
    h = Harness()
    h.start()
    _, first = h.send(0)
    first.answer(produce_body(first))
    [future], second = h.send(0)

    second.answer(produce_body(second, {0: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER}))
    [init] = h.run()
    assert init.api is INIT_PRODUCER_ID and h.metrics.producer_id_resets == 1
    init.answer(init_producer_id_body(PID + 1))

    again = h.produce()
    assert on_wire(again) == {0: (PID + 1, 0, 0, 1)}
    again.answer(produce_body(again, base_offset=3))
    assert future.get(0).offset == 3


def test_a_refused_sequence_right_after_the_last_acknowledged_one_is_reported_as_records_the_broker_lost(caplog):
    # What a broker that crashed ahead of its storage answers: it acknowledged sequence 0 at offset 100, came back
    # without it, and calls sequence 1 out of order. The producer goes on, as Java's does, but says so.
    h = Harness()
    h.start()
    _, first = h.send(0)
    first.answer(produce_body(first, base_offset=100))
    [future], second = h.send(0)
    with caplog.at_level(logging.ERROR, logger="kafkaprod"):
        second.answer(produce_body(second, {0: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER}))
        [init] = h.run()
        init.answer(init_producer_id_body(PID + 1))
        again = h.produce()
        again.answer(produce_body(again, base_offset=3))  # where the broker's log now ends
    assert future.get(0).offset == 3
    errors_logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 2, errors_logged
    assert errors_logged[0].startswith(f"the broker leading {TOPIC}[0] lost records it had acknowledged: it "
                                       f"acknowledged up to offset 100 (sequence 0, producer id {PID}, epoch 0) and "
                                       f"now refuses sequence 1 as out of order")
    assert errors_logged[1] == (f"{TOPIC}[0]: the broker's log now ends at offset 3, below the 101 it had "
                                f"acknowledged: 98 acknowledged record(s) are gone (offsets 3 to 100)")
    metrics = h.metrics.snapshot()
    assert (metrics["broker-data-loss-total"], metrics["acknowledged-records-lost-total"]) == (1, 98)


def test_an_append_below_the_last_acknowledged_offset_is_reported_whatever_the_sequences_said(caplog):
    # Under a new producer id (another partition's loss asks for one) numbering starts at 0 and is accepted: only
    # the offset shows that the log went back.
    h = Harness()
    h.start()
    _, first = h.send(1, 5)
    first.answer(produce_body(first, base_offset=20))  # offsets 20-24
    _, second = h.send(1)
    with caplog.at_level(logging.ERROR, logger="kafkaprod"):
        second.answer(produce_body(second, base_offset=21))
    _, third = h.send(1)
    third.answer(produce_body(third, base_offset=22))  # and from there on, nothing more to say
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"{TOPIC}[1]: the broker's log now ends at offset 21, below the 25 it had acknowledged: 4 acknowledged "
        f"record(s) are gone (offsets 21 to 24)"]
    metrics = h.metrics.snapshot()
    assert (metrics["broker-data-loss-total"], metrics["acknowledged-records-lost-total"]) == (1, 4)


def test_fail_on_broker_data_loss_stops_the_producer_with_broker_data_loss_error():
    h = Harness(fail_on_broker_data_loss=True)
    h.start()
    _, first = h.send(0)
    first.answer(produce_body(first, base_offset=100))
    [future], second = h.send(0)
    pending = h.append(1)
    second.answer(produce_body(second, {0: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER}))
    h.run()  # the fatal error stops the Sender: what is pending fails with it
    with pytest.raises(BrokerDataLossError, match=rf"{TOPIC}\[0\] lost records it had acknowledged"):
        future.get(0)
    with pytest.raises(BrokerDataLossError):
        pending[0].get(0)
    with pytest.raises(ProducerClosedError, match="fatal error"):
        h.append(0)
    assert h.metrics.snapshot()["broker-data-loss-total"] == 1


def test_producer_fenced_fails_every_pending_record_and_refuses_later_appends():
    h = Harness()
    h.start({0: 0, 1: 1})
    fenced, to_broker_0 = h.send(0)
    in_flight, to_broker_1 = h.send(1)
    queued = h.append(0)

    to_broker_0.answer(produce_body(to_broker_0, {0: ErrorCode.PRODUCER_FENCED}))

    for future in fenced + in_flight + queued:
        assert isinstance(future.exception(0), ProducerFencedError)
    assert not h.sender.running
    with pytest.raises(KafkaError, match="PRODUCER_FENCED"):
        h.append(1)
    to_broker_1.answer(produce_body(to_broker_1))  # written after all: the record has failed already, and stays so
    assert isinstance(in_flight[0].exception(0), ProducerFencedError)
    assert h.run() == []
    assert not h.acc.has_incomplete()


def test_disconnect_retries_the_requests_batches_keeping_their_sequences():
    h = Harness()
    h.start({0: 0, 1: 0})
    futures = h.append(0) + h.append(1, 2)
    request = h.produce()
    assert on_wire(request) == {0: (PID, 0, 0, 1), 1: (PID, 0, 0, 2)}

    request.disconnect()
    assert not any(f.done() for f in futures)
    assert h.metrics.records_retried == 3

    sent = h.run()
    assert [r.api for r in sent] == [METADATA, PRODUCE]  # the leaders may have moved: metadata first
    assert on_wire(sent[1]) == {0: (PID, 0, 0, 1), 1: (PID, 0, 0, 2)}
    sent[1].answer(produce_body(sent[1], base_offset=5))
    assert [f.get(0).offset for f in futures] == [5, 5, 6]


# ---- per-partition order with idempotence: what a partition may send while batches of it are in flight ----------

def produce_for(sent: list[Request], partition: int) -> list[Request]:
    return [r for r in sent if r.api is PRODUCE and partition in on_wire(r)]


def test_an_error_holds_the_partition_until_its_batches_in_flight_are_answered_then_retries_one_at_a_time():
    h = Harness()
    h.start({0: 0, 1: 0})
    _, lead = h.send(0)
    h.append(0)
    lead.answer(produce_body(lead))  # written with a batch behind it: partition 0 pipelines
    first = h.produce()
    _, second = h.send(0)  # pipelined: both in flight
    assert [on_wire(r)[0][2] for r in (first, second)] == [1, 2]

    first.answer(produce_body(first, {0: ErrorCode.NOT_ENOUGH_REPLICAS}))
    h.append(0)  # a new batch behind the retry
    other, to_p1 = h.send(1)  # other partitions are not held, even on the same broker
    assert on_wire(to_p1) == {1: (PID, 0, 0, 1)}
    # Nothing of partition 0 -- neither the retry nor the new batch -- while `second` is in flight: if the retry
    # went now and `second` failed too, a later batch could be written before it.
    assert produce_for(h.run(), 0) == []

    second.answer(produce_body(second, {0: ErrorCode.NOT_ENOUGH_REPLICAS}))
    [retry] = produce_for(h.run(), 0)
    assert on_wire(retry)[0][2] == 1
    assert produce_for(h.run(), 0) == []  # one at a time: the second retry waits for the first one's answer
    retry.answer(produce_body(retry))
    [retry] = produce_for(h.run(), 0)
    assert on_wire(retry)[0][2] == 2
    assert produce_for(h.run(), 0) == []  # the new batch waits behind the last retry too
    retry.answer(produce_body(retry))

    # Retries through: the partition pipelines again.
    [new] = produce_for(h.run(), 0)
    _, after = h.send(0)
    assert [on_wire(r)[0][2] for r in (new, after)] == [3, 4]


def test_a_dropped_connection_resends_its_partitions_batches_one_at_a_time_in_sequence_order():
    h = Harness()
    h.start({0: 0, 1: 1})
    _, lead = h.send(0)
    futures = h.append(0)
    lead.answer(produce_body(lead))  # written with a batch behind it: partition 0 pipelines
    first = h.produce()
    more, second = h.send(0)
    # The connection closes: its requests fail in the order they were sent.
    first.disconnect()
    second.disconnect()

    sent = h.run()
    assert [r.api for r in sent] == [METADATA, PRODUCE]
    assert on_wire(sent[1]) == {0: (PID, 0, 1, 1)}
    assert produce_for(h.run(), 0) == []
    sent[1].answer(produce_body(sent[1], base_offset=10))
    [again] = produce_for(h.run(), 0)
    assert on_wire(again) == {0: (PID, 0, 2, 1)}
    again.answer(produce_body(again, base_offset=11))
    assert [f.get(0).offset for f in futures + more] == [10, 11]


def test_after_a_leader_change_nothing_goes_to_the_new_leader_while_batches_are_in_flight_to_the_old_one():
    h = Harness()
    h.start({0: 0, 1: 1})
    _, lead = h.send(0)
    h.append(0)
    lead.answer(produce_body(lead))  # written with a batch behind it: partition 0 pipelines
    to_old = h.produce()
    h.metadata.request_update()
    [md] = [r for r in h.run() if r.api is METADATA]
    md.answer(metadata_body({0: 1, 1: 1}))  # partition 0 moved to broker 1
    h.append(0)

    assert produce_for(h.run(), 0) == []  # `to_old` is still out: the old leader is about to refuse it

    to_old.answer(produce_body(to_old, {0: ErrorCode.NOT_LEADER_OR_FOLLOWER}))
    sent = produce_for(h.run(), 0)
    assert [(r.node, on_wire(r)[0][2]) for r in sent] == [(1, 1)]  # the retry first, to the new leader, alone


def test_a_partitions_first_batch_after_idle_goes_alone_and_a_steady_stream_pipelines():
    h = Harness()
    h.start({0: 0, 1: 0})
    _, lead = h.send(0)
    h.append(0)
    # The first batch meets whatever changed while the partition was idle (a moved leader, a restarted broker,
    # errors that began): the batch behind it waits for its answer.
    assert produce_for(h.run(), 0) == []
    lead.answer(produce_body(lead))
    second = h.produce()
    _, third = h.send(0)  # written with a batch behind it: partition 0 pipelines
    assert [on_wire(r)[0][2] for r in (second, third)] == [1, 2]
    second.answer(produce_body(second))
    third.answer(produce_body(third))  # nothing queued, nothing in flight: idle again

    _, lead = h.send(0)
    h.append(0)
    assert produce_for(h.run(), 0) == []
    lead.answer(produce_body(lead))
    assert on_wire(h.produce())[0][2] == 4
