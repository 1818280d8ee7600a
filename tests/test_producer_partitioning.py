"""Where records land: keyed ones on the Java client's murmur2 partition, keyless ones by the uniform sticky rule.

The murmur2 oracle is kafka-python's implementation; the partition is checked both in RecordMetadata and where
the consumer finds the record.
"""
from __future__ import annotations

import itertools
import time

from producer_support import WAIT_S, make_producer, murmur2_partition, read_back

PARTITIONS = 12


def test_keyed_records_land_on_murmur2_partition(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    keys = [b"user-%d" % i for i in range(150)] + [b"", b"\x00", bytes(range(256)), "\u00fcml\u00e4ut".encode()]
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        futures = [producer.send(topic, b"v%d" % i, key) for i, key in enumerate(keys)]
        metadata = [f.get(WAIT_S) for f in futures]

    expected = [murmur2_partition(key, PARTITIONS) for key in keys]
    assert [md.partition for md in metadata] == expected
    assert len(set(expected)) == PARTITIONS  # the keys exercise every partition
    stored = read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, len(keys))
    where = {s.key: p for p, ss in stored.items() for s in ss}
    assert [where[key] for key in keys] == expected


def test_same_key_always_lands_on_the_same_partition_across_producers(tansu, tansu_topic):
    topic = tansu_topic(partitions=7)
    keys = [b"order-%d" % (i % 10) for i in range(40)]
    seen: dict[bytes, set[int]] = {}
    for _ in range(2):
        with make_producer(tansu.bootstrap_servers) as producer:
            for key, f in [(k, producer.send(topic, b"x", k)) for k in keys]:
                seen.setdefault(key, set()).add(f.get(WAIT_S).partition)

    assert {k: v for k, v in seen.items() if len(v) != 1} == {}
    assert {k: next(iter(v)) for k, v in seen.items()} == {k: murmur2_partition(k, 7) for k in seen}


def test_keyless_records_reach_every_partition_over_many_batches(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    # batch_size 512 and 100-byte values: the sticky partition changes every ~5 records, so 1000 records make
    # ~200 random choices; the chance that a partition is never picked is below 1e-6.
    with make_producer(mock_cluster.bootstrap_servers, batch_size=512, linger_ms=20) as producer:
        futures = [producer.send(topic, b"%099d" % i) for i in range(1000)]
        partitions = [f.get(WAIT_S).partition for f in futures]

    assert sorted(set(partitions)) == list(range(PARTITIONS))


def test_keyless_records_stick_to_one_partition_for_about_batch_size_bytes(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    batch_size, value_size = 2048, 100
    with make_producer(mock_cluster.bootstrap_servers, batch_size=batch_size, linger_ms=20) as producer:
        futures = [producer.send(topic, b"v" * value_size) for i in range(400)]
        partitions = [f.get(WAIT_S).partition for f in futures]

    runs = [len(list(group)) for _, group in itertools.groupby(partitions)]
    # Every run but the last (cut short by the end of the stream) carried about batch_size bytes. A record's
    # size in the batch is its value plus a few bytes of framing (length, attributes, deltas, key and value
    # lengths, header count): between value_size and value_size + 16. The switch comes with the record that
    # reaches batch_size, so a run is at most one record past it.
    smallest, largest = value_size, value_size + 16
    for run in runs[:-1]:
        assert batch_size - largest <= run * largest and run * smallest <= batch_size + smallest, runs
    assert len(runs) >= 400 * smallest // (batch_size + largest)


def test_explicit_partition_wins_over_key(tansu, tansu_topic):
    topic = tansu_topic(partitions=4)
    key = b"some-key"
    target = (murmur2_partition(key, 4) + 1) % 4
    with make_producer(tansu.bootstrap_servers) as producer:
        md = producer.send(topic, b"v", key, partition=target).get(WAIT_S)

    assert md.partition == target
    stored = read_back(tansu.bootstrap_servers, topic, 4, 1)
    assert [s.key for s in stored[target]] == [key]


def test_custom_partitioner_receives_serialized_bytes_and_cluster(tansu, tansu_topic):
    topic = tansu_topic(partitions=5)
    calls = []

    def last_partition(topic_name, key_bytes, value_bytes, cluster):
        calls.append((topic_name, key_bytes, value_bytes, len(cluster.partitions_for_topic(topic_name))))
        return len(cluster.partitions_for_topic(topic_name)) - 1

    with make_producer(tansu.bootstrap_servers, partitioner=last_partition,
                       key_serializer=str.encode, value_serializer=str.encode) as producer:
        md = producer.send(topic, "value", "key").get(WAIT_S)

    assert md.partition == 4
    assert calls == [(topic, b"key", b"value", 5)]


def test_keyless_records_avoid_partitions_without_a_leader(mock_cluster, mock_topic):
    topic = mock_topic(partitions=6)
    leaderless = {1, 4}
    for p in leaderless:
        mock_cluster.set_partition_leader(topic, p, -1)
    with make_producer(mock_cluster.bootstrap_servers, batch_size=256, linger_ms=5) as producer:
        futures = [producer.send(topic, b"%099d" % i) for i in range(300)]
        partitions = {f.get(WAIT_S).partition for f in futures}

    assert partitions == {0, 2, 3, 5}


def test_keyed_record_for_a_leaderless_partition_waits_for_a_leader(mock_cluster, mock_topic):
    topic = mock_topic(partitions=3)
    key = next(b"k%d" % i for i in range(1000) if murmur2_partition(b"k%d" % i, 3) == 1)
    mock_cluster.set_partition_leader(topic, 1, -1)
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        producer.send(topic, b"warm-up", partition=0).get(WAIT_S)
        waiting = producer.send(topic, b"keyed", key)
        other = producer.send(topic, b"other", partition=2).get(WAIT_S)
        assert other.offset == 0 and not waiting.done()
        # Give the producer time to run out of other work, so that only its own metadata refreshes can notice
        # the new leader (this pause is not measured; it only sets the scene).
        time.sleep(0.5)
        mock_cluster.set_partition_leader(topic, 1, 3)
        md = waiting.get(WAIT_S)

    assert (md.partition, md.offset) == (1, 0)
