"""A broker that crashes and comes back on its own data: noida-db, SIGKILLed while records are in flight and started
again on the same data directory and port. It acknowledges ahead of its storage, so it may come back without
records it acknowledged; the producer recovers and delivers what it holds, and every acknowledged record the
broker lost is reported (ERROR on the kafkaprod logger, metrics()) -- or, with fail_on_broker_data_loss, stops the
producer with BrokerDataLossError. What is on the broker is read back with confluent-kafka's consumer."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from kafkaprod import BrokerDataLossError, KafkaProducer
from kafkaprod.tools.broker import NoidaBroker, count_records
from producer_support import FAST, REPEATED, WAIT_S, read_back

TOPIC = "crash"


@pytest.fixture
def crashing_noida(own_noida):
    """A noida-db of this test's own (it is killed and restarted), with a one-partition topic."""
    own_noida.create_topics({TOPIC: 1})
    # noida-db saves in the background: a topic created just before a crash can come back without its partition
    # (UNKNOWN_TOPIC_OR_PARTITION for good). The scenario is a crash of an established topic.
    time.sleep(2.0)
    return own_noida


class Outcomes:
    def __init__(self) -> None:
        self.acked: dict[bytes, int] = {}
        self.failed: dict[bytes, BaseException] = {}
        self.lock = threading.Lock()

    def callback(self, value: bytes):
        def done(metadata, error):
            with self.lock:
                if error is None:
                    self.acked[value] = metadata.offset
                else:
                    self.failed[value] = error
        return done


def _crash_and_restart(broker: NoidaBroker, producer: KafkaProducer, outcomes: Outcomes, before: int) -> None:
    values = [b"before-%05d" % i for i in range(before)]
    for value in values:
        producer.send(TOPIC, value, callback=outcomes.callback(value))
    producer.flush(WAIT_S)  # every one acknowledged: noida-db may not have stored them yet
    broker.kill()
    broker.start()


@REPEATED
def test_acknowledged_records_a_crashed_broker_lost_are_reported_and_the_rest_delivered(attempt, crashing_noida, caplog):
    outcomes = Outcomes()
    producer = KafkaProducer(crashing_noida.bootstrap_servers, **FAST)
    with caplog.at_level(logging.ERROR, logger="kafkaprod"):
        _crash_and_restart(crashing_noida, producer, outcomes, 3000)
        after = [b"after-%05d" % i for i in range(300)]
        for value in after:
            producer.send(TOPIC, value, callback=outcomes.callback(value))
        producer.flush(WAIT_S)
    metrics = producer.metrics()
    producer.close()

    assert len(outcomes.acked) + len(outcomes.failed) == 3300  # every record ended one way or the other
    assert not outcomes.failed, list(outcomes.failed.items())[:3]
    stored = {s.value for s in read_back(crashing_noida.bootstrap_servers, TOPIC, 1,
                                         count_records(crashing_noida.bootstrap_servers, TOPIC))[0]}
    lost = sorted(v for v in outcomes.acked if v not in stored)
    assert all(v.startswith(b"before-") for v in lost)  # what was sent after the restart is all there
    # noida-db 0.2.3 nearly always comes back with none of the 3,000 here; on a loaded machine it may have stored
    # some or all of them before the kill. Either way the report must match what is missing: every lost record
    # counted, and nothing reported when nothing is lost.
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert metrics["acknowledged-records-lost-total"] == len(lost), logged
    assert metrics["broker-data-loss-total"] == (1 if lost else 0), logged
    if lost:
        assert logged and all(f"{TOPIC}[0]" in m for m in logged), logged
        assert any(f"{len(lost)} acknowledged record(s) are gone" in m for m in logged), logged
    else:
        assert not logged, logged


@REPEATED
def test_fail_on_broker_data_loss_stops_the_producer_when_a_crashed_broker_lost_acknowledged_records(attempt, crashing_noida):
    outcomes = Outcomes()
    producer = KafkaProducer(crashing_noida.bootstrap_servers, fail_on_broker_data_loss=True, **FAST)
    try:
        _crash_and_restart(crashing_noida, producer, outcomes, 3000)
        after = producer.send(TOPIC, b"after")
        try:
            after.get(WAIT_S)
        except BrokerDataLossError as exc:  # the usual case: noida-db came back without the 3,000
            assert f"{TOPIC}[0] lost records it had acknowledged" in str(exc)
            assert producer.metrics()["broker-data-loss-total"] == 1
        else:  # it had stored them all before the kill: nothing lost, nothing to stop for
            assert producer.metrics()["broker-data-loss-total"] == 0
            assert count_records(crashing_noida.bootstrap_servers, TOPIC) == 3001
    finally:
        producer.close(0)
