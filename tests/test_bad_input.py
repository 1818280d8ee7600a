"""Bad input at every public entry point: a specific exception at once, naming what was wrong, and a producer that
still works afterwards.

Each table row is one wrong call. "At once" is checked without timing anything: the producers here would block
for metadata or memory only up to max_block_ms and then raise KafkaTimeoutError, so a wrong call that waited
instead of refusing fails on its exception type. Every bad send() is tried twice -- before the producer knows the
topic (the Python path, which fetches metadata) and after (the compiled fast path) -- with a good send in between
and after, which must be delivered.
"""
from __future__ import annotations

import math

import pytest

from kafkaprod import KafkaProducer
from kafkaprod.errors import KafkaTimeoutError, ProducerClosedError, RecordTooLargeError
from mock_cluster import ALL_BROKERS
from producer_support import WAIT_S, make_producer, read_back

NOWHERE = "127.0.0.1:9"  # nothing listens on the discard port; construction never needs a connection
PARTITIONS = 2
TOPIC = object()  # stands for the test's real topic in the tables below

# ---- KafkaProducer(...) ----------------------------------------------------------------------------------------

CONSTRUCTOR_CASES = [
    # unknown options, by keyword and by Java name
    ({"lingr_ms": 5}, ValueError, r"unknown producer option 'lingr_ms'.*did you mean 'linger_ms'"),
    ({"config": {"max.block": 5}}, ValueError, r"unknown producer option 'max\.block'"),
    ({"config": 5}, TypeError, r"config must be a mapping.*int"),
    ({"config": [("linger_ms", 5)]}, TypeError, r"config must be a mapping.*list"),
    # wrong types
    ({"linger_ms": None}, TypeError, r"'linger_ms' must be an int.*NoneType"),
    ({"batch_size": "16384"}, TypeError, r"'batch_size' must be an int.*str"),
    ({"buffer_memory": 2.5e7}, TypeError, r"'buffer_memory' must be an int.*float"),
    ({"max_block_ms": False}, TypeError, r"'max_block_ms' must be an int.*bool"),
    ({"client_id": 7}, TypeError, r"'client_id' must be a str.*int"),
    ({"enable_idempotence": 1}, TypeError, r"'enable_idempotence' must be a bool"),
    ({"value_serializer": "json"}, TypeError, r"'value_serializer' must be a callable"),
    ({"partitioner": 3}, TypeError, r"'partitioner' must be a callable"),
    ({"interceptors": ["not an interceptor"]}, TypeError, r"'interceptors'.*no on_send\(\) method"),
    ({"acks": None}, ValueError, r"'acks' must be one of"),
    ({"compression_type": 5}, ValueError, r"'compression_type' must be one of"),
    # out-of-range numbers
    ({"linger_ms": -1}, ValueError, r"'linger_ms' must be in \[0, .*got -1"),
    ({"batch_size": 0}, ValueError, r"'batch_size' must be in \[1, .*got 0"),
    ({"batch_size": 2**31}, ValueError, r"'batch_size' must be in .*got 2147483648"),
    ({"buffer_memory": 0}, ValueError, r"'buffer_memory' must be in \[1, .*got 0"),
    ({"buffer_memory": 2**64}, ValueError, r"'buffer_memory' must be in .*got 18446744073709551616"),
    ({"max_block_ms": -5}, ValueError, r"'max_block_ms' must be in \[0, .*got -5"),
    ({"max_request_size": 0}, ValueError, r"'max_request_size' must be in \[1, .*got 0"),
    ({"request_timeout_ms": 0}, ValueError, r"'request_timeout_ms' must be in \[1, .*got 0"),
    ({"retries": -1}, ValueError, r"'retries' must be in \[0, .*got -1"),
    ({"max_in_flight_requests_per_connection": 0}, ValueError, r"'max_in_flight_requests_per_connection'"),
    ({"acks": 2}, ValueError, r"'acks' must be one of .*got 2"),
    ({"delivery_timeout_ms": 100}, ValueError, r"'delivery_timeout_ms' \(100\) must be at least"),
    ({"batch_size": 16_384, "buffer_memory": 1000}, ValueError, r"batch_size.* 16384 is larger than .*buffer_memory"),
    # unparseable bootstrap servers
    ({"bootstrap_servers": ""}, ValueError, r"'bootstrap_servers' names no broker"),
    ({"bootstrap_servers": []}, ValueError, r"'bootstrap_servers' names no broker"),
    ({"bootstrap_servers": 9092}, TypeError, r"'bootstrap_servers' must be a 'host:port"),
    ({"bootstrap_servers": ["127.0.0.1:9092", None]}, TypeError, r"'bootstrap_servers'.*got None"),
    ({"bootstrap_servers": "localhost"}, ValueError, r"'bootstrap_servers': 'localhost' is not a valid .host:port."),
    ({"bootstrap_servers": "localhost:port"}, ValueError, r"'localhost:port' is not a valid .host:port."),
    ({"bootstrap_servers": "localhost:0"}, ValueError, r"'localhost:0' is not a valid .host:port."),
    ({"bootstrap_servers": "localhost:65536"}, ValueError, r"'localhost:65536' is not a valid .host:port."),
    ({"bootstrap_servers": ":9092"}, ValueError, r"':9092' is not a valid .host:port."),
    ({"bootstrap_servers": "my host:9092"}, ValueError, r"'my host:9092' is not a valid .host:port."),
    ({"bootstrap_servers": "ok:9092,bad"}, ValueError, r"'bad' is not a valid .host:port."),
]


@pytest.mark.parametrize(("options", "error", "message"), CONSTRUCTOR_CASES,
                         ids=[repr(c[0])[:60] for c in CONSTRUCTOR_CASES])
def test_bad_producer_options_raise_at_construction_naming_the_option(options, error, message):
    options = {"bootstrap_servers": NOWHERE, **options}
    with pytest.raises(error, match=message):
        KafkaProducer(**options)


# ---- send() ----------------------------------------------------------------------------------------------------

SEND_CASES = [
    # topic: wrong types, and names outside Kafka's rule (1-249 of [a-zA-Z0-9._-], not "." or "..")
    ({"topic": None}, TypeError, r"topic must be a str, got NoneType"),
    ({"topic": b"bytes-topic"}, TypeError, r"topic must be a str, got bytes"),
    ({"topic": 5}, TypeError, r"topic must be a str, got int"),
    ({"topic": ""}, ValueError, r"topic '' is not a valid topic name: Kafka allows"),
    ({"topic": "."}, ValueError, r"topic '\.' is not a valid topic name: Kafka allows"),
    ({"topic": ".."}, ValueError, r"topic '\.\.' is not a valid topic name: Kafka allows"),
    ({"topic": "has space"}, ValueError, r"topic 'has space' is not a valid topic name: Kafka allows"),
    ({"topic": "slash/topic"}, ValueError, r"topic 'slash/topic' is not a valid topic name: Kafka allows"),
    ({"topic": "t\u00f6pic"}, ValueError, r"topic 't\u00f6pic' is not a valid topic name: Kafka allows"),
    ({"topic": "x" * 250}, ValueError, r"topic 'x{60}\.\.\.' is not a valid topic name: Kafka allows.*length 250"),
    # key and value
    ({"value": 12345}, TypeError, r"value must be bytes-like.*int"),
    ({"value": "text"}, TypeError, r"value must be bytes.*str"),
    ({"key": 5}, TypeError, r"key must be bytes-like.*int"),
    ({"key": ["k"]}, TypeError, r"key must be bytes-like.*list"),
    ({"value": memoryview(b"abcdef")[::2]}, TypeError, r"value must be a contiguous bytes-like object.*memoryview"),
    ({"key": memoryview(b"abcdef")[::2]}, TypeError, r"key must be a contiguous bytes-like object.*memoryview"),
    # partition
    ({"partition": "1"}, TypeError, r"partition must be an int.*str '1'"),
    ({"partition": 1.0}, TypeError, r"partition must be an int.*float 1\.0"),
    ({"partition": True}, TypeError, r"partition must be an int.*bool True"),
    ({"partition": -1}, ValueError, r"partition must be an int >= 0 or None, got -1"),
    ({"partition": 2**40}, ValueError, r"partition must be an int >= 0 or None, got 1099511627776"),
    ({"partition": PARTITIONS}, ValueError, rf"partition {PARTITIONS} is out of range .* {PARTITIONS} partitions"),
    # timestamp
    ({"timestamp_ms": 1.5}, TypeError, r"timestamp_ms must be an int.*1\.5"),
    ({"timestamp_ms": "1700000000000"}, TypeError, r"timestamp_ms must be an int"),
    ({"timestamp_ms": False}, TypeError, r"timestamp_ms must be an int"),
    ({"timestamp_ms": -5}, ValueError, r"timestamp_ms must be .*got -5"),
    ({"timestamp_ms": 2**64}, ValueError, r"timestamp_ms must be in \[0, 2\*\*63-1\].*18446744073709551616"),
    # headers
    ({"headers": 5}, TypeError, r"headers must be .*pairs|headers must be an iterable.*int 5"),
    ({"headers": [("h", "text")]}, TypeError, r"header.*'h'.*value must be bytes|header 0"),
    ({"headers": [(b"name", b"v")]}, TypeError, r"header"),
    ({"headers": [("h", 5)]}, TypeError, r"header"),
    ({"headers": [("only-a-name",)]}, TypeError, r"header.*\('only-a-name',\)"),
    ({"headers": ["h=v"]}, TypeError, r"header.*'h=v'"),
    ({"headers": [("h", memoryview(b"abcdef")[::2])]}, TypeError, r"header 0 \('h'\) value must be .*contiguous"),
    ({"headers": [("\ud800", b"v")]}, ValueError, r"header 0 key '\\ud800' cannot be encoded as UTF-8"),
    # callback
    ({"callback": 5}, TypeError, r"callback must be callable.*got 5"),
    ({"callback": "print"}, TypeError, r"callback must be callable.*got 'print'"),
    # an argument send() does not have
    ({"partiton": 1}, TypeError, r"partiton"),
    # records too large for a request or for all of buffer_memory (the producer below has 64 KiB of it)
    ({"value": b"x" * 2_000_000}, RecordTooLargeError, r"max_request_size \(1048576\)"),
    ({"value": b"x" * 70_000}, RecordTooLargeError, r"buffer_memory \(65536\)"),
    ({"key": b"k" * 70_000}, RecordTooLargeError, r"buffer_memory \(65536\)"),
    ({"headers": [("big", b"h" * 70_000)]}, RecordTooLargeError, r"buffer_memory \(65536\)"),
]


def _send(producer: KafkaProducer, topic: str, case: dict):
    kwargs = dict(case)
    send_topic = kwargs.pop("topic", TOPIC)
    value = kwargs.pop("value", b"v")
    return producer.send(topic if send_topic is TOPIC else send_topic, value, **kwargs)


@pytest.mark.parametrize(("case", "error", "message"), SEND_CASES, ids=[repr(c[0])[:60] for c in SEND_CASES])
def test_bad_send_raises_at_once_naming_the_argument_and_the_producer_still_delivers(
        tansu, tansu_topic, case, error, message):
    topic = tansu_topic(partitions=PARTITIONS)
    with make_producer(tansu.bootstrap_servers, buffer_memory=65_536, batch_size=16_384) as producer:
        with pytest.raises(error, match=message):
            _send(producer, topic, case)  # the topic is not known yet: the Python path
        first = producer.send(topic, b"good-1", partition=0)
        assert first.get(WAIT_S).offset == 0
        with pytest.raises(error, match=message):
            _send(producer, topic, case)  # the topic is known now: the compiled fast path
        assert producer.send(topic, b"good-2", partition=0).get(WAIT_S).offset == 1
    stored = read_back(tansu.bootstrap_servers, topic, PARTITIONS, 2)
    assert [r.value for r in stored[0]] == [b"good-1", b"good-2"]


# The arguments send() and send_batch() share are checked by one piece of code: the same bad argument gets the same
# error, word for word, from send()'s Python path, its compiled fast path and send_batch().
SHARED_CASES = [c for c in SEND_CASES
                if set(c[0]) <= {"topic", "partition", "timestamp_ms", "headers"} and c[1] is not RecordTooLargeError]


@pytest.mark.parametrize(("case", "error", "message"), SHARED_CASES, ids=[repr(c[0])[:60] for c in SHARED_CASES])
def test_send_and_send_batch_refuse_a_shared_bad_argument_with_the_same_error(tansu, tansu_topic, case, error,
                                                                               message):
    topic = tansu_topic(partitions=PARTITIONS)
    kwargs = dict(case)
    bad_topic = kwargs.pop("topic", TOPIC)
    target = topic if bad_topic is TOPIC else bad_topic
    with make_producer(tansu.bootstrap_servers) as producer:
        with pytest.raises(error, match=message) as slow:
            producer.send(target, b"v", **kwargs)  # the topic is not known yet: the Python path
        producer.send(topic, b"good", partition=0).get(WAIT_S)
        with pytest.raises(error, match=message) as fast:
            producer.send(target, b"v", **kwargs)  # the compiled fast path
        with pytest.raises(error, match=message) as batch:
            producer.send_batch(target, [b"v"], **kwargs)
    assert str(slow.value) == str(fast.value) == str(batch.value)


# ---- flush(), close(), partitions_for() -----------------------------------------------------------------------

METHOD_CASES = [
    ("flush", ("soon",), TypeError, r"flush\(timeout\): timeout must be seconds.*str 'soon'"),
    ("flush", (True,), TypeError, r"flush\(timeout\): timeout must be seconds.*bool"),
    ("flush", (-1,), ValueError, r"flush\(timeout\): timeout must be >= 0.*got -1"),
    ("flush", (math.nan,), ValueError, r"flush\(timeout\): timeout must be >= 0.*nan"),
    ("close", ("later",), TypeError, r"close\(timeout\): timeout must be seconds.*str 'later'"),
    ("close", (-0.5,), ValueError, r"close\(timeout\): timeout must be >= 0.*got -0\.5"),
    ("close", (math.nan,), ValueError, r"close\(timeout\): timeout must be >= 0.*nan"),
    ("partitions_for", (None,), TypeError, r"topic must be a str, got NoneType"),
    ("partitions_for", (b"t",), TypeError, r"topic must be a str, got bytes"),
    ("partitions_for", ("",), ValueError, r"topic '' is not a valid topic name: Kafka allows"),
    ("partitions_for", ("no spaces allowed",), ValueError, r"topic 'no spaces allowed' is not a valid topic name: Kafka allows"),
    ("partitions_for", ("..",), ValueError, r"topic '\.\.' is not a valid topic name: Kafka allows"),
]


@pytest.mark.parametrize(("method", "args", "error", "message"), METHOD_CASES,
                         ids=[f"{c[0]}{c[1]!r}" for c in METHOD_CASES])
def test_bad_method_arguments_raise_at_once_naming_them_and_leave_the_producer_working(
        tansu, tansu_topic, method, args, error, message):
    topic = tansu_topic(partitions=PARTITIONS)
    with make_producer(tansu.bootstrap_servers) as producer:
        future = producer.send(topic, b"before")
        with pytest.raises(error, match=message):
            getattr(producer, method)(*args)
        # A refused close() must not have half-closed the producer.
        after = producer.send(topic, b"after")
        producer.flush(WAIT_S)
        assert future.get(0).partition in range(PARTITIONS) and after.get(0).partition in range(PARTITIONS)
        assert len(producer.partitions_for(topic)) == PARTITIONS
    read_back(tansu.bootstrap_servers, topic, PARTITIONS, 2)


# ---- a producer that was closed ---------------------------------------------------------------------------------

def test_send_and_partitions_for_after_close_raise_producer_closed(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    producer = make_producer(tansu.bootstrap_servers)
    producer.send(topic, b"x").get(WAIT_S)
    producer.close()
    with pytest.raises(ProducerClosedError, match=r"send\(\) after the producer was closed"):
        producer.send(topic, b"known topic")
    with pytest.raises(ProducerClosedError, match=r"send\(\) after the producer was closed"):
        producer.send("never-seen-topic", b"unknown topic")
    with pytest.raises(ProducerClosedError, match=r"partitions_for\(\) after the producer was closed"):
        producer.partitions_for(topic)
    producer.flush(1.0)  # nothing is pending: returns
    producer.close()  # again: harmless


# ---- brokers that cannot be reached ------------------------------------------------------------------------------

def test_unreachable_bootstrap_send_and_partitions_for_time_out_naming_the_topic_and_max_block_ms():
    with KafkaProducer(NOWHERE, max_block_ms=300, reconnect_backoff_ms=10) as producer:
        with pytest.raises(KafkaTimeoutError, match=r"topic 'first' not present in metadata after 300 ms"):
            producer.send("first", b"x")
        with pytest.raises(KafkaTimeoutError, match=r"topic 'second' not present in metadata after 300 ms"):
            producer.partitions_for("second")
        with pytest.raises(KafkaTimeoutError, match=r"topic 'first' not present .*max_block_ms"):
            producer.send("first", b"again", key=b"k")


def test_flush_and_close_with_timeouts_while_every_broker_is_down(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    options = {"linger_ms": 0, "request_timeout_ms": 2_000, "delivery_timeout_ms": 60_000}
    producer = make_producer(mock_cluster.bootstrap_servers, **options)
    try:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)
        stuck = producer.send(topic, b"while down", partition=1)
        with pytest.raises(KafkaTimeoutError, match=r"flush\(\) did not complete within 0\.3 s"):
            producer.flush(0.3)
        assert not stuck.is_done
        # Still usable: the brokers come back and both the stuck record and a new one are delivered.
        mock_cluster.broker_up(ALL_BROKERS)
        later = producer.send(topic, b"after", partition=1)
        producer.flush(WAIT_S)
        assert [stuck.get(0).offset, later.get(0).offset] == [0, 1]
        # close(timeout) with every broker gone returns and fails what it could not send.
        mock_cluster.broker_down(ALL_BROKERS)
        orphan = producer.send(topic, b"never sent", partition=0)
        producer.close(0.3)
        with pytest.raises(ProducerClosedError):
            orphan.get(WAIT_S)
        with pytest.raises(ProducerClosedError):
            producer.send(topic, b"after close")
    finally:
        producer.close(0)
        mock_cluster.broker_up(ALL_BROKERS)
    read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, 3)


# ---- configured callables that return nonsense -------------------------------------------------------------------

def _misbehaving(option: str, bad):
    """The option's callable: `bad` for the record marked "bad", a proper answer for every other record."""
    if option == "partitioner":
        return lambda topic, key, value, cluster: bad if value == b"bad" else 0
    if option == "value_serializer":
        return lambda value: bad if value == "bad" else value.encode()
    return lambda key: bad if key == "bad" else (None if key is None else key.encode())


PLUGIN_CASES = [
    ("partitioner", -1, ValueError, r"the partitioner returned -1 for topic '.*', not a partition >= 0"),
    ("partitioner", "1", TypeError, r"the partitioner returned '1', not an int"),
    ("partitioner", PARTITIONS, ValueError, rf"partition {PARTITIONS} is out of range"),
    ("value_serializer", "text", TypeError, r"value_serializer returned str 'text', not bytes or None"),
    ("value_serializer", 5, TypeError, r"value_serializer returned int 5, not bytes or None"),
    ("key_serializer", {"k": 1}, TypeError, r"key_serializer returned dict .*, not bytes or None"),
]


@pytest.mark.parametrize(("option", "bad", "error", "message"), PLUGIN_CASES,
                         ids=[f"{c[0]}->{c[1]!r}" for c in PLUGIN_CASES])
def test_partitioner_or_serializer_returning_nonsense_is_named_and_the_producer_still_delivers(
        tansu, tansu_topic, option, bad, error, message):
    topic = tansu_topic(partitions=PARTITIONS)
    with make_producer(tansu.bootstrap_servers, **{option: _misbehaving(option, bad)}) as producer:
        good_value = "good" if option == "value_serializer" else b"good"
        bad_call = {"key": "bad"} if option == "key_serializer" else {}
        bad_value = "bad" if option == "value_serializer" else (good_value if bad_call else b"bad")
        # Good records go to partition 0: the test partitioner's answer, named outright for the serializer cases.
        good = {} if option == "partitioner" else {"partition": 0}
        with pytest.raises(error, match=message):
            producer.send(topic, bad_value, **bad_call)
        assert producer.send(topic, good_value, **good).get(WAIT_S).offset == 0
        with pytest.raises(error, match=message):
            producer.send(topic, bad_value, **bad_call)
        assert producer.send(topic, good_value, **good).get(WAIT_S).offset == 1
    read_back(tansu.bootstrap_servers, topic, PARTITIONS, 2)
