"""Options (snake_case and Java names, validation), partitions_for, metrics, and bad send() arguments."""
from __future__ import annotations

import time

import pytest

from kafkaprod import KafkaProducer
from kafkaprod.errors import KafkaError, KafkaTimeoutError, RecordTooLargeError
from mock_cluster import ALL_BROKERS
from producer_support import PRODUCE, WAIT_S, make_producer, read_back

NOWHERE = "127.0.0.1:9"  # validation happens before any connection is needed


# ---- options ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lingr_ms", "linger.mss", "bootstrap.server", "no_such_option"])
def test_unknown_option_raises_value_error_naming_it(name):
    with pytest.raises(ValueError, match=f"unknown producer option '{name}'"):
        KafkaProducer(NOWHERE, config={name: 1})


def test_unknown_keyword_option_suggests_the_close_match():
    with pytest.raises(ValueError, match="'lingerms'.*did you mean 'linger_ms'"):
        KafkaProducer(NOWHERE, lingerms=5)


@pytest.mark.parametrize(("options", "error", "named"), [
    ({"acks": 2}, ValueError, "acks"),
    ({"acks": "some"}, ValueError, "acks"),
    ({"linger_ms": "5"}, TypeError, "linger_ms"),
    ({"linger_ms": -1}, ValueError, "linger_ms"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"buffer_memory": 1.5}, TypeError, "buffer_memory"),
    ({"compression_type": "brotli"}, ValueError, "compression_type"),
    ({"enable_idempotence": "maybe"}, TypeError, "enable_idempotence"),
    ({"max_block_ms": True}, TypeError, "max_block_ms"),
    ({"key_serializer": 42}, TypeError, "key_serializer"),
    ({"partitioner": "murmur2"}, TypeError, "partitioner"),
    ({"interceptors": [object()]}, TypeError, "interceptors"),
    ({"bootstrap_servers": "no-port"}, ValueError, "bootstrap_servers"),
    ({"bootstrap_servers": "host:99999"}, ValueError, "bootstrap_servers"),
    ({"bootstrap_servers": ""}, ValueError, "bootstrap_servers"),
    ({"bootstrap_servers": 9092}, TypeError, "bootstrap_servers"),
    ({"delivery_timeout_ms": 1000, "request_timeout_ms": 30000}, ValueError, "delivery_timeout_ms"),
    ({"enable_idempotence": True, "max_in_flight_requests_per_connection": 6}, ValueError,
     "max_in_flight_requests_per_connection"),
])
def test_invalid_option_values_raise_naming_the_option(options, error, named):
    options = {"bootstrap_servers": NOWHERE, **options}
    with pytest.raises(error, match=named):
        KafkaProducer(**options)


def test_java_option_names_are_accepted_and_applied(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    config = {"bootstrap.servers": mock_cluster.bootstrap_servers, "linger.ms": 7, "acks": "all",
              "compression.type": "gzip", "batch.size": 4096, "max.block.ms": 20_000, "client.id": "java-named",
              "enable.idempotence": "true", "retry.backoff.ms": 20}
    producer = KafkaProducer(config=config)
    try:
        cfg = producer.config
        assert (cfg.linger_ms, cfg.acks, cfg.compression_type, cfg.batch_size, cfg.client_id) == \
               (7, -1, "gzip", 4096, "java-named")
        assert cfg.enable_idempotence is True
        assert producer.send(topic, b"x" * 100).get(WAIT_S).offset == 0
        assert producer.metrics()["compression-rate-avg"] < 0.5  # gzip really ran on 100 equal bytes
    finally:
        producer.close()


def test_keyword_options_win_over_the_config_dict():
    producer_config = {"linger.ms": 7, "batch_size": 1000}
    from kafkaprod.config import resolve

    cfg = resolve(producer_config, linger_ms=9, bootstrap_servers=NOWHERE)
    assert (cfg.linger_ms, cfg.batch_size) == (9, 1000)


def test_idempotence_is_on_by_default_and_off_by_default_when_acks_do_not_allow_it():
    from kafkaprod.config import resolve

    assert resolve(bootstrap_servers=NOWHERE).enable_idempotence is True
    assert resolve(bootstrap_servers=NOWHERE, acks=1).enable_idempotence is False


# ---- bad send() arguments ------------------------------------------------------------------------------------------

def test_bad_send_arguments_raise_at_once_naming_what_was_wrong(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        producer.send(topic, b"known", partition=0).get(WAIT_S)
        with pytest.raises(ValueError, match=r"partition 2 is out of range.*2 partitions"):
            producer.send(topic, b"x", partition=2)
        with pytest.raises(ValueError, match="partition"):
            producer.send(topic, b"x", partition=-1)
        with pytest.raises(TypeError, match="header"):
            producer.send(topic, b"x", headers=[("h", "not bytes")])
        with pytest.raises(TypeError, match="header"):
            producer.send(topic, b"x", headers=[(b"name-as-bytes", b"v")])
        with pytest.raises(TypeError, match="timestamp_ms"):
            producer.send(topic, b"x", timestamp_ms=1.5)
        with pytest.raises(TypeError, match="timestamp_ms"):
            producer.send(topic, b"x", timestamp_ms=True)
        with pytest.raises(TypeError, match="timestamp_ms"):
            producer.send(topic, b"x", timestamp_ms="1700000000000")
        with pytest.raises(ValueError, match="timestamp_ms"):
            producer.send(topic, b"x", timestamp_ms=-5)
        with pytest.raises((TypeError, ValueError), match="topic"):
            producer.send("", b"x")
        with pytest.raises(TypeError, match="topic"):
            producer.send(None, b"x")
        with pytest.raises(TypeError, match="value"):
            producer.send(topic, 12345)
        # None of that left anything behind: the next record is the second of the topic.
        assert producer.send(topic, b"after", partition=0).get(WAIT_S).offset == 1


def test_record_larger_than_max_request_size_is_refused_naming_the_size(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, max_request_size=10_000) as producer:
        producer.send(topic, b"small").get(WAIT_S)
        with pytest.raises(RecordTooLargeError, match=r"max_request_size \(10000\)"):
            producer.send(topic, b"x" * 20_000)
        assert producer.send(topic, b"after").get(WAIT_S).offset == 1


def test_record_larger_than_buffer_memory_is_refused_naming_it(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, buffer_memory=32_768, batch_size=16_384) as producer:
        producer.send(topic, b"small").get(WAIT_S)
        with pytest.raises(RecordTooLargeError, match="buffer_memory"):
            producer.send(topic, b"x" * 40_000)


# ---- partitions_for ------------------------------------------------------------------------------------------------

def test_partitions_for_lists_every_partition_with_its_leader(mock_cluster, mock_topic):
    topic = mock_topic(partitions=12)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        infos = producer.partitions_for(topic)

    assert [p.partition for p in infos] == list(range(12))
    assert {p.partition: p.leader for p in infos} == {p: p % 3 + 1 for p in range(12)}
    assert all(p.topic == topic and sorted(p.replicas) == [1, 2, 3] for p in infos)


def test_partitions_for_follows_a_leader_change_after_a_refresh(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        assert producer.partitions_for(topic)[0].leader == 1
        mock_cluster.set_partition_leader(topic, 0, 2)
        # The next produce to partition 0 goes to the old leader, is refused, and makes the producer refresh.
        producer.send(topic, b"x", partition=0).get(WAIT_S)
        assert producer.partitions_for(topic)[0].leader == 2


def test_partitions_for_through_tansu(tansu, tansu_topic):
    topic = tansu_topic(partitions=5)
    with make_producer(tansu.bootstrap_servers) as producer:
        assert [p.partition for p in producer.partitions_for(topic)] == list(range(5))


# ---- metadata and bootstrap ---------------------------------------------------------------------------------------

def test_unreachable_bootstrap_times_out_after_max_block_ms_naming_the_topic():
    with KafkaProducer("127.0.0.1:9", max_block_ms=300, reconnect_backoff_ms=10) as producer:
        with pytest.raises(KafkaTimeoutError, match="'nowhere'.*max_block_ms"):
            producer.send("nowhere", b"x")


def test_producer_starts_while_brokers_are_down_and_sends_once_they_are_up(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    mock_cluster.broker_down(ALL_BROKERS)
    with make_producer(mock_cluster.bootstrap_servers, max_block_ms=300) as producer:
        with pytest.raises(KafkaTimeoutError, match=topic):
            producer.send(topic, b"too early")
        mock_cluster.broker_up(ALL_BROKERS)
        # max_block_ms is short here, so allow a few attempts while the producer reconnects; the point is
        # that it recovers at all.
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                future = producer.send(topic, b"once up")
                break
            except KafkaTimeoutError:
                assert time.monotonic() < deadline, "the producer never found the topic after the brokers came up"
        assert future.get(WAIT_S).offset == 0
        assert producer.send(topic, b"second").get(WAIT_S).offset == 1
    read_back(mock_cluster.bootstrap_servers, topic, 1, 2)


def test_records_expire_after_delivery_timeout_while_no_broker_answers(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    calls = []
    options = dict(delivery_timeout_ms=1200, request_timeout_ms=1000, linger_ms=0)
    with make_producer(mock_cluster.bootstrap_servers, **options) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)
        futures = [producer.send(topic, b"late%d" % i, callback=lambda md, exc: calls.append(exc)) for i in range(3)]
        excs = [f.exception(WAIT_S) for f in futures]
        assert all(isinstance(e, KafkaTimeoutError) for e in excs), excs
        assert all("delivery_timeout_ms" in str(e) for e in excs), excs
        assert len(calls) == 3 and all(isinstance(e, KafkaError) for e in calls)
        assert producer.metrics()["record-error-total"] == 3
        mock_cluster.broker_up(ALL_BROKERS)
        assert producer.send(topic, b"after").get(WAIT_S).offset >= 1


# ---- metrics -------------------------------------------------------------------------------------------------------

METRIC_KEYS = ["record-send-rate", "record-error-rate", "record-retry-rate", "batch-size-avg",
               "records-per-request-avg", "request-latency-avg", "buffer-available-bytes", "bufferpool-wait-time",
               "compression-rate-avg"]


def test_metrics_are_present_and_plausible_after_a_run(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    buffer_memory = 1 << 20
    with make_producer(mock_cluster.bootstrap_servers, buffer_memory=buffer_memory, compression_type="lz4",
                       linger_ms=20) as producer:
        before = producer.metrics()
        assert all(key in before for key in METRIC_KEYS)
        assert before["record-send-rate"] == 0 and before["buffer-available-bytes"] == buffer_memory

        mock_cluster.start_request_tracking()
        futures = [producer.send(topic, b"a" * 200, partition=i % 3) for i in range(300)]
        producer.flush(WAIT_S)
        assert all(f.exception(0) is None for f in futures)
        m = producer.metrics()
        requests = len(mock_cluster.requests(PRODUCE))

    assert m["record-send-total"] == 300
    assert m["record-send-rate"] > 0
    assert m["record-error-rate"] == 0 and m["record-error-total"] == 0
    assert m["record-retry-rate"] == 0
    assert 61 < m["batch-size-avg"] < 200 * 300  # some records' worth of compressed bytes per batch
    assert m["request-total"] == requests
    assert m["records-per-request-avg"] == pytest.approx(300 / requests)
    assert m["request-latency-avg"] > 0 and m["request-latency-max"] >= m["request-latency-avg"]
    assert m["buffer-available-bytes"] == buffer_memory  # every batch's memory went back to the pool
    assert m["bufferpool-wait-time"] == 0
    assert 0 < m["compression-rate-avg"] < 0.5  # 200 equal bytes per record compress well


def test_metrics_count_retries_and_errors(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=20) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [6, 6])  # NOT_LEADER_OR_FOLLOWER twice: retried
        ok = [producer.send(topic, b"ok%d" % i) for i in range(4)]
        producer.flush(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [87])  # INVALID_RECORD: fails
        bad = [producer.send(topic, b"bad%d" % i) for i in range(3)]
        producer.flush(WAIT_S)
        m = producer.metrics()

    assert all(f.exception(0) is None for f in ok) and all(f.exception(0) is not None for f in bad)
    assert m["record-send-total"] == 5
    assert m["record-retry-total"] == 8  # the batch of 4, retried twice
    assert m["record-error-total"] == 3
    assert m["record-retry-rate"] > 0 and m["record-error-rate"] > 0
