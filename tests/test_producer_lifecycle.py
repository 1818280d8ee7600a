"""flush() and close() semantics, callbacks exactly once, interceptors and serializers."""
from __future__ import annotations

import threading

import pytest

from kafkaprod import KafkaProducer
from kafkaprod.errors import KafkaError, KafkaTimeoutError, ProducerClosedError
from kafkaprod.interceptors import ProducerRecord
from mock_cluster import ALL_BROKERS
from producer_support import WAIT_S, CallbackLog, make_producer, read_back

# A linger no test waits out: records leave only because flush() or close() asks for it.
LONG_LINGER = {"linger_ms": 600_000, "delivery_timeout_ms": 1_000_000}


# ---- flush ------------------------------------------------------------------------------------------------------

def test_flush_returns_only_after_every_record_sent_before_it_completed(mock_cluster, mock_topic):
    topic = mock_topic(partitions=6)
    # Some latency on every broker, so that the requests are really in flight while flush() waits.
    mock_cluster.set_rtt(ALL_BROKERS, 50)
    with make_producer(mock_cluster.bootstrap_servers, **LONG_LINGER) as producer:
        futures = [producer.send(topic, b"f%d" % i, partition=i % 6) for i in range(60)]
        assert not any(f.done() for f in futures)  # the linger holds them

        producer.flush(WAIT_S)

        assert all(f.done() for f in futures)
        assert all(f.exception(0) is None for f in futures)
    read_back(mock_cluster.bootstrap_servers, topic, 6, 60)


def test_flush_waits_for_records_of_a_batch_that_was_split_meanwhile(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, **LONG_LINGER) as producer:
        producer.send(topic, b"warm-up")
        producer.flush(WAIT_S)
        mock_cluster.set_rtt(ALL_BROKERS, 50)  # the halves are still in flight when the split happens
        mock_cluster.push_request_errors(0, [10])  # MESSAGE_TOO_LARGE: the batch comes back as two halves
        futures = [producer.send(topic, b"s%d" % i) for i in range(8)]

        producer.flush(WAIT_S)

        assert [f.done() for f in futures] == [True] * 8
        mock_cluster.set_rtt(ALL_BROKERS, 0)
    assert [f.get(0).offset for f in futures] == list(range(1, 9))


def test_flush_waits_for_records_sent_from_other_threads_before_it(tansu, tansu_topic):
    topic = tansu_topic(partitions=3)
    with make_producer(tansu.bootstrap_servers, **LONG_LINGER) as producer:
        futures: list = []
        lock = threading.Lock()

        def send_some(n: int) -> None:
            for i in range(50):
                f = producer.send(topic, b"t%d-%d" % (n, i))
                with lock:
                    futures.append(f)

        threads = [threading.Thread(target=send_some, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.flush(WAIT_S)

        assert len(futures) == 200 and all(f.done() for f in futures)
    read_back(tansu.bootstrap_servers, topic, 3, 200)


def test_flush_with_nothing_pending_returns(tansu, tansu_topic):
    with make_producer(tansu.bootstrap_servers) as producer:
        producer.flush(WAIT_S)


def test_flush_times_out_naming_its_timeout_while_brokers_are_down(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)
        future = producer.send(topic, b"stuck")

        with pytest.raises(KafkaTimeoutError, match="0.3"):
            producer.flush(0.3)

        assert not future.done()
        mock_cluster.broker_up(ALL_BROKERS)
        producer.flush(WAIT_S)
        assert future.get(0).offset == 1


# ---- close ------------------------------------------------------------------------------------------------------

def test_close_with_timeout_delivers_everything_pending(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    log = CallbackLog()
    producer = make_producer(mock_cluster.bootstrap_servers, **LONG_LINGER)
    futures = [producer.send(topic, b"c%d" % i, callback=log.for_record(i)) for i in range(30)]

    producer.close(WAIT_S)

    assert all(f.done() and f.exception(0) is None for f in futures)
    assert log.counts() == {i: 1 for i in range(30)}
    read_back(mock_cluster.bootstrap_servers, topic, 3, 30)


def test_close_without_timeout_delivers_everything_pending(tansu, tansu_topic):
    topic = tansu_topic(partitions=2)
    producer = make_producer(tansu.bootstrap_servers, **LONG_LINGER)
    futures = [producer.send(topic, b"c%d" % i) for i in range(10)]

    producer.close()

    assert all(f.done() and f.exception(0) is None for f in futures)
    read_back(tansu.bootstrap_servers, topic, 2, 10)


def test_close_zero_fails_pending_records_through_futures_and_callbacks(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    log = CallbackLog()
    producer = make_producer(mock_cluster.bootstrap_servers)
    producer.send(topic, b"warm-up").get(WAIT_S)
    # Nothing can be delivered from here on, so every record below is pending when close(0) runs.
    mock_cluster.broker_down(ALL_BROKERS)
    futures = [producer.send(topic, b"p%d" % i, partition=i % 3, callback=log.for_record(i)) for i in range(12)]

    producer.close(0)

    log.wait_for(range(12))
    assert log.counts() == {i: 1 for i in range(12)}
    for i, f in enumerate(futures):
        assert f.done()
        exc = f.exception(WAIT_S)
        assert isinstance(exc, KafkaError), exc
        with pytest.raises(KafkaError):
            f.get(0)
        [(md, cb_exc)] = log.calls[i]
        assert md is None and cb_exc is exc


def test_close_with_short_timeout_fails_what_it_could_not_send(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    log = CallbackLog()
    producer = make_producer(mock_cluster.bootstrap_servers)
    producer.send(topic, b"warm-up").get(WAIT_S)
    mock_cluster.broker_down(ALL_BROKERS)
    futures = [producer.send(topic, b"p%d" % i, callback=log.for_record(i)) for i in range(5)]

    producer.close(0.2)

    log.wait_for(range(5))
    assert log.counts() == {i: 1 for i in range(5)}
    assert all(isinstance(f.exception(WAIT_S), KafkaError) for f in futures)


def test_send_after_close_raises_producer_closed(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    producer = make_producer(tansu.bootstrap_servers)
    producer.send(topic, b"before").get(WAIT_S)
    producer.close()

    with pytest.raises(ProducerClosedError):
        producer.send(topic, b"after")  # the topic is known: the fast path
    with pytest.raises(ProducerClosedError):
        producer.send(topic + "-other", b"after")  # an unknown topic: the slow path
    with pytest.raises(ProducerClosedError):
        producer.send(topic, "after", key=b"k", partition=0, headers=[("h", b"v")])


def test_close_twice_is_harmless(tansu, tansu_topic):
    producer = make_producer(tansu.bootstrap_servers)
    producer.send(tansu_topic(), b"x").get(WAIT_S)
    producer.close()
    producer.close()
    producer.close(0)


def test_context_manager_closes_the_producer(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    before = set(threading.enumerate())
    with make_producer(tansu.bootstrap_servers, **LONG_LINGER) as producer:
        future = producer.send(topic, b"in the block")

    assert future.get(0).offset == 0  # leaving the block flushed the record
    assert [t.name for t in set(threading.enumerate()) - before] == []  # its I/O thread is gone
    with pytest.raises(ProducerClosedError):
        producer.send(topic, b"after the block")


def test_context_manager_closes_on_an_exception_too(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    with pytest.raises(RuntimeError, match="boom"):
        with make_producer(tansu.bootstrap_servers, **LONG_LINGER) as producer:
            future = producer.send(topic, b"x")
            raise RuntimeError("boom")

    assert future.done()
    with pytest.raises(ProducerClosedError):
        producer.send(topic, b"after")


def test_close_from_a_callback_closes_at_once_and_fails_what_is_pending(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)
    log = CallbackLog()
    outcome = []
    producer = make_producer(mock_cluster.bootstrap_servers)
    producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
    mock_cluster.broker_down(2)  # partition 1's leader: its records stay pending

    def close_from_callback(md, exc):
        try:
            producer.close()
            outcome.append("closed")
        except Exception as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    pending = [producer.send(topic, b"p%d" % i, partition=1, callback=log.for_record(i)) for i in range(3)]
    trigger = producer.send(topic, b"trigger", partition=0, callback=close_from_callback)
    trigger.get(WAIT_S)
    log.wait_for(range(3))

    assert outcome == ["closed"]
    assert log.counts() == {0: 1, 1: 1, 2: 1}
    assert all(isinstance(f.exception(WAIT_S), KafkaError) for f in pending)
    with pytest.raises(ProducerClosedError):
        producer.send(topic, b"after")
    producer.close()  # from the main thread: a no-op now


def test_flush_from_a_callback_raises_instead_of_deadlocking(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    outcome = []
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        def flush_from_callback(md, exc):
            try:
                producer.flush()
                outcome.append("returned")
            except KafkaError as e:
                outcome.append(e)

        producer.send(topic, b"x", callback=flush_from_callback).get(WAIT_S)
        producer.flush(WAIT_S)

    [err] = outcome
    assert isinstance(err, KafkaError) and "callback" in str(err)


def test_close_while_other_threads_send_leaves_no_record_hanging(mock_cluster, mock_topic):
    topic = mock_topic(partitions=4)
    producer = make_producer(mock_cluster.bootstrap_servers, linger_ms=1)
    producer.send(topic, b"warm-up").get(WAIT_S)
    futures: list = []
    refused = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def send_until_closed(t: int) -> None:
        started.wait()
        for i in range(100_000):
            try:
                f = producer.send(topic, b"t%d-%d" % (t, i))
            except ProducerClosedError:
                with lock:
                    refused.append(t)
                return
            with lock:
                futures.append(f)

    threads = [threading.Thread(target=send_until_closed, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    started.wait()
    while len(futures) < 2000:  # let the senders get going
        threading.Event().wait(0.005)
    producer.close(WAIT_S)
    for t in threads:
        t.join(WAIT_S)

    assert sorted(refused) == [0, 1, 2, 3]  # every sender was stopped by close(), none hung or died otherwise
    outcomes = [f.exception(WAIT_S) for f in futures]  # raises if any record was left hanging
    assert all(e is None for e in outcomes), [e for e in outcomes if e is not None][:3]
    read_back(mock_cluster.bootstrap_servers, topic, 4, len(futures) + 1)


# ---- callbacks ----------------------------------------------------------------------------------------------------

def test_each_callback_runs_exactly_once_on_the_sender_thread(mock_cluster, mock_topic):
    topic = mock_topic(partitions=4)
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        futures = [producer.send(topic, b"cb%d" % i, key=b"k%d" % i, callback=log.for_record(i)) for i in range(200)]
        producer.flush(WAIT_S)
        log.wait_for(range(200))

    assert log.counts() == {i: 1 for i in range(200)}
    assert log.threads == {"kafkaprod-sender"}
    for i, f in enumerate(futures):
        [(md, exc)] = log.calls[i]
        assert exc is None and md == f.get(0)


def test_each_callback_runs_exactly_once_when_the_broker_rejects_the_records(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=50) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.push_request_errors(0, [87])  # INVALID_RECORD: not retriable
        futures = [producer.send(topic, b"bad%d" % i, callback=log.for_record(i)) for i in range(5)]
        producer.flush(WAIT_S)
        log.wait_for(range(5))
        good = producer.send(topic, b"good", callback=log.for_record("good")).get(WAIT_S)

    assert log.counts() == {**{i: 1 for i in range(5)}, "good": 1}
    for i, f in enumerate(futures):
        exc = f.exception(0)
        assert isinstance(exc, KafkaError) and exc.errno == 87
        assert log.calls[i] == [(None, exc)]
    assert good.offset == 1  # only the warm-up record was stored before it
    read_back(mock_cluster.bootstrap_servers, topic, 1, 2)


def test_a_raising_callback_does_not_stop_the_others(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    log = CallbackLog()

    def explode(md, exc):
        raise ValueError("user callback failed")

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=50) as producer:
        for i in range(6):
            producer.send(topic, b"x", callback=explode if i % 2 else log.for_record(i))
        producer.flush(WAIT_S)
        log.wait_for([0, 2, 4])
        assert producer.send(topic, b"after").get(WAIT_S).offset == 6

    assert log.counts() == {0: 1, 2: 1, 4: 1}


def test_future_callbacks_run_once_whether_added_before_or_after_completion(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    calls = []
    with make_producer(tansu.bootstrap_servers, **LONG_LINGER) as producer:
        f = producer.send(topic, b"x")
        f.add_callback(lambda md: calls.append(("ok-before", md.offset)))
        f.add_errback(lambda exc: calls.append(("err-before", exc)))
        f.add_done_callback(lambda fut: calls.append(("done-before", fut is f)))
        producer.flush(WAIT_S)
        f.add_callback(lambda md, tag: calls.append((tag, md.offset)), "ok-after")
        f.add_done_callback(lambda fut: calls.append(("done-after", fut.done())))

    assert sorted(calls) == sorted([("ok-before", 0), ("done-before", True), ("ok-after", 0), ("done-after", True)])


# ---- interceptors and serializers --------------------------------------------------------------------------------

class TaggingInterceptor:
    def __init__(self) -> None:
        self.sent: list[ProducerRecord] = []
        self.acks: list = []
        self.closed = 0
        self.lock = threading.Lock()

    def on_send(self, record):
        self.sent.append(record)
        return record._replace(value=record.value + b"+tagged", headers=[("via", b"interceptor")])

    def on_acknowledgement(self, metadata, exception):
        with self.lock:
            self.acks.append((metadata, exception))

    def close(self):
        self.closed += 1


def test_interceptor_can_modify_records_and_is_acknowledged_once_per_record(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)
    icpt = TaggingInterceptor()
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers, interceptors=[icpt]) as producer:
        futures = [producer.send(topic, b"v%d" % i, partition=i % 2, callback=log.for_record(i)) for i in range(10)]
        metadata = [f.get(WAIT_S) for f in futures]
        log.wait_for(range(10))

    assert [r.value for r in icpt.sent] == [b"v%d" % i for i in range(10)]
    assert len(icpt.acks) == 10
    acknowledged = sorted((md.partition, md.offset) for md, _ in icpt.acks)
    assert acknowledged == sorted((m.partition, m.offset) for m in metadata)
    assert all(exc is None for _, exc in icpt.acks)
    assert log.counts() == {i: 1 for i in range(10)}
    assert icpt.closed == 1
    stored = read_back(mock_cluster.bootstrap_servers, topic, 2, 10)
    assert [s.value for s in stored[0]] == [b"v%d+tagged" % i for i in range(0, 10, 2)]
    assert all(s.headers == [("via", b"interceptor")] for ss in stored.values() for s in ss)


def test_interceptor_is_acknowledged_with_the_error_of_a_failed_record(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    icpt = TaggingInterceptor()
    with make_producer(mock_cluster.bootstrap_servers, interceptors=[icpt], linger_ms=50) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.push_request_errors(0, [87])
        futures = [producer.send(topic, b"bad%d" % i) for i in range(3)]
        producer.flush(WAIT_S)

    errors = [exc for _, exc in icpt.acks if exc is not None]
    assert len(icpt.acks) == 4 and len(errors) == 3
    assert all(e.errno == 87 for e in errors)
    assert {id(e) for e in errors} == {id(f.exception(0)) for f in futures}


def test_an_interceptor_that_raises_is_skipped(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)

    class Broken:
        def on_send(self, record):
            raise RuntimeError("interceptor bug")

        def on_acknowledgement(self, metadata, exception):
            raise RuntimeError("interceptor bug")

        def close(self):
            raise RuntimeError("interceptor bug")

    with make_producer(tansu.bootstrap_servers, interceptors=[Broken()]) as producer:
        md = producer.send(topic, b"plain").get(WAIT_S)
    assert md.offset == 0
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 1)[0]] == [b"plain"]


def test_callable_serializers_turn_keys_and_values_into_bytes(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    seen = []

    def value_ser(data):
        seen.append(data)
        return repr(data).encode()

    with make_producer(tansu.bootstrap_servers, key_serializer=str.encode, value_serializer=value_ser) as producer:
        md = producer.send(topic, {"n": 1}, key="k\u00e9").get(WAIT_S)

    assert seen == [{"n": 1}]
    assert md.serialized_key_size == len("k\u00e9".encode()) and md.serialized_value_size == len(b"{'n': 1}")
    [s] = read_back(tansu.bootstrap_servers, topic, 1, 1)[0]
    assert (s.key, s.value) == ("k\u00e9".encode(), b"{'n': 1}")


def test_object_serializers_get_the_topic(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)

    class TopicPrefixing:
        def __init__(self) -> None:
            self.calls = []

        def serialize(self, topic_name, data):
            self.calls.append((topic_name, data))
            return None if data is None else f"{topic_name}:{data}".encode()

    keys, values = TopicPrefixing(), TopicPrefixing()
    with make_producer(tansu.bootstrap_servers, key_serializer=keys, value_serializer=values) as producer:
        producer.send(topic, "v1", key="k1").get(WAIT_S)
        producer.send(topic, None, key=None).get(WAIT_S)

    assert keys.calls == [(topic, "k1"), (topic, None)]
    assert values.calls == [(topic, "v1"), (topic, None)]
    stored = read_back(tansu.bootstrap_servers, topic, 1, 2)[0]
    assert [(s.key, s.value) for s in stored] == [(f"{topic}:k1".encode(), f"{topic}:v1".encode()), (None, None)]


def test_str_value_without_serializer_is_refused_naming_the_fix(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    with make_producer(tansu.bootstrap_servers) as producer:
        producer.send(topic, b"x").get(WAIT_S)
        with pytest.raises(TypeError, match="value_serializer"):
            producer.send(topic, "text")
        with pytest.raises(TypeError, match="key_serializer"):
            producer.send(topic, b"x", key="text")
        assert producer.send(topic, b"still fine").get(WAIT_S).offset == 1


def test_producer_accepts_a_list_of_bootstrap_servers(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    servers = mock_cluster.bootstrap_servers.split(",")
    producer = KafkaProducer(servers, max_block_ms=20_000)
    try:
        assert producer.send(topic, b"x").get(WAIT_S).offset == 0
    finally:
        producer.close()
