"""The ceiling: the most any client can get from this broker, measured by replaying ready-made ProduceRequests.

    python bench/ceiling.py                                   # 3 runs of 1,000,000 x 100 B, 1 MB batches
    python bench/ceiling.py --batch-size 1000000 --batch-size 16384 --rounds 3
    python bench/ceiling.py --bootstrap-servers host:9092 --json bench/results/ceiling.json
    python bench/compare.py --ceiling                         # the same, as a row next to the clients

What a run does (a fresh process, started like a client's by kafkaprod.tools.compare.run_once):

1. Before the window: one plain socket to the broker, ApiVersions to pick the Produce version (the highest both
   this broker and kafkaprod's encoder speak), Metadata to check that this broker leads every partition of the
   topic, and then every request of the run is encoded with kafkaprod's own encoder
   (``kafkaprod.protocol.encode_request`` with record batches from ``MemoryRecordsBuilder``) into one bytes
   object each. One warm-up request of one record is sent and answered, as the clients send a warm-up record.
2. The shape is what kafkaprod itself sends with linger on this workload (checked by counting the batches in
   its ProduceRequests): batches filled to ``batch_size`` bytes, keyless records going to one partition until
   its batch is full and then to the next (uniform sticky), keyed records to their murmur2 partition; one
   ProduceRequest carries one batch of every partition (6 x ~1 MB with the defaults).
3. The window: the requests are written back to back with ``sendall``, at most ``max_in_flight`` (5, as
   kafkaprod and Java) unanswered at a time; every answer is decoded and every partition's error code must be 0.
   Records/s is over first byte written to last answer read; CPU is this process's user+sys over that window.

Nothing in the window encodes a record, so the number is the broker's and the socket's limit on this machine,
a little above what a perfect client could reach (such a client would also spend CPU building the batches,
which on 2 cores takes CPU away from the broker). The harness counts the records on the broker after every run.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python bench/ceiling.py`: the source tree first, as bench/compare.py puts it, so
    sys.path.insert(0, str(ROOT))  # that an in-place build of kafkaprod is the one measured

from kafkaprod.tools.compare import (  # noqa: E402
    CODECS,
    ComparisonError,
    Contender,
    Workload,
    non_negative_int,
    positive_int,
    run_once,
)
from kafkaprod.tools.runners import Window, make_keys, make_value  # noqa: E402

CLIENT = "ceiling"
DEFAULT_MAX_IN_FLIGHT = 5
_REQUEST_TIMEOUT_MS = 30_000
_SOCKET_TIMEOUT_S = 120.0
_CLIENT_ID = "bench-ceiling"


class CeilingError(Exception):
    """The broker refused or mis-answered a replayed request, or the topic cannot be replayed to over one socket."""


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Shape:
    """What to replay: the workload's records cut into batches and requests the way a client would."""

    num_records: int
    record_size: int
    key_size: int
    key_count: int
    partitions: int
    batch_size: int
    compression: str = "none"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Shape:
        return cls(num_records=spec["num_records"], record_size=spec["record_size"], key_size=spec["key_size"],
                   key_count=spec["key_count"], partitions=spec["partitions"], batch_size=spec["batch_size"],
                   compression=spec["compression"])


@dataclass(frozen=True)
class ProducerState:
    """Idempotence: the producer id and epoch from InitProducerId; sequences are counted per partition."""

    producer_id: int
    producer_epoch: int


def _one_batch(value: bytes, keys: Sequence[bytes] | None, offset: int, count: int, shape: Shape, timestamp_ms: int,
               state: ProducerState | None, sequence: int) -> tuple[bytes, int]:
    """One batch of up to ``count`` records (keyed by ``keys[offset:]`` when keyed), filled as kafkaprod fills one:
    a ``batch_size``-byte buffer that takes records until the next would pass ``batch_size``. (batch, records)"""
    from kafkaprod._native.records import MemoryRecordsBuilder

    builder = MemoryRecordsBuilder(
        bytearray(shape.batch_size), shape.compression, shape.batch_size,
        producer_id=-1 if state is None else state.producer_id,
        producer_epoch=-1 if state is None else state.producer_epoch,
        base_sequence=-1 if state is None else sequence)
    # Records never take fewer bytes than their key and value, so a chunk this long reaches past a full batch
    # (compressed batches may take several chunks).
    chunk = min(count, shape.batch_size // max(1, shape.record_size + shape.key_size) + 1)
    values = [value] * chunk
    added = 0
    while added < count:
        take = min(chunk, count - added)
        start = offset + added
        n = builder.append_values(values[:take], timestamp_ms, None if keys is None else keys[start:start + take])
        added += n
        if n < take:
            break
    if added == 0:
        raise CeilingError(f"a record of {shape.key_size} key and {shape.record_size} value bytes does not fit "
                           f"a batch of {shape.batch_size} bytes")
    return bytes(builder.close()), added


def plan_requests(shape: Shape, timestamp_ms: int, state: ProducerState | None = None,
                  first_sequences: dict[int, int] | None = None) -> list[list[tuple[int, bytes, int]]]:
    """The run's requests, each a list of (partition, encoded batch, records), one batch per partition at most.

    Keyless records fill partition 0's batch, then partition 1's, ... (uniform sticky, KIP-794); keyed records go
    to ``murmur2(key) % partitions`` in the order the keys cycle. Request r carries every partition's r-th batch,
    as a client whose sender wakes after each partition filled one batch would send them.
    """
    value = make_value(shape.record_size)
    sequences = dict(first_sequences or {})
    per_partition: list[list[tuple[bytes, int]]] = [[] for _ in range(shape.partitions)]
    if shape.key_size <= 0:
        # One batch at a time, moving to the next partition after each, as the sticky partitioner does.
        left, partition = shape.num_records, 0
        while left:
            seq = sequences.get(partition, 0)
            batch, n = _one_batch(value, None, 0, left, shape, timestamp_ms, state, seq)
            per_partition[partition].append((batch, n))
            sequences[partition] = seq + n
            left -= n
            partition = (partition + 1) % shape.partitions
    else:
        from kafkaprod._native.murmur2 import partitions_for_keys

        distinct = make_keys(shape.key_size, shape.key_count) or []
        key_partitions = list(partitions_for_keys(distinct, shape.partitions))
        keys_of: list[list[bytes]] = [[] for _ in range(shape.partitions)]
        for i in range(shape.num_records):
            j = i % len(distinct)
            keys_of[key_partitions[j]].append(distinct[j])
        for partition, keys in enumerate(keys_of):
            done, seq = 0, sequences.get(partition, 0)
            while done < len(keys):
                batch, n = _one_batch(value, keys, done, len(keys) - done, shape, timestamp_ms, state, seq)
                per_partition[partition].append((batch, n))
                done += n
                seq += n
    rounds = max(len(batches) for batches in per_partition)
    return [[(p, *per_partition[p][r]) for p in range(shape.partitions) if r < len(per_partition[p])]
            for r in range(rounds)]


# ------------------------------------------------------------------------------------------------ the wire


class Connection:
    """One blocking socket speaking kafkaprod's encoder and decoder, one request at a time (setup only)."""

    def __init__(self, bootstrap_servers: str, timeout: float = _SOCKET_TIMEOUT_S) -> None:
        host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bootstrap_servers must start with host:port, got {bootstrap_servers!r}")
        self.host, self.port = host, int(port)
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)
        self.correlation_id = 0

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def next_correlation_id(self) -> int:
        self.correlation_id += 1
        return self.correlation_id

    def read_frame(self) -> bytes:
        head = self.rfile.read(4)
        if len(head) < 4:
            raise CeilingError(f"{self.host}:{self.port} closed the connection")
        size = int.from_bytes(head, "big", signed=True)
        frame = self.rfile.read(size)
        if len(frame) < size:
            raise CeilingError(f"{self.host}:{self.port} closed the connection inside a {size}-byte answer")
        return frame

    def call(self, api: Any, version: int, body: dict[str, Any]) -> dict[str, Any]:
        from kafkaprod.protocol import decode_response, encode_request, read_correlation_id

        cid = self.next_correlation_id()
        self.sock.sendall(b"".join(encode_request(api.key, version, cid, _CLIENT_ID, body)))
        frame = self.read_frame()
        if read_correlation_id(frame) != cid:
            raise CeilingError(f"{api.name} answer has correlation id {read_correlation_id(frame)}, expected {cid}")
        return decode_response(api.key, version, frame)


def negotiate(conn: Connection) -> dict[int, int]:
    """ApiVersions on the connection: {api_key: version to speak} for every API both sides know."""
    from kafkaprod.protocol import api_versions_fallback, negotiate_versions
    from kafkaprod.protocol.messages import API_VERSIONS

    version = API_VERSIONS.max_version
    while True:
        answer = conn.call(API_VERSIONS, version, {})
        retry = api_versions_fallback(answer, version)
        if retry is None:
            break
        version = retry
    if answer["error_code"] != 0:
        raise CeilingError(f"ApiVersions v{version} answered error code {answer['error_code']}")
    return negotiate_versions(answer)


def check_leadership(conn: Connection, version: int, topic: str, partitions: int) -> None:
    """The replay uses one socket, so the broker it talks to must lead every partition of the topic."""
    from kafkaprod.protocol.messages import METADATA

    answer = conn.call(METADATA, version, {"topics": [{"name": topic}], "allow_auto_topic_creation": False})
    topics = [t for t in answer["topics"] if t["name"] == topic]
    if not topics or topics[0]["error_code"] != 0:
        raise CeilingError(f"topic {topic!r}: metadata error {topics[0]['error_code'] if topics else 'absent'}")
    found = {p["partition_index"]: p["leader_id"] for p in topics[0]["partitions"]}
    if sorted(found) != list(range(partitions)):
        raise CeilingError(f"topic {topic!r} has partitions {sorted(found)}, the workload needs 0..{partitions - 1}")
    nodes = {b["node_id"]: (b["host"], b["port"]) for b in answer["brokers"]}
    leaders = set(found.values())
    here = [node for node, (host, port) in nodes.items() if port == conn.port and host in (conn.host, "localhost")]
    if len(leaders) != 1 or (here and leaders != set(here[:1])):
        raise CeilingError(f"topic {topic!r}: partition leaders {sorted(leaders)} are not all the broker at "
                           f"{conn.host}:{conn.port}; the ceiling replays over one connection to one broker")


def init_producer_id(conn: Connection, version: int) -> ProducerState:
    from kafkaprod.protocol.messages import INIT_PRODUCER_ID

    answer = conn.call(INIT_PRODUCER_ID, version, {"transactional_id": None, "transaction_timeout_ms": 2147483647})
    if answer["error_code"] != 0:
        raise CeilingError(f"InitProducerId answered error code {answer['error_code']}")
    return ProducerState(answer["producer_id"], answer["producer_epoch"])


def encode_requests(conn: Connection, requests: list[list[tuple[int, bytes, int]]], topic: str, acks: int,
                    version: int) -> list[tuple[int, bytes, int]]:
    """Each request as one ready frame: [(correlation id, frame bytes, partitions in it)]."""
    from kafkaprod.protocol import encode_request
    from kafkaprod.protocol.messages import PRODUCE

    frames = []
    for batches in requests:
        cid = conn.next_correlation_id()
        body = {"transactional_id": None, "acks": acks, "timeout_ms": _REQUEST_TIMEOUT_MS,
                "topic_data": [{"name": topic, "partition_data": [{"index": p, "records": batch}
                                                                   for p, batch, _ in batches]}]}
        frames.append((cid, b"".join(encode_request(PRODUCE.key, version, cid, _CLIENT_ID, body)), len(batches)))
    return frames


def check_produce_answer(frame: bytes, version: int, cid: int, partitions: int) -> None:
    from kafkaprod.protocol import decode_response, read_correlation_id
    from kafkaprod.protocol.messages import PRODUCE

    got = read_correlation_id(frame)
    if got != cid:
        raise CeilingError(f"Produce answer has correlation id {got}, expected {cid} (answers come in order)")
    answer = decode_response(PRODUCE.key, version, frame)
    results = [(t["name"], p["index"], p["error_code"]) for t in answer["responses"] for p in t["partition_responses"]]
    failed = [r for r in results if r[2] != 0]
    if failed or len(results) != partitions:
        raise CeilingError(f"Produce request {cid}: {len(results)} partition answers for {partitions} batches, "
                           f"errors (topic, partition, code): {failed[:6]}")


def replay(conn: Connection, frames: list[tuple[int, bytes, int]], version: int, max_in_flight: int) -> None:
    """Write every frame, keeping at most ``max_in_flight`` unanswered, and check every answer."""
    pending: deque[tuple[int, int]] = deque()
    sendall, read_frame = conn.sock.sendall, conn.read_frame
    for cid, frame, partitions in frames:
        if len(pending) >= max_in_flight:
            check_produce_answer(read_frame(), version, *pending.popleft())
        sendall(frame)
        pending.append((cid, partitions))
    while pending:
        check_produce_answer(read_frame(), version, *pending.popleft())


# ------------------------------------------------------------------------------------------------ one run


def _acks(value: str) -> int:
    if value == "0":
        raise CeilingError("the ceiling needs acknowledgements (acks=0 gets no answers, so no end of the window)")
    return -1 if value == "all" else int(value)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One replay run as compare.py's runners do one client run; returns the Window result plus the shape."""
    from kafkaprod.protocol.messages import INIT_PRODUCER_ID, METADATA, PRODUCE

    acks = _acks(spec["acks"])
    shape = Shape.from_spec(spec)
    max_in_flight = int(spec.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT))
    topic = spec["topic"]
    conn = Connection(spec["bootstrap_servers"])
    try:
        versions = negotiate(conn)
        if PRODUCE.key not in versions:
            raise CeilingError("the broker does not list Produce in ApiVersions")
        produce_version = versions[PRODUCE.key]
        check_leadership(conn, versions[METADATA.key], topic, shape.partitions)
        state = init_producer_id(conn, versions[INIT_PRODUCER_ID.key]) if spec["idempotence"] else None
        built = time.perf_counter()
        now_ms = int(time.time() * 1000)
        # The warm-up record takes sequence 0 of partition 0, so the replay's partition 0 starts at 1.
        warm_up = plan_requests(replace(shape, num_records=1, key_size=0), now_ms, state)
        requests = plan_requests(shape, now_ms, state, {0: 1})
        frames = encode_requests(conn, requests, topic, acks, produce_version)
        build_s = time.perf_counter() - built
        replay(conn, encode_requests(conn, warm_up, topic, acks, produce_version), produce_version, 1)
        window = Window(spec.get("broker_pid"))
        window.start()
        replay(conn, frames, produce_version, max_in_flight)
        window.stop()
    finally:
        conn.close()
    result = window.result(spec)
    batches = [n for request in requests for _, _, n in request]
    result.update(
        produce_version=produce_version, max_in_flight=max_in_flight, requests=len(frames), batches=len(batches),
        records_per_batch_max=max(batches), request_bytes=sum(len(frame) for _, frame, _ in frames),
        build_s=build_s)
    if sum(batches) != shape.num_records:  # a planning bug would make the count check fail later; say why here
        raise CeilingError(f"planned {sum(batches)} records, the workload has {shape.num_records}")
    return result


def client_version() -> dict[str, str]:
    import kafkaprod

    return {"version": f"replay, kafkaprod {kafkaprod.__version__} encoder", "path": str(Path(__file__).resolve())}


def contender() -> Contender:
    """The replay as the comparison harness runs it: this file in a fresh child, like a client."""
    return Contender(CLIENT, CLIENT, command=(str(Path(__file__).resolve()), "--run"))


# ------------------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/ceiling.py",
        description="Replay ready-encoded ProduceRequests at a Tansu broker as fast as the socket takes them: "
                    "the most any producer can get from it. Each run is a fresh process and topic, records are "
                    "counted on the broker after each run.")
    parser.add_argument("--batch-size", type=positive_int, action="append", default=None, metavar="BYTES",
                        help="batch bytes; repeat for several data points (default 1000000)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="runs per batch size, alternating (default 3)")
    parser.add_argument("--num-records", type=positive_int, default=1_000_000, help="records per run (default 1000000)")
    parser.add_argument("--record-size", type=positive_int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--key-size", type=non_negative_int, default=0, help="key bytes, 0 for none (default 0)")
    parser.add_argument("--key-count", type=positive_int, default=10_000, help="distinct keys cycled (default 10000)")
    parser.add_argument("--compression", choices=CODECS, default="none", help="codec of the batches (default none)")
    parser.add_argument("--partitions", type=positive_int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--acks", choices=("all", "-1", "1"), default="1", help="acks (default 1; 0 has no answers)")
    parser.add_argument("--idempotence", action="store_true", help="producer id and sequences (needs --acks all)")
    parser.add_argument("--max-in-flight", type=positive_int, default=DEFAULT_MAX_IN_FLIGHT,
                        help=f"unanswered requests at most (default {DEFAULT_MAX_IN_FLIGHT}, as kafkaprod and Java)")
    parser.add_argument("--bootstrap-servers", default=None, help="an existing broker instead of a local Tansu")
    parser.add_argument("--timeout", type=positive_int, default=600, help="seconds before a run is killed")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the runs here")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[Any]]:
    """The options and one harness Workload per batch size."""
    parser = build_parser()
    args = parser.parse_args(argv)
    acks = "all" if args.acks == "-1" else args.acks
    if args.idempotence and acks != "all":
        parser.error("--idempotence needs --acks all")
    sizes = list(dict.fromkeys(args.batch_size or [1_000_000]))
    workloads = [Workload(num_records=args.num_records, record_size=args.record_size, key_size=args.key_size,
                          key_count=args.key_count, compression=args.compression, partitions=args.partitions,
                          acks=acks, idempotence=args.idempotence, linger_ms=0, batch_size=size)
                 for size in sizes]
    return args, workloads


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per batch size: medians over its runs."""
    rows = []
    for size in dict.fromkeys(run["batch_size"] for run in runs):
        mine = [run for run in runs if run["batch_size"] == size]
        row: dict[str, Any] = {"batch_size": size, "runs": len(mine), "requests": mine[0]["requests"],
                               "batches": mine[0]["batches"], "records_per_batch": mine[0]["records_per_batch_max"],
                               "produce_version": mine[0]["produce_version"]}
        for key in ("records_per_s", "mb_per_s", "cpu_s", "cpu_us_per_record", "broker_cpu_s", "other_cpu_s",
                    "peak_rss_mb"):
            values = [run[key] for run in mine if run.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    return rows


def render_markdown(rows: list[dict[str, Any]], records: int, max_in_flight: int) -> str:
    def fmt(value: float | None, digits: int = 0) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    lines = [
        f"Ceiling: {records:,} records replayed as ready-encoded ProduceRequests (one batch per partition per "
        f"request, at most {max_in_flight} unanswered); medians over runs.",
        "",
        "| batch size B | records/batch | requests | Produce v | runs | records/s | MB/s | replay CPU s "
        "| CPU µs/record | broker CPU s | other CPU s |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['batch_size']:,} | {row['records_per_batch']:,} | {row['requests']:,} | {row['produce_version']} "
            f"| {row['runs']} | {fmt(row['records_per_s'])} | {fmt(row['mb_per_s'], 1)} | {fmt(row['cpu_s'], 2)} "
            f"| {fmt(row['cpu_us_per_record'], 2)} | {fmt(row['broker_cpu_s'], 2)} | {fmt(row['other_cpu_s'], 2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run"]:  # the child the harness's run_once starts: --run SPEC_JSON RESULT_PATH
        return _child(argv[1:])
    from kafkaprod.tools.broker import TansuBroker

    args, workloads = parse_args(argv)
    runs: list[dict[str, Any]] = []
    error = None

    def rounds(bootstrap: str, pid: int | None) -> None:
        for round_no in range(1, args.rounds + 1):
            for workload in workloads:
                run = run_once(contender(), workload, bootstrap, round_no, broker_pid=pid, timeout=args.timeout,
                               topic_prefix="bench", extra_spec={"max_in_flight": args.max_in_flight})
                run["batch_size"] = workload.batch_size
                runs.append(run)
                print(f"round {round_no} batch {workload.batch_size:>9,} B: {run['records_per_s']:,.0f} records/s, "
                      f"{run['mb_per_s']:.1f} MB/s, replay CPU {run['cpu_s']:.2f} s, {run['requests']} requests",
                      file=sys.stderr)

    try:
        if args.bootstrap_servers:
            rounds(args.bootstrap_servers, None)
        else:
            with TansuBroker() as broker:
                rounds(broker.bootstrap_servers, broker.pid)
    except ComparisonError as exc:
        error = str(exc)
    rows = summarize(runs)
    print(render_markdown(rows, args.num_records, args.max_in_flight))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": rows, "runs": runs, "error": error}, indent=2))
    if error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _child(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: ceiling.py --run SPEC_JSON RESULT_PATH", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    result = run(spec)
    result.update(client=CLIENT, topic=spec["topic"], **client_version())
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
