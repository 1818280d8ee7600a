"""Fault injection against a 3-broker mock cluster (replication factor 3, acks=all, idempotence on by default).

Every value names its partition and its sequence number within that partition (``p=3,s=000017;...``), so the
log read back from the brokers can be audited per partition: records lost, records written more than once,
records behind a later sequence (out of order, counted over first occurrences so a duplicate is not counted
twice). Each scenario adds a row to a summary table printed (and written to ``delivery_faults_summary.txt`` in
pytest's base temp directory) when the module ends.

A limitation of the peer, not of the producer: the librdkafka mock checks idempotent sequence numbers only for
transactional producers, so it does not drop a retried batch it already wrote. Wherever the producer cannot
know whether a batch was written -- a request that timed out, a connection that closed after the broker
appended -- a retry may be written twice on the mock (a real broker answers DUPLICATE_SEQUENCE_NUMBER / dedupes
it). Those scenarios count and report duplicates instead of asserting none; where the mock answers an error
*before* appending (pushed errors, TRANSPORT_ERROR pushes) duplicates must be 0.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from kafkaprod.errors import KafkaError, KafkaTimeoutError
from kafkaprod.tools.fault_proxy import CuttingProxy
from mock_cluster import ALL_BROKERS, TRANSPORT_ERROR
from producer_support import PRODUCE, REPEATED, WAIT_S, CallbackLog, make_producer, read_back

PARTITIONS = 6
NOT_LEADER_OR_FOLLOWER = 6
LEADER_NOT_AVAILABLE = 5
REQUEST_TIMED_OUT = 7
NETWORK_EXCEPTION = 13
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
RECORD_LIST_TOO_LARGE = 18
INVALID_RECORD = 87
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
PRODUCER_FENCED = 90
INIT_PRODUCER_ID = 22
RETRIABLE_BURST = [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NETWORK_EXCEPTION,
                   LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS_AFTER_APPEND]
FILLER = b"." * 60


@dataclass
class Row:
    scenario: str
    records: int
    lost: int
    duplicated: int
    out_of_order: int
    errors_reported: int
    note: str = ""


SUMMARY: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def summary_table(request, tmp_path_factory):
    yield
    header = ("scenario", "records", "lost", "duplicated", "out of order", "errors reported", "note")
    rows = [header] + [(r.scenario, str(r.records), str(r.lost), str(r.duplicated), str(r.out_of_order),
                        str(r.errors_reported), r.note) for r in SUMMARY]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    text = "\n".join(lines) + "\n"
    (tmp_path_factory.getbasetemp() / "delivery_faults_summary.txt").write_text(text)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        # Teardown output is captured (and shown only on failure); the table is for every run's log.
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line("delivery fault injection summary:")
            for line in lines:
                reporter.write_line(line)


def value_of(partition: int, seq: int) -> bytes:
    return b"p=%d,s=%06d;" % (partition, seq) + FILLER


def parse(value: bytes) -> tuple[int, int]:
    head = value.split(b";", 1)[0]
    p, s = head.split(b",")
    return int(p[2:]), int(s[2:])


@dataclass
class Audit:
    lost: int
    duplicated: int
    out_of_order: int


def audit(stored, sent: dict[int, int]) -> Audit:
    """``sent[p]``: how many sequences 0..n-1 were expected on partition p (and only those)."""
    lost = duplicated = out_of_order = 0
    for p, expected in sent.items():
        seqs = []
        for s in stored[p]:
            vp, seq = parse(s.value)
            assert vp == p, f"record {s.value[:20]!r} was written to partition {p}"
            seqs.append(seq)
        counts = Counter(seqs)
        assert set(counts) <= set(range(expected)), f"partition {p} holds records nobody sent successfully"
        lost += expected - len(counts)
        duplicated += sum(c - 1 for c in counts.values())
        seen: set[int] = set()
        highest = -1
        for seq in seqs:
            if seq in seen:
                continue
            seen.add(seq)
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
    return Audit(lost, duplicated, out_of_order)


class Stream:
    """Sends a paced stream of audited records, running fault actions between chunks."""

    def __init__(self, producer, topic: str, partitions: int = PARTITIONS) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.next_seq = [0] * partitions
        self.log = CallbackLog()
        self.futures: dict[tuple[int, int], object] = {}

    def send(self, count: int) -> None:
        for i in range(count):
            p = len(self.futures) % self.partitions
            seq = self.next_seq[p]
            self.next_seq[p] += 1
            rid = (p, seq)
            self.futures[rid] = self.producer.send(self.topic, value_of(p, seq), partition=p,
                                                   callback=self.log.for_record(rid))

    def run(self, chunks: int, per_chunk: int, pause: float, faults=None) -> None:
        faults = faults or {}
        for chunk in range(chunks):
            if chunk in faults:
                faults[chunk]()
            self.send(per_chunk)
            time.sleep(pause)

    def finish(self) -> None:
        self.producer.flush(WAIT_S)
        self.log.wait_for(self.futures)

    @property
    def records(self) -> int:
        return len(self.futures)

    def errors(self) -> dict[tuple[int, int], BaseException]:
        return {rid: f.exception(0) for rid, f in self.futures.items() if f.exception(0) is not None}

    def callback_errors(self) -> dict[tuple[int, int], list[BaseException]]:
        return {rid: [exc for _, exc in calls if exc is not None] for rid, calls in self.log.calls.items()
                if any(exc is not None for _, exc in calls)}


def check_delivered(mock_cluster, stream: Stream, scenario: str, **kwargs) -> Audit:
    return check_delivered_from(mock_cluster.bootstrap_servers, stream, scenario, **kwargs)


def check_delivered_from(bootstrap_servers: str, stream: Stream, scenario: str, *, duplicates_possible: bool = False,
                         note: str = "") -> Audit:
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}, "a callback ran more or less than once"
    errors = stream.errors()
    stored = read_back(bootstrap_servers, stream.topic, stream.partitions, None)
    result = audit(stored, {p: n for p, n in enumerate(stream.next_seq)})
    if duplicates_possible and result.duplicated:
        note = (note + "; " if note else "") + "duplicates: mock does not dedupe retries of a written batch"
    SUMMARY.append(Row(scenario, stream.records, result.lost, result.duplicated, result.out_of_order,
                       len(errors), note))
    assert errors == {}
    assert result.lost == 0
    assert result.out_of_order == 0
    if not duplicates_possible:
        assert result.duplicated == 0
    # Every record's metadata points at that very record in the log, retried ones included -- except a retry
    # the broker answered DUPLICATE_SEQUENCE_NUMBER (it wrote the batch before, and no longer knows where): a
    # success without an offset, -1, as in the Java client.
    by_offset = {p: {s.offset: s.value for s in stored[p]} for p in stored}
    offsets = {rid: f.get(0).offset for rid, f in stream.futures.items()}
    unknown = sum(offset == -1 for offset in offsets.values())
    misplaced = [(rid, offset) for rid, offset in offsets.items()
                 if offset != -1 and by_offset[rid[0]].get(offset) != value_of(*rid)]
    if unknown:
        SUMMARY[-1].note += f"; {unknown} acknowledged as already written (offset -1)"
    assert misplaced == [], f"{len(misplaced)} records' metadata name another record's offset: {misplaced[:5]}"
    return result


# ---- (a) bursts of retriable errors --------------------------------------------------------------------------------

# A pushed error refuses one request while the mock appends the next: had a later batch of the same partition been
# on the wire behind the refused one, the mock (no sequence checks without a transactional id) would write it ahead
# of the retry, where a checking broker would refuse it as OUT_OF_ORDER_SEQUENCE_NUMBER. With idempotence the
# producer keeps such a batch off the wire here -- a partition's first batch after idle goes alone, and so does
# everything of it for a while after an error (RecordAccumulator._held) -- so order is asserted at the default of
# 5 requests in flight as well as at 1.
IN_FLIGHT = [pytest.param(1, id="in_flight_1"), pytest.param(5, id="in_flight_5")]


@pytest.mark.parametrize("in_flight", IN_FLIGHT)
def test_bursts_of_retriable_produce_errors_lose_duplicate_and_reorder_nothing(mock_cluster, mock_topic, in_flight):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 5)  # requests overlap, so a refused one has later ones in flight behind it
    mock_cluster.start_request_tracking()
    rng = random.Random(1)

    def burst():
        mock_cluster.push_request_errors(PRODUCE, [rng.choice(RETRIABLE_BURST) for _ in range(rng.randint(3, 8))])

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048,
                       max_in_flight_requests_per_connection=in_flight) as producer:
        stream = Stream(producer, topic)
        stream.run(chunks=16, per_chunk=150, pause=0.05, faults={c: burst for c in range(0, 16, 3)})
        stream.finish()
        retried = producer.metrics()["record-retry-total"]
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert retried > 0
    check_delivered(mock_cluster, stream, f"(a) retriable error bursts, in-flight {in_flight}",
                    note=f"{retried:.0f} record retries")


def test_acks_1_without_idempotence_loses_nothing_when_retries_succeed(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 5)
    rng = random.Random(2)

    def burst():
        mock_cluster.push_request_errors(PRODUCE, [rng.choice(RETRIABLE_BURST) for _ in range(rng.randint(3, 8))])

    with make_producer(mock_cluster.bootstrap_servers, acks=1, enable_idempotence=False, linger_ms=1,
                       batch_size=2048) as producer:
        stream = Stream(producer, topic)
        stream.run(chunks=12, per_chunk=150, pause=0.05, faults={c: burst for c in range(0, 12, 3)})
        stream.finish()
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    errors = stream.errors()
    stored = read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, None)
    result = audit(stored, dict(enumerate(stream.next_seq)))
    # Without idempotence up to 5 requests per connection are in flight and a retried batch may land behind a
    # later one: order is not promised, only delivery.
    SUMMARY.append(Row("acks=1, no idempotence, error bursts", stream.records, result.lost, result.duplicated,
                       result.out_of_order, len(errors), "order and duplicates not promised without idempotence"))
    assert errors == {}
    assert result.lost == 0


# ---- (b) a broker down mid-stream ------------------------------------------------------------------------------------

def test_broker_down_mid_stream_and_back_loses_duplicates_and_reorders_nothing(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)  # broker 2 leads partitions 1 and 4
    stalled: list[int] = []

    def up():
        # Records for broker 2's partitions still waiting when it comes back: the outage really held some up.
        stalled.append(sum(not f.done() for (p, _), f in stream.futures.items() if p % 3 == 1))
        mock_cluster.broker_up(2)

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048) as producer:
        stream = Stream(producer, topic)
        stream.run(chunks=20, per_chunk=100, pause=0.05, faults={5: lambda: mock_cluster.broker_down(2), 14: up})
        stream.finish()

    # The mock drops a down broker's connections at once; a Produce it had appended but not answered yet would
    # be retried, and the mock would write it again.
    assert stalled[0] > 0
    check_delivered(mock_cluster, stream, "(b) broker 2 down, then up", duplicates_possible=True,
                    note=f"{stalled[0]} records waiting for broker 2 when it came back")


# ---- (c) every leader moved -----------------------------------------------------------------------------------------

def test_every_leader_moved_while_sending_loses_duplicates_and_reorders_nothing(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 10)

    def rotate(step):
        return lambda: mock_cluster.set_partition_leaders(topic, {p: (p + step) % 3 + 1 for p in range(PARTITIONS)})

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048) as producer:
        stream = Stream(producer, topic)
        stream.run(chunks=12, per_chunk=150, pause=0.02, faults={3: rotate(1), 7: rotate(2), 10: rotate(3)})
        stream.finish()
        retried = producer.metrics()["record-retry-total"]
        leaders = {p.partition: p.leader for p in producer.partitions_for(topic)}
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert leaders == {p: (p + 3) % 3 + 1 for p in range(PARTITIONS)}
    check_delivered(mock_cluster, stream, "(c) every leader moved x3", note=f"{retried:.0f} record retries")


# ---- (c') all of it at once, with batches in flight ---------------------------------------------------------------

ISSUE_ERRORS = [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS]


def test_error_bursts_a_broker_bounce_and_leader_moves_keep_every_partition_in_order(mock_cluster, mock_topic):
    # The producer's defaults (acks=all, idempotence, 5 requests in flight, 16 KiB batches, linger 5 ms) and a
    # stream fast enough that every partition has several batches in flight, while bursts of retriable errors
    # refuse requests, broker 2 goes down for a second and comes back, and every partition leader moves. The
    # mock checks no sequences here: a later batch it receives while an earlier one is being retried is written
    # ahead of it, so the order in the log is the order in which the producer let batches out -- which must be
    # each partition's order, whatever failed (RecordAccumulator._held: the rules that keep a later batch off
    # the wire while an earlier one of its partition is unresolved or likely to fail).
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 5)  # answers take a while: partitions have batches on the wire
    rng = random.Random(8)

    def burst():
        # Each burst meets the start of a chunk after a pause the producer sees: everything sent so far answered,
        # then quiet for longer than linger_ms. (Sleeping after a chunk is not enough on a loaded machine: its last
        # batches are answered late, the producer sees no pause, and the burst catches a partition pipelining
        # several batches -- which the mock, checking no sequences, writes out of order whatever a client does.)
        producer.flush(WAIT_S)
        time.sleep(0.05)
        mock_cluster.push_request_errors(PRODUCE, [rng.choice(ISSUE_ERRORS) for _ in range(rng.randint(3, 8))])

    unacknowledged: dict[str, int] = {}

    def waiting(partitions) -> int:
        return sum(not f.done() for (p, _), f in list(stream.futures.items()) if p in partitions)

    def bounce():
        unacknowledged["bounce"] = waiting({1, 4})  # broker 2 leads partitions 1 and 4
        mock_cluster.broker_down(2)
        time.sleep(1.0)
        mock_cluster.broker_up(2)

    def move():
        unacknowledged["move"] = waiting(set(range(PARTITIONS)))
        mock_cluster.set_partition_leaders(topic, {p: (p + 1) % 3 + 1 for p in range(PARTITIONS)})

    # Error bursts wait for the next chunk (as in (a)); the bounce and the move start halfway through a chunk,
    # in a thread of their own (a mock command may wait for the mock's next poll tick), so they catch that
    # chunk's batches on the wire.
    before_chunk = {1: burst, 4: burst, 7: burst, 9: burst, 11: burst}
    mid_chunk = {3: bounce, 6: move}
    background: list[threading.Thread] = []
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        stream = Stream(producer, topic)
        for chunk in range(12):
            if chunk in before_chunk:
                before_chunk[chunk]()
            stream.send(2500)
            if chunk in mid_chunk:
                background.append(threading.Thread(target=mid_chunk[chunk], daemon=True))
                background[-1].start()
            stream.send(2500)
            time.sleep(0.05)
        for thread in background:
            thread.join()
        stream.finish()
        retried = producer.metrics()["record-retry-total"]
        leaders = {p.partition: p.leader for p in producer.partitions_for(topic)}
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert leaders == {p: (p + 1) % 3 + 1 for p in range(PARTITIONS)}
    assert retried > 0
    assert unacknowledged["bounce"] > 0 and unacknowledged["move"] > 0  # both caught records on their way
    # The bounce drops broker 2's connections: a Produce the mock appended but had not answered yet is retried,
    # and the mock writes it again (as in (b)).
    check_delivered(mock_cluster, stream, "(c') error bursts + broker bounce + leaders moved, 5 in flight",
                    duplicates_possible=True,
                    note=f"{retried:.0f} record retries; {unacknowledged['bounce']} records of broker 2 "
                         f"unacknowledged at the bounce, {unacknowledged['move']} at the move")


# ---- (d) responses slower than request_timeout_ms ---------------------------------------------------------------------

def test_responses_slower_than_request_timeout_are_retried_without_loss_or_reordering(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048, request_timeout_ms=1000,
                       delivery_timeout_ms=60_000) as producer:
        stream = Stream(producer, topic)
        # About 2.5 s of slow answers: every request sent meanwhile times out at least once.
        stream.run(chunks=12, per_chunk=100, pause=0.3,
                   faults={2: lambda: mock_cluster.set_rtt(ALL_BROKERS, 1500),
                           10: lambda: mock_cluster.set_rtt(ALL_BROKERS, 0)})
        stream.finish()
        retried = producer.metrics()["record-retry-total"]

    assert retried > 0  # requests really timed out
    # A timed-out request was appended by the mock before its late answer: its retry may be written again.
    check_delivered(mock_cluster, stream, "(d) rtt 1500 ms > request_timeout 1000 ms", duplicates_possible=True,
                    note=f"{retried:.0f} record retries")


# ---- (e) connections cut -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_flight", IN_FLIGHT)
def test_connections_cut_by_the_broker_lose_duplicate_and_reorder_nothing(mock_cluster, mock_topic, in_flight):
    # The cut: TRANSPORT_ERROR pushes make the mock broker close the connection on receiving a Produce request,
    # before it appends anything -- so every cut request must be retried, and none may be written twice.
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 5)
    rng = random.Random(5)

    def cut():
        mock_cluster.push_request_errors(PRODUCE, [TRANSPORT_ERROR] * rng.randint(1, 3))

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048,
                       max_in_flight_requests_per_connection=in_flight) as producer:
        stream = Stream(producer, topic)
        stream.run(chunks=16, per_chunk=120, pause=0.05, faults={c: cut for c in range(1, 16, 3)})
        stream.finish()
        retried = producer.metrics()["record-retry-total"]
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    assert retried > 0
    check_delivered(mock_cluster, stream, f"(e) connections cut (TRANSPORT_ERROR), in-flight {in_flight}",
                    note=f"{retried:.0f} record retries")


@pytest.fixture(scope="module")
def proxied_tansu():
    """A Tansu broker of its own that advertises a cutting proxy's port: every client connection goes through it.

    Unlike the mock, Tansu checks idempotent sequences: it refuses a batch that leaves a gap."""
    from kafkaprod.tools.broker import TansuBroker

    proxy = CuttingProxy(target_port=0)
    broker = TansuBroker(advertised_port=proxy.port)
    broker.start()
    proxy.target = (proxy.host, broker.port)
    try:
        yield broker, proxy
    finally:
        proxy.close()
        broker.stop()


PROXIED_PARTITIONS = 3


def proxied_topic(proxied_tansu, prefix: str) -> tuple[CuttingProxy, str, str]:
    """A new 3-partition topic on the proxied Tansu: (the proxy, the bootstrap address through it, the topic)."""
    broker, proxy = proxied_tansu
    topic = f"{prefix}-{uuid.uuid4().hex[:12]}"
    broker.create_topics({topic: PROXIED_PARTITIONS})
    return proxy, f"{proxy.host}:{proxy.port}", topic


CUTS = 8


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "acks_1_not_idempotent"])
def test_connections_cut_at_random_bytes_through_a_proxy_lose_and_reorder_nothing(proxied_tansu, idempotent):
    # Unlike the mock, Tansu checks idempotent sequences (a retried batch it already wrote is not written again),
    # so here a cut response must not duplicate anything, and with 5 requests in flight nothing may reorder.
    proxy, bootstrap, topic = proxied_topic(proxied_tansu, "cut")
    partitions = PROXIED_PARTITIONS
    options = {} if idempotent else {"acks": 1, "enable_idempotence": False}
    with make_producer(bootstrap, linger_ms=1, batch_size=2048, **options) as producer:
        stream = Stream(producer, topic, partitions=partitions)
        stream.send(partitions)
        stream.finish()  # connected, producer id and metadata in hand before the cuts start
        cuts_before = proxy.cuts
        proxy.arm(cuts=CUTS, max_gaps={"request": 8_000, "response": 400}, seed=6)
        stream.run(chunks=12, per_chunk=100, pause=0.05)
        for _ in range(50):  # the cut points are byte counts: keep traffic coming until all of them were hit
            if proxy.cuts - cuts_before == CUTS:
                break
            stream.run(chunks=1, per_chunk=100, pause=0.05)
        stream.finish()
        retried = producer.metrics()["record-retry-total"]

    assert proxy.cuts - cuts_before == CUTS
    assert retried > 0
    directions = Counter(proxy.cut_directions[cuts_before:])
    note = f"{directions['request']} cuts in requests, {directions['response']} in responses, " \
           f"{retried:.0f} record retries"
    # Read back through the proxy too (the broker advertises it); it forwards untouched once the cuts are used.
    if idempotent:
        check_delivered_from(bootstrap, stream, "(e') proxy cuts at random bytes (Tansu)", note=note)
        return
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    errors = stream.errors()
    stored = read_back(bootstrap, topic, partitions, None)
    result = audit(stored, dict(enumerate(stream.next_seq)))
    SUMMARY.append(Row("acks=1, no idempotence, proxy cuts (Tansu)", stream.records, result.lost,
                       result.duplicated, result.out_of_order, len(errors),
                       note + ("; duplicates: without sequence numbers a retried written batch is written again"
                               if result.duplicated else "")))
    assert errors == {}
    assert result.lost == 0


# ---- idempotent recovery: sequences restarted under a new producer id ------------------------------------------------

# One request in flight per connection, so that the mock (which checks no sequences here) cannot append a batch
# behind a refused one: only the producer could reorder, and the audit would see it.
@pytest.mark.parametrize("error", [UNKNOWN_PRODUCER_ID, OUT_OF_ORDER_SEQUENCE_NUMBER],
                         ids=["UNKNOWN_PRODUCER_ID", "OUT_OF_ORDER_SEQUENCE_NUMBER"])
def test_lost_producer_state_or_a_sequence_gap_restarts_under_a_new_producer_id_losing_nothing(
        mock_cluster, mock_topic, error):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 5)

    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048,
                       max_in_flight_requests_per_connection=1) as producer:
        stream = Stream(producer, topic)
        stream.send(PARTITIONS)
        stream.finish()  # the first producer id is in hand
        mock_cluster.start_request_tracking()
        stream.run(chunks=12, per_chunk=120, pause=0.05,
                   faults={c: (lambda: mock_cluster.push_request_errors(PRODUCE, [error] * 2)) for c in (2, 7)})
        stream.finish()
        resets = producer.metrics()["producer-id-reset-total"]
    mock_cluster.set_rtt(ALL_BROKERS, 0)
    init_requests = len(mock_cluster.requests(INIT_PRODUCER_ID))
    mock_cluster.stop_request_tracking()

    # Two pushes of two refused requests: each push takes a new id at least once -- and at most twice, when the
    # second refused request carried batches numbered under the id that the first one's answer replaced.
    assert 2 <= resets <= 4
    assert init_requests == resets
    check_delivered(mock_cluster, stream, f"recovery: error {error} pushed on 2 x 2 requests",
                    note=f"{resets:.0f} new producer ids")


def test_producer_fenced_stops_the_producer_failing_every_pending_record_once(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    with make_producer(mock_cluster.bootstrap_servers, linger_ms=1, batch_size=2048) as producer:
        stream = Stream(producer, topic)
        stream.send(PARTITIONS)
        stream.finish()
        mock_cluster.push_request_errors(PRODUCE, [PRODUCER_FENCED])
        sent_before = stream.records
        try:
            stream.run(chunks=4, per_chunk=60, pause=0.05)
        except KafkaError as exc:  # sends after the fatal answer are refused at once, naming it
            assert "PRODUCER_FENCED" in str(exc)
        stream.finish()
        with pytest.raises(KafkaError, match="PRODUCER_FENCED"):
            producer.send(topic, b"after", partition=0)

    errors = stream.errors()
    later = set(stream.futures) - set(list(stream.futures)[:sent_before])
    SUMMARY.append(Row("PRODUCER_FENCED (fatal) pushed", len(later), 0, 0, 0, len(errors),
                       "every record pending at the fatal answer fails; later sends raise"))
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    assert errors and set(errors) <= later
    assert all(isinstance(e, KafkaError) and "PRODUCER_FENCED" in str(e) for e in errors.values())


def test_answers_slower_than_request_timeout_are_retried_without_duplicates_by_a_deduping_broker(proxied_tansu):
    # (d) again, with a broker that checks sequences: Tansu wrote each batch whose answer came too late, so its
    # retry must be refused as a duplicate -- nothing may be written twice.
    proxy, bootstrap, topic = proxied_topic(proxied_tansu, "slow")
    partitions = PROXIED_PARTITIONS
    with make_producer(bootstrap, linger_ms=1, batch_size=2048, request_timeout_ms=1000,
                       delivery_timeout_ms=60_000) as producer:
        stream = Stream(producer, topic, partitions=partitions)
        stream.send(partitions)
        stream.finish()
        try:
            stream.run(chunks=12, per_chunk=100, pause=0.3,
                       faults={2: lambda: proxy.delay_responses(1.5), 10: lambda: proxy.delay_responses(0)})
        finally:
            proxy.delay_responses(0)
        stream.finish()
        retried = producer.metrics()["record-retry-total"]

    assert retried > 0  # requests really timed out
    check_delivered_from(bootstrap, stream, "(d') answers 1500 ms late > request_timeout (Tansu, proxy)",
                         note=f"{retried:.0f} record retries")


@REPEATED
def test_answers_lost_on_the_way_back_then_a_reset_connection_create_no_duplicates(attempt, proxied_tansu):
    # Requests reach Tansu, which writes them, but their answers are dropped for a while; the producer's requests
    # time out, the connections are reset, and the retries of batches Tansu already wrote must be recognised as
    # duplicates: every record once, in order.
    proxy, bootstrap, topic = proxied_topic(proxied_tansu, "lost-answers")
    partitions = PROXIED_PARTITIONS
    dropped_before = proxy.answers_dropped
    with make_producer(bootstrap, linger_ms=1, batch_size=2048, request_timeout_ms=800,
                       delivery_timeout_ms=60_000) as producer:
        stream = Stream(producer, topic, partitions=partitions)
        stream.send(partitions)
        stream.finish()
        try:
            stream.run(chunks=12, per_chunk=100, pause=0.3, faults={2: proxy.drop_answers, 8: proxy.release})
        finally:
            proxy.release()
        stream.finish()
        retried = producer.metrics()["record-retry-total"]

    assert proxy.answers_dropped > dropped_before and retried > 0  # answers were lost, and batches retried
    check_delivered_from(bootstrap, stream, "answers dropped for 1.8 s, then connections reset (Tansu, proxy)",
                         note=f"{proxy.answers_dropped - dropped_before} answer pieces dropped, {retried:.0f} "
                              f"record retries")


MANGLES = 6


def test_bad_frames_from_the_broker_close_the_connection_and_its_batches_are_retried(proxied_tansu):
    # Each cut-short answer (Produce, Metadata, ApiVersions or InitProducerId alike) must close that connection
    # and have its requests retried: Tansu wrote the batches of a Produce whose answer was mangled, so their
    # retries must be recognised as duplicates, not written again.
    proxy, bootstrap, topic = proxied_topic(proxied_tansu, "mangled")
    partitions = PROXIED_PARTITIONS
    mangled_before = proxy.mangled
    proxy.mangle(count=MANGLES, every=7)
    with make_producer(bootstrap, linger_ms=1, batch_size=2048) as producer:
        stream = Stream(producer, topic, partitions=partitions)
        stream.run(chunks=12, per_chunk=100, pause=0.05)
        for _ in range(50):  # keep answers coming until every mangle was used
            if proxy.mangled - mangled_before == MANGLES:
                break
            stream.run(chunks=1, per_chunk=100, pause=0.05)
        stream.finish()
        retried = producer.metrics()["record-retry-total"]

    assert proxy.mangled - mangled_before == MANGLES
    assert retried > 0
    check_delivered_from(bootstrap, stream, "bad response frames (Tansu, proxy)",
                         note=f"{MANGLES} answers cut short, {retried:.0f} record retries")


def test_batches_failed_after_being_numbered_leave_no_gap_that_breaks_later_ones(proxied_tansu):
    # Requests drained while the line is held never reach Tansu; their batches time out and then expire past
    # delivery_timeout_ms, leaving a gap in the sequences Tansu has seen. Without a restart of the numbering,
    # every later batch would be refused as OUT_OF_ORDER_SEQUENCE_NUMBER by Tansu for good.
    proxy, bootstrap, topic = proxied_topic(proxied_tansu, "held")
    partitions = PROXIED_PARTITIONS
    with make_producer(bootstrap, linger_ms=1, batch_size=2048, request_timeout_ms=500,
                       delivery_timeout_ms=1500) as producer:
        stream = Stream(producer, topic, partitions=partitions)
        stream.send(partitions * 2)
        stream.finish()  # connected, with a producer id; sequences 0 and 1 written on every partition
        warm = set(stream.futures)
        proxy.hold()
        stream.run(chunks=3, per_chunk=60, pause=0.02)
        held = set(stream.futures) - warm
        for rid in held:
            assert stream.futures[rid].exception(WAIT_S) is not None  # each fails (timeout) before the release
        proxy.release()
        stream.run(chunks=6, per_chunk=60, pause=0.02)
        stream.finish()
        resets = producer.metrics()["producer-id-reset-total"]

    errors = stream.errors()
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    assert set(errors) == held, {rid: repr(e) for rid, e in errors.items() if rid not in held}
    assert all(isinstance(e, KafkaTimeoutError) for e in errors.values()), set(map(type, errors.values()))
    assert resets >= 1
    stored = read_back(bootstrap, topic, partitions, None)
    # Exactly the acknowledged records, once each and in send order; none of the held ones reached the log.
    acknowledged = set(stream.futures) - held
    for p in range(partitions):
        assert [parse(s.value)[1] for s in stored[p]] == sorted(seq for q, seq in acknowledged if q == p)
    SUMMARY.append(Row("line held past delivery_timeout, then back (Tansu)", stream.records, 0, 0, 0, len(errors),
                       f"{len(held)} records sent while held failed (timeout); the rest delivered under "
                       f"{resets:.0f} new producer id(s)"))


# ---- (f) every broker down past delivery_timeout_ms -----------------------------------------------------------------

def test_every_broker_down_past_delivery_timeout_fails_each_record_once_and_nothing_hangs(mock_cluster, mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    producer = make_producer(mock_cluster.bootstrap_servers, linger_ms=0, request_timeout_ms=1000,
                             delivery_timeout_ms=3000)
    try:
        for p in range(PARTITIONS):
            producer.send(topic, b"warm-up", partition=p).get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)
        stream = Stream(producer, topic)
        stream.run(chunks=5, per_chunk=60, pause=0.1)
        producer.flush(WAIT_S)  # returns once every record has failed
        stream.log.wait_for(stream.futures)
    finally:
        producer.close(WAIT_S)
    mock_cluster.broker_up(ALL_BROKERS)

    errors = stream.errors()
    callback_errors = stream.callback_errors()
    SUMMARY.append(Row("(f) all brokers down > delivery_timeout", stream.records, 0, 0, 0, len(errors),
                       "every record expected to fail"))
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    assert set(errors) == set(stream.futures)
    assert all(isinstance(e, KafkaTimeoutError) for e in errors.values()), set(map(type, errors.values()))
    assert set(callback_errors) == set(stream.futures)
    assert all(len(v) == 1 and v[0] is errors[rid] for rid, v in callback_errors.items())
    stored = read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, PARTITIONS)
    assert all([s.value for s in stored[p]] == [b"warm-up"] for p in range(PARTITIONS))


def test_every_broker_down_mid_stream_ends_each_record_once_and_acknowledged_ones_are_in_the_log(mock_cluster,
                                                                                                 mock_topic):
    topic = mock_topic(partitions=PARTITIONS)
    mock_cluster.set_rtt(ALL_BROKERS, 100)  # the last chunk is still in flight when the brokers go
    producer = make_producer(mock_cluster.bootstrap_servers, linger_ms=0, batch_size=2048, request_timeout_ms=1000,
                             delivery_timeout_ms=3000)
    down_at: list[int] = []

    def down():
        down_at.append(stream.records)
        mock_cluster.broker_down(ALL_BROKERS)

    try:
        stream = Stream(producer, topic)
        stream.send(PARTITIONS)
        stream.finish()  # connected and with a producer id: the chunks before the outage can be acknowledged
        stream.run(chunks=8, per_chunk=60, pause=0.05, faults={3: down})
        producer.flush(WAIT_S)
        stream.log.wait_for(stream.futures)
    finally:
        producer.close(WAIT_S)
    mock_cluster.broker_up(ALL_BROKERS)
    mock_cluster.set_rtt(ALL_BROKERS, 0)

    errors = stream.errors()
    stored = read_back(mock_cluster.bootstrap_servers, topic, PARTITIONS, None)
    in_log = {parse(s.value) for p in stored for s in stored[p]}
    acknowledged = set(stream.futures) - set(errors)
    # A request the mock appended but whose answer the outage swallowed: failed to the caller (the producer
    # cannot know), yet in the log -- what any client reports when the delivery timeout ends an unknown outcome.
    failed_but_written = len(set(errors) & in_log)
    result = audit(stored, dict(enumerate(stream.next_seq)))
    SUMMARY.append(Row("(f') all brokers down mid-stream", stream.records, len(acknowledged - in_log),
                       result.duplicated, result.out_of_order, len(errors),
                       f"{len(acknowledged)} acknowledged before the outage; {failed_but_written} failed (timeout) "
                       f"though the mock had written them: answer lost in the outage"))
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    assert all(isinstance(e, KafkaTimeoutError) for e in errors.values()), set(map(type, errors.values()))
    assert {rid for rid, exc in stream.callback_errors().items()} == set(errors)
    assert acknowledged <= in_log  # nothing acknowledged is lost
    assert len(stream.futures) - down_at[0] <= len(errors)  # everything sent after the outage began failed
    assert result.out_of_order == 0


# ---- (g) non-retriable errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [RECORD_LIST_TOO_LARGE, INVALID_RECORD, INVALID_PRODUCER_EPOCH])
def test_non_retriable_error_fails_exactly_the_refused_batch(mock_cluster, error):
    topic = "three-leaders"
    mock_cluster.create_topic(topic, 3, 3, leaders=[1, 2, 3])
    long_linger = {"linger_ms": 600_000, "delivery_timeout_ms": 1_000_000}
    with make_producer(mock_cluster.bootstrap_servers, **long_linger) as producer:
        stream = Stream(producer, topic, partitions=3)
        for p in range(3):
            producer.send(topic, value_of(p, 0), partition=p, callback=stream.log.for_record((p, 0)))
            stream.next_seq[p] = 1
        producer.flush(WAIT_S)
        stream.futures.clear()
        stream.log.calls.clear()
        # The next Produce to broker 1 -- partition 0's batch, and only it -- is refused.
        mock_cluster.broker_push_request_error_rtts(1, PRODUCE, [(error, 0)])
        stream.send(30)  # one batch per partition, all leaving at the flush
        stream.finish()
        refused = {rid for rid in stream.futures if rid[0] == 0}
        # The partition is usable afterwards.
        after_future = producer.send(topic, b"p=0,s=999999;after", partition=0)
        producer.flush(WAIT_S)
        after = after_future.get(0)

    errors = stream.errors()
    SUMMARY.append(Row(f"(g) non-retriable error {error} on one batch", stream.records, 0, 0, 0, len(errors),
                       f"{len(refused)} records in the refused batch"))
    assert stream.log.counts() == {rid: 1 for rid in stream.futures}
    assert set(errors) == refused
    assert all(isinstance(e, KafkaError) and e.errno == error for e in errors.values())
    assert set(stream.callback_errors()) == refused
    stored = read_back(mock_cluster.bootstrap_servers, topic, 3, None)
    assert [parse(s.value)[1] for s in stored[0]] == [0, 999999]
    assert after.offset == 1
    for p in (1, 2):
        assert [parse(s.value)[1] for s in stored[p]] == list(range(11))
