"""acks=0, 1 and all: what the broker is asked for, and what the futures report."""
from __future__ import annotations

import time

import pytest

from producer_support import PRODUCE, WAIT_S, make_producer, read_back


@pytest.mark.parametrize("acks", [1, "all", -1, "1"])
def test_acknowledged_records_report_their_offsets(mock_cluster, mock_topic, acks):
    topic = mock_topic(partitions=2)
    with make_producer(mock_cluster.bootstrap_servers, acks=acks) as producer:
        futures = [producer.send(topic, b"r%d" % i, partition=i % 2) for i in range(20)]
        metadata = [f.get(WAIT_S) for f in futures]

    assert [md.offset for md in metadata] == [i // 2 for i in range(20)]
    stored = read_back(mock_cluster.bootstrap_servers, topic, 2, 20)
    assert [s.value for s in stored[0]] == [b"r%d" % i for i in range(0, 20, 2)]


def test_acks_zero_futures_resolve_with_offset_minus_one_and_records_arrive(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)
    calls = []
    with make_producer(mock_cluster.bootstrap_servers, acks=0) as producer:
        futures = [producer.send(topic, b"fire-%d" % i, partition=i % 2,
                                 callback=lambda md, exc: calls.append((md, exc))) for i in range(10)]
        metadata = [f.get(WAIT_S) for f in futures]

    assert all(md.offset == -1 for md in metadata)
    assert [md.partition for md in metadata] == [i % 2 for i in range(10)]
    assert len(calls) == 10 and all(exc is None and md.offset == -1 for md, exc in calls)
    # Nothing waits for the broker with acks=0, so read until all ten have arrived rather than to an end marker.
    stored = read_back(mock_cluster.bootstrap_servers, topic, 2, 10, exact=False)
    assert sorted(s.value for ss in stored.values() for s in ss) == sorted(b"fire-%d" % i for i in range(10))


def test_acks_zero_sends_no_producer_id_request_and_gets_no_answers(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    mock_cluster.start_request_tracking()
    with make_producer(mock_cluster.bootstrap_servers, acks=0) as producer:
        producer.send(topic, b"x").get(WAIT_S)
        assert producer.config.enable_idempotence is False  # idempotence needs acks=all; off by default here

    # With acks=0 the future resolves once the request is written, so the mock may still be reading it: wait for
    # the mock to have seen it (a synchronisation, not a timing assertion).
    deadline = time.monotonic() + WAIT_S
    while not mock_cluster.requests(PRODUCE) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(mock_cluster.requests(PRODUCE)) >= 1
    assert not mock_cluster.requests(22)  # InitProducerId


def test_idempotence_with_acks_one_is_refused_naming_both_options():
    with pytest.raises(ValueError, match="enable_idempotence.*acks"):
        make_producer("localhost:9", acks=1, enable_idempotence=True)


def test_acks_all_through_tansu(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    with make_producer(tansu.bootstrap_servers, acks="all") as producer:
        metadata = [producer.send(topic, b"%d" % i).get(WAIT_S) for i in range(3)]

    assert [md.offset for md in metadata] == [0, 1, 2]
