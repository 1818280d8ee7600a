"""A 3-broker mock cluster with faults: moving leaders, pushed errors, brokers down, slow brokers.

Every test here ends by reading the topic back to an end marker, so "delivered exactly once and in order"
is checked against what the brokers really hold, not only against the futures.
"""
from __future__ import annotations

import pytest

from kafkaprod.errors import BufferExhaustedError, KafkaError, KafkaTimeoutError
from mock_cluster import ALL_BROKERS
from producer_support import PRODUCE, WAIT_S, CallbackLog, make_producer, read_back

PARTITIONS = 12
# A linger no test waits out: records leave only because flush() or close() asks for it.
LONG_LINGER = {"linger_ms": 600_000, "delivery_timeout_ms": 1_000_000}
NOT_LEADER_OR_FOLLOWER = 6
LEADER_NOT_AVAILABLE = 5
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS = 19
MESSAGE_TOO_LARGE = 10
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
COORDINATOR_LOAD_IN_PROGRESS = 14
CLUSTER_AUTHORIZATION_FAILED = 31
INIT_PRODUCER_ID = 22
UNKNOWN_TOPIC_OR_PARTITION = 3


def assert_in_order_exactly_once(stored, sent_by_partition):
    for p, values in sent_by_partition.items():
        assert [s.value for s in stored[p]] == values, f"partition {p}"
        assert [s.offset for s in stored[p]] == list(range(len(values)))


def test_leaders_moved_mid_stream_lose_duplicate_and_reorder_nothing(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    log = CallbackLog()
    sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    futures = []
    chunks, per_chunk = 6, 240
    # A little latency keeps requests in flight when the leaders move, so some are answered NOT_LEADER.
    mock_cluster.set_rtt(ALL_BROKERS, 20)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=2, batch_size=1024) as producer:
        for chunk in range(chunks):
            first = len(futures)
            for i in range(first, first + per_chunk):
                p = i % PARTITIONS
                value = b"p%02d-seq%05d-" % (p, i) + b"." * 40
                futures.append(producer.send(topic, value, partition=p, callback=log.for_record(i)))
                sent[p].append(value)
            # Once the chunk is moving (its first record acknowledged, the rest queued or in flight), rotate
            # every partition to the next broker.
            futures[first].get(WAIT_S)
            mock_cluster.set_partition_leaders(topic, {q: (q + chunk + 1) % 3 + 1 for q in range(PARTITIONS)})
        producer.flush(WAIT_S)
        log.wait_for(range(len(futures)))
        retried = producer.metrics()["record-retry-total"]
        # Every batch's memory is back in the pool, retried ones included.
        assert producer.metrics()["buffer-available-bytes"] == producer.config.buffer_memory
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    total = chunks * per_chunk
    assert log.counts() == {i: 1 for i in range(total)}
    assert [exc for calls in log.calls.values() for _, exc in calls if exc is not None] == []
    assert retried > 0  # the moves really hit requests on their way (else this test proves little)
    metadata = [f.get(0) for f in futures]
    stored = read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, total)
    assert_in_order_exactly_once(stored, sent)
    for i, md in enumerate(metadata):
        assert stored[md.partition][md.offset].value.startswith(b"p%02d-seq%05d-" % (md.partition, i))


def test_records_reach_partitions_spread_over_all_three_brokers(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.start_request_tracking()
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        futures = [producer.send(topic, b"x%d" % i, partition=i % PARTITIONS) for i in range(48)]
        producer.flush(WAIT_S)
        leaders = {p.partition: p.leader for p in producer.partitions_for(topic)}

    assert leaders == {p: p % 3 + 1 for p in range(PARTITIONS)}
    assert {r.broker_id for r in mock_cluster.requests(PRODUCE)} == {1, 2, 3}
    assert all(f.exception(0) is None for f in futures)
    read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, 48)


@pytest.mark.parametrize("error", [NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, REQUEST_TIMED_OUT,
                                   NOT_ENOUGH_REPLICAS])
def test_retriable_errors_are_retried_and_delivered_once(mock_cluster, mock_topic, error):
    topic = mock_topic(partitions=3)
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=20) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.start_request_tracking()
        mock_cluster.push_request_errors(PRODUCE, [error] * 3)
        futures = [producer.send(topic, b"r%d" % i, partition=i % 3, callback=log.for_record(i)) for i in range(30)]
        producer.flush(WAIT_S)
        log.wait_for(range(30))
        retries = producer.metrics()["record-retry-total"]

    assert log.counts() == {i: 1 for i in range(30)}
    assert all(f.exception(0) is None for f in futures)
    assert retries >= 1
    assert len(mock_cluster.requests(PRODUCE)) >= 4  # three refused requests, then at least one accepted
    stored = read_back(mock_cluster.bootstrap_servers, topic, 3, 31)
    assert_in_order_exactly_once(stored, {0: [b"warm-up"] + [b"r%d" % i for i in range(0, 30, 3)],
                                          1: [b"r%d" % i for i in range(1, 30, 3)],
                                          2: [b"r%d" % i for i in range(2, 30, 3)]})


def test_out_of_order_answer_behind_a_retried_batch_is_retried_not_failed(mock_cluster, mock_topic):
    # Two batches of one partition in flight in two requests. The first is refused with a retriable error; a
    # broker then refuses the second as OUT_OF_ORDER_SEQUENCE_NUMBER, because the sequence before it never
    # arrived. That is not the second batch's fault: it must be retried after the first, not failed.
    topic = mock_topic(partitions=1)
    mock_cluster.set_rtt(ALL_BROKERS, 30)  # both requests are on the wire before the first answer
    with make_producer(mock_cluster.bootstrap_servers, batch_size=1024, **LONG_LINGER) as producer:
        producer.send(topic, b"warm-up")
        producer.flush(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [NOT_LEADER_OR_FOLLOWER, OUT_OF_ORDER_SEQUENCE_NUMBER])
        values = [b"%03d" % i + b"." * 200 for i in range(8)]  # two batches of about 1 KB
        futures = [producer.send(topic, v) for v in values]
        producer.flush(WAIT_S)
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert [f.exception(0) for f in futures] == [None] * 8
    [stored] = read_back(mock_cluster.bootstrap_servers, topic, 1, 9).values()
    assert [s.value for s in stored] == [b"warm-up"] + values


def test_producer_without_idempotence_retries_and_delivers(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)
    mock_cluster.start_request_tracking()
    with make_producer(mock_cluster.bootstrap_servers, enable_idempotence=False, linger_ms=20) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT])
        futures = [producer.send(topic, b"n%d" % i, partition=i % 2) for i in range(10)]
        producer.flush(WAIT_S)

    assert all(f.exception(0) is None for f in futures)
    assert not mock_cluster.requests(22)  # no InitProducerId without idempotence
    stored = read_back(mock_cluster.bootstrap_servers, topic, 2, 11)
    assert sorted(s.value for s in stored[1]) == sorted(b"n%d" % i for i in range(1, 10, 2))


def test_retriable_init_producer_id_errors_are_retried_before_the_first_produce(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    mock_cluster.push_request_errors(INIT_PRODUCER_ID, [COORDINATOR_LOAD_IN_PROGRESS] * 3)
    mock_cluster.start_request_tracking()
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        futures = [producer.send(topic, b"i%d" % i) for i in range(5)]
        offsets = [f.get(WAIT_S).offset for f in futures]

    assert offsets == [0, 1, 2, 3, 4]
    assert len(mock_cluster.requests(INIT_PRODUCER_ID)) == 4  # three refused, one answered
    read_back(mock_cluster.bootstrap_servers, topic, 1, 5)


def test_fatal_init_producer_id_error_fails_pending_and_later_sends(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    mock_cluster.push_request_errors(INIT_PRODUCER_ID, [CLUSTER_AUTHORIZATION_FAILED])
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        # Queued before or after the producer learns it may not produce: either way the record must end.
        try:
            future = producer.send(topic, b"doomed", callback=log.for_record("doomed"))
        except KafkaError as exc:
            assert "CLUSTER_AUTHORIZATION_FAILED" in str(exc) or "CLUSTER_AUTHORIZATION_FAILED" in str(exc.__cause__)
        else:
            exc = future.exception(WAIT_S)
            assert isinstance(exc, KafkaError) and exc.errno == CLUSTER_AUTHORIZATION_FAILED
            assert log.counts() == {"doomed": 1}
        # Later sends fail at once, naming the cause, instead of queueing records nobody will send.
        with pytest.raises(KafkaError, match="CLUSTER_AUTHORIZATION_FAILED"):
            producer.send(topic, b"after").get(WAIT_S)


def test_dropped_connections_are_retried_without_duplicates(mock_cluster, mock_topic):
    from mock_cluster import TRANSPORT_ERROR

    topic = mock_topic(partitions=2)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=20) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [TRANSPORT_ERROR, TRANSPORT_ERROR])
        futures = [producer.send(topic, b"d%d" % i, partition=i % 2) for i in range(20)]
        producer.flush(WAIT_S)

    assert all(f.exception(0) is None for f in futures)
    stored = read_back(mock_cluster.bootstrap_servers, topic, 2, 21)
    assert_in_order_exactly_once(stored, {0: [b"warm-up"] + [b"d%d" % i for i in range(0, 20, 2)],
                                          1: [b"d%d" % i for i in range(1, 20, 2)]})


def test_non_retriable_error_fails_the_records_without_retrying(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=20) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.start_request_tracking()
        mock_cluster.push_request_errors(PRODUCE, [87])  # INVALID_RECORD
        futures = [producer.send(topic, b"x%d" % i) for i in range(4)]
        producer.flush(WAIT_S)
        errors = producer.metrics()["record-error-total"]

    assert [f.exception(0).errno for f in futures] == [87] * 4
    assert errors == 4
    assert len(mock_cluster.requests(PRODUCE)) == 1
    read_back(mock_cluster.bootstrap_servers, topic, 1, 1)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_message_too_large_batch_is_split_and_every_record_delivered_once(mock_cluster, mock_topic, codec):
    topic = mock_topic(partitions=1)
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=100, batch_size=64 * 1024,
                       compression_type=codec) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.start_request_tracking()
        mock_cluster.push_request_errors(PRODUCE, [MESSAGE_TOO_LARGE])
        values = [b"split-%02d-" % i + bytes([i]) * (i * 37) for i in range(16)]
        futures = [producer.send(topic, v, key=b"k%d" % i, headers=[("i", b"%d" % i)], callback=log.for_record(i))
                   for i, v in enumerate(values)]
        producer.flush(WAIT_S)
        log.wait_for(range(16))
        # The refused batch's pooled memory went back; the halves never took any from the pool.
        assert producer.metrics()["buffer-available-bytes"] == producer.config.buffer_memory

    assert log.counts() == {i: 1 for i in range(16)}
    metadata = [f.get(0) for f in futures]
    assert [md.offset for md in metadata] == list(range(1, 17))
    assert len(mock_cluster.requests(PRODUCE)) >= 3  # the refused batch, then its two halves
    [stored] = read_back(mock_cluster.bootstrap_servers, topic, 1, 17).values()
    assert [s.value for s in stored] == [b"warm-up"] + values
    assert [s.key for s in stored[1:]] == [b"k%d" % i for i in range(16)]
    assert [s.headers for s in stored[1:]] == [[("i", b"%d" % i)] for i in range(16)]


def test_message_too_large_repeatedly_splits_down_to_single_records(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=100, compression_type="gzip") as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        # Latency, so that both halves of the first split are in flight when the first of them is refused.
        mock_cluster.set_rtt(ALL_BROKERS, 30)
        # 8 records -> 4 + 4, and both halves refused again -> 2 + 2 + 2 + 2, which must still land in order.
        mock_cluster.push_request_errors(PRODUCE, [MESSAGE_TOO_LARGE] * 3)
        futures = [producer.send(topic, b"m%d" % i) for i in range(8)]
        producer.flush(WAIT_S)
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert [f.get(0).offset for f in futures] == list(range(1, 9))
    [stored] = read_back(mock_cluster.bootstrap_servers, topic, 1, 9).values()
    assert [s.value for s in stored] == [b"warm-up"] + [b"m%d" % i for i in range(8)]


def test_message_too_large_splits_every_batch_of_the_refused_request(mock_cluster):
    topic = "all-on-broker-1"
    mock_cluster.create_topic(topic, 3, 3, leaders=[1, 1, 1])  # one request carries all three partitions
    log = CallbackLog()
    with make_producer(mock_cluster.bootstrap_servers, **LONG_LINGER) as producer:
        producer.send(topic, b"warm-up", partition=0)
        producer.flush(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [MESSAGE_TOO_LARGE])
        futures = [producer.send(topic, b"r%02d" % i, partition=i % 3, callback=log.for_record(i)) for i in range(12)]
        producer.flush(WAIT_S)
        log.wait_for(range(12))

    assert log.counts() == {i: 1 for i in range(12)}
    assert all(f.exception(0) is None for f in futures)
    stored = read_back(mock_cluster.bootstrap_servers, topic, 3, 13)
    assert [s.value for s in stored[0]] == [b"warm-up"] + [b"r%02d" % i for i in range(0, 12, 3)]
    assert [s.value for s in stored[1]] == [b"r%02d" % i for i in range(1, 12, 3)]
    assert [s.value for s in stored[2]] == [b"r%02d" % i for i in range(2, 12, 3)]


def test_message_too_large_for_a_single_record_fails_it(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        mock_cluster.push_request_errors(PRODUCE, [MESSAGE_TOO_LARGE])
        exc = producer.send(topic, b"alone").exception(WAIT_S)
        after = producer.send(topic, b"after").get(WAIT_S)

    assert isinstance(exc, KafkaError) and exc.errno == MESSAGE_TOO_LARGE
    assert after.offset == 1


def test_broker_down_then_up_delivers_its_partitions_records(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)  # partition 0 led by broker 1
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.broker_down(1)
        stalled = [producer.send(topic, b"s%d" % i, partition=0) for i in range(5)]
        # Another broker's partition is unaffected.
        assert producer.send(topic, b"other", partition=1).get(WAIT_S).offset == 0
        assert not any(f.done() for f in stalled)
        mock_cluster.broker_up(1)
        producer.flush(WAIT_S)

    assert [f.get(0).offset for f in stalled] == [1, 2, 3, 4, 5]
    stored = read_back(mock_cluster.bootstrap_servers, topic, 3, 7)
    assert [s.value for s in stored[0]] == [b"warm-up"] + [b"s%d" % i for i in range(5)]


def test_broker_that_never_answers_fails_records_after_delivery_timeout(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    log = CallbackLog()
    options = dict(request_timeout_ms=300, delivery_timeout_ms=1000, linger_ms=0)
    with make_producer(mock_cluster.bootstrap_servers, **options) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        # Answers would take a minute: only request_timeout_ms and delivery_timeout_ms can end these records.
        mock_cluster.set_rtt(ALL_BROKERS, 60_000)
        futures = [producer.send(topic, b"late%d" % i, callback=log.for_record(i)) for i in range(3)]
        errors = [f.exception(WAIT_S) for f in futures]
        log.wait_for(range(3))
        mock_cluster.set_rtt(ALL_BROKERS, 0)

        assert all(isinstance(e, KafkaTimeoutError) and "delivery_timeout_ms" in str(e) for e in errors), errors
        assert log.counts() == {0: 1, 1: 1, 2: 1}
        # The producer recovers once the broker answers again.
        assert producer.send(topic, b"after").get(WAIT_S).offset >= 1


def test_full_buffer_blocks_send_for_max_block_ms_then_raises_naming_buffer_memory(mock_cluster, mock_topic):
    topic = mock_topic(partitions=4)
    batch_size = 4096
    options = dict(buffer_memory=4 * batch_size, batch_size=batch_size, max_block_ms=300, linger_ms=0)
    with make_producer(mock_cluster.bootstrap_servers, **options) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)  # nothing drains from here on
        queued = []
        with pytest.raises(KafkaTimeoutError, match="buffer_memory") as info:
            for i in range(100):  # 4 batches of memory; one of the next sends must block and give up
                queued.append(producer.send(topic, b"%0999d" % i, partition=i % 4))
        assert isinstance(info.value, BufferExhaustedError)
        assert 4 <= len(queued) < 100

        # Usable afterwards: once the brokers are back, what was queued is delivered and new sends work.
        mock_cluster.broker_up(ALL_BROKERS)
        producer.flush(WAIT_S)
        assert all(f.exception(0) is None for f in queued)
        assert producer.send(topic, b"after", partition=0).get(WAIT_S).offset > 0
        m = producer.metrics()
        assert m["buffer-available-bytes"] == 4 * batch_size
        assert m["bufferpool-wait-time-total"] > 0 and m["bufferpool-wait-time"] > 0  # the blocked send counted

    read_back(mock_cluster.bootstrap_servers, topic, 4, len(queued) + 2)


def test_topic_the_cluster_does_not_have_times_out_naming_the_topic(mock_cluster):
    topic = "absent-topic"
    # The mock would auto-create any topic a Metadata request names; this makes it answer
    # UNKNOWN_TOPIC_OR_PARTITION with no partitions instead, as a cluster without auto-creation does.
    mock_cluster.set_topic_error(topic, UNKNOWN_TOPIC_OR_PARTITION)
    with make_producer(mock_cluster.bootstrap_servers, max_block_ms=500) as producer:
        with pytest.raises(KafkaTimeoutError, match=topic) as info:
            producer.send(topic, b"x")
        assert "max_block_ms" in str(info.value)
        with pytest.raises(KafkaTimeoutError, match=topic):
            producer.partitions_for(topic)

        # The producer is still usable for a topic that exists.
        mock_cluster.create_topic("present-topic", 1, 3)
        assert producer.send("present-topic", b"x").get(WAIT_S).offset == 0


def test_topic_appearing_while_send_waits_is_used(mock_cluster):
    import threading

    topic = "late-topic"
    mock_cluster.set_topic_error(topic, UNKNOWN_TOPIC_OR_PARTITION)
    with make_producer(mock_cluster.bootstrap_servers, max_block_ms=20_000) as producer:
        timer = threading.Timer(0.3, mock_cluster.set_topic_error, (topic, 0))
        timer.start()
        try:
            md = producer.send(topic, b"x", partition=0).get(WAIT_S)
        finally:
            timer.join()
    assert md.offset == 0


def test_invalid_topic_name_is_refused_naming_it(tansu):
    with make_producer(tansu.bootstrap_servers, max_block_ms=5000) as producer:
        with pytest.raises(ValueError, match="bad topic!"):
            producer.send("bad topic!", b"x")


def test_slow_broker_does_not_lose_or_reorder_records(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    mock_cluster.set_rtt(2, 200)  # broker 2 leads partition 1
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=1024) as producer:
        futures = [producer.send(topic, b"%04d" % i + b"." * 100, partition=i % 3) for i in range(150)]
        producer.flush(WAIT_S)
    mock_cluster.set_rtt(2, 0)

    assert all(f.exception(0) is None for f in futures)
    stored = read_back(mock_cluster.bootstrap_servers, topic, 3, 150)
    assert_in_order_exactly_once(stored, {p: [b"%04d" % i + b"." * 100 for i in range(p, 150, 3)] for p in range(3)})
