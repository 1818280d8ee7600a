"""Throughput of a transactional producer, kafkaprod against confluent-kafka (librdkafka), in one run.

    python bench/bench_transactions.py                 # 3 rounds of 100 transactions x 1,000 records of 100 B
    python bench/bench_transactions.py --rounds 5 --transactions 200 --delivery none --json txn.json
    python bench/bench_transactions.py --bootstrap-servers kafka1:9092   # an existing cluster, not a local Tansu

Each run is a fresh child process (this script with ``--child``) writing to a fresh topic of 6 partitions, with a
fresh ``transactional_id``; the two clients take turns (kafkaprod, confluent, kafkaprod, ...). The child builds the
producer (linger 5 ms and the same batch size for both; a transactional id means idempotence and acks=all for
both), calls ``init_transactions()`` and runs one warm-up transaction, then the timed window: from the first
``begin_transaction()`` to the return of the last ``commit_transaction()``. Every transaction sends
``--records-per-transaction`` keyless records of ``--record-size`` bytes, spread by each client's default
partitioner: kafkaprod ``send(topic, value)``, confluent-kafka ``produce(topic, value)`` with ``poll(0)`` every
100 records (and on a full queue). Both partitioners are sticky for keyless records (kafkaprod: until
``batch_size`` bytes went to the partition; librdkafka: for ``sticky.partitioning.linger.ms``, 10 ms), so a
transaction's records mostly land in one or two partitions; the progress lines show each run's committed records
per partition.

``--delivery callback`` (default, as a service confirms each record) gives every record a callback that counts
successes (kafkaprod ``callback=``, confluent ``on_delivery=``) and fails the run unless every record was
confirmed once the last commit returned; ``--delivery none`` drops what send returns.

Per run: records/s and transactions/s over the window, the child's CPU seconds over the window
(``time.process_time()``: every thread of the process, so librdkafka's C threads and kafkaprod's I/O thread count),
and the mean ``commit_transaction()`` time. After each run the topic is read back on the broker by a confluent-kafka
Consumer with ``isolation.level=read_committed`` from the earliest offset in a fresh group; anything but
(transactions + 1 warm-up) x records-per-transaction records stops the benchmark. The table shows medians over
rounds and the kafkaprod / confluent ratios of rate and CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from kafkaprod.tools.runners import Outcomes

CLIENTS = ("kafkaprod", "confluent")
PARTITIONS = 6
# confluent-kafka: serve delivery reports this often (records) while producing, as an application would.
POLL_EVERY = 100
_CHILD_TIMEOUT_S = 1800.0
_COUNT_TIMEOUT_S = 120.0


def _kafkaprod_transactions(spec: dict[str, Any], confirmations: Outcomes) -> tuple[Any, Any, Any]:
    """The producer after init_transactions(), a function running one transaction, and the close call."""
    from kafkaprod import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=spec["bootstrap"], transactional_id=spec["transactional_id"],
                             linger_ms=spec["linger_ms"], batch_size=spec["batch_size"])
    producer.init_transactions()
    topic, value, n = spec["topic"], b"x" * spec["record_size"], spec["records_per_transaction"]
    send, begin, commit = producer.send, producer.begin_transaction, producer.commit_transaction
    callback = confirmations.on_kafkaprod if spec["delivery"] == "callback" else None
    perf = time.perf_counter

    if callback is None:
        def transaction() -> float:
            begin()
            for _ in range(n):
                send(topic, value)
            t0 = perf()
            commit()
            return perf() - t0
    else:
        def transaction() -> float:
            begin()
            for _ in range(n):
                send(topic, value, callback=callback)
            t0 = perf()
            commit()
            return perf() - t0

    return producer, transaction, producer.close


def _confluent_transactions(spec: dict[str, Any], confirmations: Outcomes) -> tuple[Any, Any, Any]:
    from confluent_kafka import Producer

    errors: list[str] = []
    producer = Producer({"bootstrap.servers": spec["bootstrap"], "transactional.id": spec["transactional_id"],
                         "linger.ms": spec["linger_ms"], "batch.size": spec["batch_size"],
                         "error_cb": lambda err: errors.append(str(err))})
    producer.init_transactions()
    topic, value, n = spec["topic"], b"x" * spec["record_size"], spec["records_per_transaction"]
    produce, poll = producer.produce, producer.poll
    begin, commit = producer.begin_transaction, producer.commit_transaction
    on_delivery = confirmations.on_confluent if spec["delivery"] == "callback" else None
    perf = time.perf_counter

    def transaction() -> float:
        begin()
        for i in range(n):
            while True:
                try:
                    if on_delivery is None:
                        produce(topic, value)
                    else:
                        produce(topic, value, on_delivery=on_delivery)
                    break
                except BufferError:  # librdkafka's queue is full: serve delivery reports to make room
                    poll(0.0005)
            if i % POLL_EVERY == POLL_EVERY - 1:
                poll(0)
        t0 = perf()
        commit()  # flushes (serving the remaining delivery reports on this thread), then EndTxn
        return perf() - t0

    def close() -> None:
        producer.flush(60)
        if errors:
            print(f"confluent-kafka error_cb: {errors[:5]}", file=sys.stderr)

    return producer, transaction, close


def child(spec: dict[str, Any]) -> dict[str, Any]:
    confirmations = Outcomes("callback")  # the comparison harness's per-record counts
    make = _kafkaprod_transactions if spec["client"] == "kafkaprod" else _confluent_transactions
    _producer, transaction, close = make(spec, confirmations)
    transaction()  # the warm-up: connections, metadata, the first AddPartitionsToTxn; stays in the topic
    warm_ok = confirmations.delivered
    commits: list[float] = []
    record = commits.append
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(spec["transactions"]):
        record(transaction())
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    confirmed = confirmations.delivered - warm_ok  # read right after the last commit returned, before close
    close()
    records = spec["transactions"] * spec["records_per_transaction"]
    if spec["delivery"] == "callback" and (confirmed != records or confirmations.failed):
        raise SystemExit(f"{spec['client']}: {confirmed} of {records} records confirmed when the last commit "
                         f"returned, {confirmations.failed} failed (first: {confirmations.first_errors[:1]})")
    return {
        "client": spec["client"],
        "records": records,
        "elapsed_s": elapsed,
        "records_per_s": records / elapsed,
        "transactions_per_s": spec["transactions"] / elapsed,
        "cpu_s": cpu,
        "commit_ms": statistics.fmean(commits) * 1000.0,
        "commit_max_ms": max(commits) * 1000.0,
        "confirmed": confirmed if spec["delivery"] == "callback" else None,
    }


def client_versions() -> dict[str, str]:
    import confluent_kafka

    import kafkaprod

    return {"kafkaprod": f"{kafkaprod.__version__} ({os.path.dirname(kafkaprod.__file__)})",
            "confluent": f"{confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}"}


def count_committed(bootstrap: str, topic: str, timeout: float = _COUNT_TIMEOUT_S) -> dict[int, int]:
    """Records a read_committed consumer reads in each partition of ``topic``, from the earliest offset to the end
    (offsets cannot count them: commit markers take offsets too)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-txn-count-" + uuid.uuid4().hex[:8],
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        counts = dict.fromkeys(partitions, 0)
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"counting {topic}: partitions {sorted(set(partitions) - at_end)} did not reach "
                                   f"their end within {timeout:.0f} s (counts so far {counts})")
            for msg in consumer.consume(10_000, 0.5):
                err, partition = msg.error(), msg.partition()
                assert partition is not None  # set on records and on end-of-partition events
                if err is None:
                    counts[partition] += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
                else:
                    raise RuntimeError(f"counting {topic}: {err}")
        return counts
    finally:
        consumer.close()


def run_once(args: argparse.Namespace, client: str, bootstrap: str, round_no: int) -> dict[str, Any]:
    from kafkaprod.tools.broker import create_topics, delete_topics

    topic = f"txn-{client}-{round_no}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: PARTITIONS})
    try:
        spec = {"client": client, "bootstrap": bootstrap, "topic": topic,
                "transactional_id": f"bench-txn-{client}-{uuid.uuid4()}", "transactions": args.transactions,
                "records_per_transaction": args.records_per_transaction, "record_size": args.record_size,
                "linger_ms": args.linger_ms, "batch_size": args.batch_size, "delivery": args.delivery}
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                                  capture_output=True, text=True, cwd="/", timeout=_CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(f"{client} round {round_no + 1}: the child did not finish within "
                             f"{_CHILD_TIMEOUT_S:.0f} s; stderr:\n{exc.stderr!s}") from exc
        if proc.returncode != 0:
            raise SystemExit(f"{client} round {round_no + 1}: the child exited with {proc.returncode}; stderr:\n"
                             f"{proc.stderr}")
        if proc.stderr.strip():
            print(f"{client} round {round_no + 1} stderr:\n{proc.stderr.rstrip()}", file=sys.stderr)
        run: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        counts = count_committed(bootstrap, topic)
        expected = (args.transactions + 1) * args.records_per_transaction
        if sum(counts.values()) != expected:
            raise SystemExit(f"{client} round {round_no + 1}: a read_committed consumer read {sum(counts.values()):,} "
                             f"records in {topic}, expected {expected:,} ({args.transactions} transactions + 1 "
                             f"warm-up, {args.records_per_transaction} records each); per partition {counts}")
        run.update(round=round_no + 1, topic=topic, committed_per_partition=counts)
        return run
    finally:
        delete_topics(bootstrap, [topic])


def format_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    med = {client: {key: statistics.median(r[key] for r in runs if r["client"] == client)
                    for key in ("records_per_s", "transactions_per_s", "cpu_s", "commit_ms")}
           for client in CLIENTS}
    lines = [f"{args.transactions} transactions x {args.records_per_transaction:,} records of {args.record_size} B, "
             f"{PARTITIONS} partitions, linger {args.linger_ms} ms, batch size {args.batch_size:,}, delivery "
             f"{args.delivery}; medians of {args.rounds} rounds", "",
             "| client | records/s | txn/s | CPU s | commit ms |", "|---|--:|--:|--:|--:|"]
    for client in CLIENTS:
        m = med[client]
        lines.append(f"| {client} | {m['records_per_s']:,.0f} | {m['transactions_per_s']:,.1f} | {m['cpu_s']:.2f} "
                     f"| {m['commit_ms']:.2f} |")
    k, c = med["kafkaprod"], med["confluent"]
    lines.append(f"| kafkaprod ÷ confluent | {k['records_per_s'] / c['records_per_s']:.2f}x | "
                 f"{k['transactions_per_s'] / c['transactions_per_s']:.2f}x | {k['cpu_s'] / c['cpu_s']:.2f}x | "
                 f"{k['commit_ms'] / c['commit_ms']:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--records-per-transaction", type=int, default=1000)
    parser.add_argument("--record-size", type=int, default=100)
    parser.add_argument("--delivery", choices=("none", "callback"), default="callback")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1_000_000,
                        help="batch size in bytes for both clients (librdkafka's default; bench/compare.py's)")
    parser.add_argument("--bootstrap-servers", help="use this cluster instead of starting a local Tansu broker")
    parser.add_argument("--json", metavar="PATH", help="save every run (and the settings) as JSON")
    parser.add_argument("--child", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    for name in ("rounds", "transactions", "records_per_transaction", "record_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    from kafkaprod.tools.broker import TansuBroker

    versions = client_versions()
    print(f"kafkaprod {versions['kafkaprod']}; confluent-kafka {versions['confluent']}", file=sys.stderr)
    runs: list[dict[str, Any]] = []

    def rounds(bootstrap: str) -> None:
        for r in range(args.rounds):
            for client in CLIENTS:
                run = run_once(args, client, bootstrap, r)
                runs.append(run)
                print(f"round {r + 1} {client:>9}: {run['records_per_s']:,.0f} records/s, "
                      f"{run['transactions_per_s']:.1f} txn/s, CPU {run['cpu_s']:.2f} s, commit "
                      f"{run['commit_ms']:.2f} ms (max {run['commit_max_ms']:.1f}), committed "
                      f"{sum(run['committed_per_partition'].values()):,} {run['committed_per_partition']}",
                      file=sys.stderr)

    if args.bootstrap_servers:
        rounds(args.bootstrap_servers)
    else:
        with TansuBroker() as broker:
            rounds(broker.bootstrap_servers)
    table = format_table(runs, args)
    print(table)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("child", "json")}
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "settings": settings, "versions": versions, "runs": runs,
                       "table": table}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
