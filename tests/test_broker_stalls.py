"""Stalls and outages a service meets, against real brokers: a broker paused (SIGSTOP) for longer than
request_timeout_ms and resumed loses, duplicates and reorders nothing; a broker down for longer than
delivery_timeout_ms fails every record sent meanwhile with a named error, flush(t) gives up at t, and the same
producer delivers again once the broker is back, without a restart."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from kafkaprod import BufferExhaustedError, KafkaProducer, KafkaTimeoutError
from kafkaprod.tools.broker import TansuBroker
from producer_support import FAST, REPEATED, WAIT_S, read_back


@pytest.fixture
def own_tansu():
    """A Tansu of this test's own: it is paused."""
    broker = TansuBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@REPEATED
def test_a_broker_paused_past_request_timeout_loses_duplicates_and_reorders_nothing(attempt, own_tansu):
    topic = "stall"
    own_tansu.create_topics({topic: 3})
    producer = KafkaProducer(own_tansu.bootstrap_servers, request_timeout_ms=1_000, delivery_timeout_ms=60_000,
                             linger_ms=5, **FAST)
    sent = {p: [] for p in range(3)}
    paused = threading.Event()

    def pause_and_resume():
        paused.wait(WAIT_S)
        os.kill(own_tansu.pid, signal.SIGSTOP)
        time.sleep(2.5)  # well past request_timeout_ms: requests in flight time out and are retried
        os.kill(own_tansu.pid, signal.SIGCONT)

    stopper = threading.Thread(target=pause_and_resume)
    stopper.start()
    try:
        futures = []
        for i in range(3000):
            partition = i % 3
            value = b"%d-%05d" % (partition, len(sent[partition]))
            sent[partition].append(value)
            futures.append(producer.send(topic, value, partition=partition))
            if i == 1000:
                paused.set()
            if i % 100 == 0:
                time.sleep(0.02)  # a stream that spans the pause
        producer.flush(WAIT_S)
    finally:
        stopper.join(WAIT_S)
        os.kill(own_tansu.pid, signal.SIGCONT)
    for future in futures:
        future.get(0)  # every one acknowledged
    producer.close()
    assert producer.metrics()["record-retry-total"] > 0  # the pause did make requests time out
    stored = read_back(own_tansu.bootstrap_servers, topic, 3, 3000)
    assert {p: [s.value for s in stored[p]] for p in range(3)} == sent  # once each, in order


@REPEATED
def test_records_sent_while_a_broker_is_down_past_delivery_timeout_fail_and_the_producer_delivers_again(attempt,
                                                                                                       own_noida):
    own_noida.create_topics({"outage": 1})
    producer = KafkaProducer(own_noida.bootstrap_servers, request_timeout_ms=1_000, delivery_timeout_ms=2_000,
                             **{**FAST, "max_block_ms": 1_000})
    first = producer.send("outage", b"before").get(WAIT_S)
    own_noida.kill()
    during = [producer.send("outage", b"during-%d" % i) for i in range(50)]
    with pytest.raises(KafkaTimeoutError, match=r"flush\(\) did not complete within 0.5 s"):
        producer.flush(0.5)
    outcomes = []
    for future in during:
        with pytest.raises(KafkaTimeoutError) as failed:
            future.get(WAIT_S)
        outcomes.append(str(failed.value))
    own_noida.start()  # same data, same port
    after = producer.send("outage", b"after").get(WAIT_S)
    producer.close()
    assert all("expired" in o and "delivery_timeout_ms" in o for o in outcomes), outcomes[:3]
    assert first.offset == 0 and after.partition == 0


@REPEATED
def test_while_a_broker_is_down_a_full_buffer_makes_send_raise_and_close_ends_every_record(attempt, own_noida):
    own_noida.create_topics({"full": 1})
    producer = KafkaProducer(own_noida.bootstrap_servers, buffer_memory=65_536, batch_size=16_384,
                             request_timeout_ms=1_000, delivery_timeout_ms=30_000, **{**FAST, "max_block_ms": 200})
    producer.send("full", b"before").get(WAIT_S)
    own_noida.kill()
    accepted = []
    with pytest.raises(BufferExhaustedError):
        for i in range(1_000):  # 1 MB of values against 64 KiB of buffer: send() must give up long before
            accepted.append(producer.send("full", b"%04d" % i + b"." * 1_000))
    assert producer.metrics()["buffer-available-bytes"] < 16_384  # full, and never past buffer_memory
    producer.close(0.5)  # the broker is still down: what is pending fails, nothing hangs
    outcomes = {type(f.exception(0)).__name__ for f in accepted}
    assert accepted and outcomes <= {"ProducerClosedError", "KafkaTimeoutError"}, outcomes
