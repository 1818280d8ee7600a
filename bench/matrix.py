"""The workload matrix: kafkaprod ``send()`` against confluent-kafka ``produce()`` over many workload shapes.

One row per shape and producer setting; each row is ``--rounds`` alternating runs (kafkaprod, confluent,
kafkaprod, ...) on a local broker started afresh for each row, and its figures are medians over the rounds.
The measuring is the comparison harness's (kafkaprod/tools/compare.py, child kafkaprod/tools/runners.py): a fresh
process and fresh topic(s) per run, one warm-up record per topic, window = first send to last acknowledgement,
every run's records counted on the broker. Per run it records records/s, client CPU s (user+sys, all threads),
the broker's CPU s over the window (from /proc, by its pid), peak RSS, and the client's own batching figures:
Produce requests and records per request in the window and bytes per batch (kafkaprod ``metrics()``, librdkafka
statistics; see kafkaprod/tools/runners_batching.py).

The shapes (``--list``): 1, 6, 100, 1,000 and 10,000 partitions of 100-byte values, keyless and keyed (9-byte
keys, 100,000 distinct, cycled), 100 topics x 10 partitions (record i to topic i % 100), keyless and keyed, and
values of 10 B, 1 KiB, 10 KiB and 100 KiB on 6 keyless partitions (the 100 B one is ``p6``). Each in two
settings: ``java`` (the Java producer's defaults: acks=all, idempotence, 16,384-byte batches, linger 5 ms) and
``throughput`` (acks=1, no idempotence, 1,000,000-byte batches, linger 5 ms). The max request size (kafkaprod
``max_request_size``, confluent ``message.max.bytes``) is Java's 1 MiB in ``java`` and the harness's 64 MiB in
``throughput``; both let a 100 KiB record through. A run carries about 50 MB of values (500 to 1,000,000 records) times ``--scale``.

    python bench/matrix.py                                  # every row, 3 rounds, on a local Tansu
    python bench/matrix.py --broker noida --json bench/results/matrix-noida.json
    python bench/matrix.py --rows 'p1000,p1000-keyed,v*/java' --rounds 5
    python bench/matrix.py --rounds 1 --scale 0.2           # a quick pass over every row
    python bench/matrix.py --list
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python bench/matrix.py`: make `bench.*` importable like `python -m bench.matrix`
    sys.path.insert(0, str(ROOT))

from bench.compare import machine_info  # noqa: E402
from bench.matrix_report import render, verdicts  # noqa: E402
from kafkaprod.tools.compare import (  # noqa: E402
    DELIVERY_MODES,
    Results,
    Workload,
    line_up,
    positive_int,
    run_rounds,
    summarize,
)

CLIENTS = ("kafkaprod", "confluent")
KEY_SIZE, KEY_COUNT = 9, 100_000
#: Values per run, before --scale: about 50 MB, within these record counts...
VOLUME_BYTES, MIN_RECORDS, MAX_RECORDS = 50_000_000, 500, 1_000_000
#: ...and 250 MB for records of 1 KiB and more: both clients move those at 100-700 MB/s, so 50 MB ran in a
#: fraction of a second, shorter than noida-db's background writes of the run before, whose CPU then landed in
#: the next run's broker figures.
LARGE_RECORD, LARGE_VOLUME_BYTES = 1024, 250_000_000
#: The run fields the report takes medians of, besides the harness's own.
FIGURES = ("broker_cpu_s_per_million", "produce_requests", "records_per_request", "batch_size_avg")


@dataclass(frozen=True)
class Shape:
    name: str
    partitions: int  # per topic
    topics: int = 1
    record_size: int = 100
    keyed: bool = False


SHAPES = [
    *(Shape(f"p{n}{suffix}", n, keyed=keyed) for n in (1, 6, 100, 1000, 10_000)
      for suffix, keyed in (("", False), ("-keyed", True))),
    Shape("t100x10", 10, topics=100), Shape("t100x10-keyed", 10, topics=100, keyed=True),
    *(Shape(name, 6, record_size=size) for name, size in
      (("v10", 10), ("v1k", 1024), ("v10k", 10 * 1024), ("v100k", 100 * 1024))),
]
SETTINGS: dict[str, dict[str, Any]] = {
    # Java's max.request.size default is 1 MiB (confluent's message.max.bytes, 1,000,000): a request of many small
    # batches costs a broker per batch, so the request size shapes what many partitions cost.
    "java": {"acks": "all", "idempotence": True, "batch_size": 16_384, "linger_ms": 5,
             "max_request_size": 1_048_576},
    "throughput": {"acks": "1", "idempotence": False, "batch_size": 1_000_000, "linger_ms": 5},
}
#: What runs showed about rows on a broker ("*": any): (row glob, broker) -> note, shown by --list. A row that
#: cannot run on a broker belongs here with the reason; on 2026-12-07 every row ran on Tansu 0.6.0 and noida-db.
ROW_NOTES: dict[tuple[str, str], str] = {
    ("p10000*", "tansu"): "counting a run's records takes ~20 s (Tansu serves fetches of many partitions slowly)",
    ("p10000-keyed/java", "tansu"): "broker-bound for both clients (confluent 3,838 records/s, 229 broker CPU "
                                    "s per million records at --scale 0.2): the matrix's slowest row",
    ("p10000*", "noida"): "counting a run's records takes ~9 s",
    ("t100x10*", "*"): "kafkaprod's send() waits for each new topic's metadata in turn (~120 ms each): its 100 "
                       "warm-up records take ~12 s a run, before the window",
}


@dataclass(frozen=True)
class Row:
    shape: Shape
    setting: str

    @property
    def name(self) -> str:
        return f"{self.shape.name}/{self.setting}"

    def describe(self) -> str:
        s = self.shape
        where = f"{s.topics} topics x {s.partitions} partitions" if s.topics > 1 else \
            f"{s.partitions} partition{'s' if s.partitions > 1 else ''}"
        keys = f"{KEY_SIZE} B keys" if s.keyed else "no keys"
        return f"{s.record_size:,} B values, {keys}, {where}, {self.setting}"


ROWS = [Row(shape, setting) for shape in SHAPES for setting in SETTINGS]


def select_rows(text: str | None, rows: list[Row] = ROWS) -> list[Row]:
    """The rows named by comma-separated names or globs, in table order. A pattern without '/' matches shape
    names too, so ``p6`` is both of p6's settings and ``*/java`` every java row."""
    if not text:
        return list(rows)
    chosen: set[str] = set()
    for pattern in filter(None, (p.strip() for p in text.split(","))):
        hits = {row.name for row in rows if fnmatch.fnmatchcase(row.name, pattern)
                or ("/" not in pattern and fnmatch.fnmatchcase(row.shape.name, pattern))}
        if not hits:
            raise ValueError(f"no row matches {pattern!r}; --list shows them")
        chosen |= hits
    return [row for row in rows if row.name in chosen]


def records_per_run(record_size: int, scale: float = 1.0, override: int | None = None) -> int:
    """About VOLUME_BYTES of values (LARGE_VOLUME_BYTES for records of LARGE_RECORD bytes and more), clamped to
    [MIN_RECORDS, MAX_RECORDS], times ``scale``; ``override`` wins."""
    if override is not None:
        return override
    volume = LARGE_VOLUME_BYTES if record_size >= LARGE_RECORD else VOLUME_BYTES
    base = min(MAX_RECORDS, max(MIN_RECORDS, round(volume / record_size)))
    return max(1, round(base * scale))


def stats_interval_ms(partitions: int) -> int:
    """librdkafka's statistics interval: 100 ms, longer with many partitions. Writing one emission costs
    librdkafka about 2.5 µs per partition (measured idle: 12.6% of a core at 10,000 partitions every 200 ms, 2% at
    1,000), paid inside the window; a quarter of a millisecond per partition keeps that near 1% of a core."""
    return max(100, partitions // 4)


def workload(row: Row, num_records: int, delivery: str) -> Workload:
    s = row.shape
    return Workload(num_records=num_records, record_size=s.record_size, key_size=KEY_SIZE if s.keyed else 0,
                    key_count=KEY_COUNT, partitions=s.partitions, topics=s.topics, delivery=delivery,
                    **SETTINGS[row.setting])


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/matrix.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("tansu", "noida"), default="tansu", help="local broker (default tansu)")
    parser.add_argument("--rows", default=None, metavar="NAME[,NAME...]",
                        help="rows by name or glob (a name without '/' selects both settings); default: all")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds per row (default 3)")
    parser.add_argument("--scale", type=_positive_float, default=1.0, help="multiply every row's record count")
    parser.add_argument("--num-records", type=positive_int, default=None, help="records per run, every row")
    parser.add_argument("--delivery", choices=DELIVERY_MODES, default="callback",
                        help="what the loop does about each record's outcome (default callback)")
    parser.add_argument("--no-batch-stats", action="store_true",
                        help="leave out the batching figures (to check what librdkafka's statistics cost)")
    parser.add_argument("--timeout", type=positive_int, default=1800, help="seconds before a run is killed")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every run here")
    return parser


def list_rows(rows: list[Row], scale: float, override: int | None) -> str:
    lines = ["| row | shape | records/run | notes |", "|---|---|--:|---|"]
    for row in rows:
        why = "; ".join(f"{broker}: {text}" for (glob, broker), text in ROW_NOTES.items()
                        if fnmatch.fnmatchcase(row.name, glob))
        lines.append(f"| {row.name} | {row.describe()} | "
                     f"{records_per_run(row.shape.record_size, scale, override):,} | {why} |")
    return "\n".join(lines + ["", "settings: " + "; ".join(f"{k} = {v}" for k, v in SETTINGS.items())])


def add_figures(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        broker = run.get("broker_cpu_s")
        run["broker_cpu_s_per_million"] = None if broker is None else broker / run["records"] * 1e6


def run_row(row: Row, args: argparse.Namespace, contenders: list[Any], bootstrap: str,
            broker_pid: int | None) -> dict[str, Any]:
    n = records_per_run(row.shape.record_size, args.scale, args.num_records)
    load = workload(row, n, args.delivery)
    started = time.monotonic()
    results: Results = run_rounds(
        contenders, load, bootstrap, args.rounds, broker_pid=broker_pid, timeout=args.timeout,
        topic_prefix="matrix", progress=lambda line: print(f"{row.name}: {line}", file=sys.stderr, flush=True),
        extra_spec={"batch_stats": not args.no_batch_stats,
                    "stats_interval_ms": stats_interval_ms(row.shape.partitions * row.shape.topics)})
    add_figures(results.runs)
    for run in results.runs:
        run["row"] = row.name
    summary = summarize(results.runs, CLIENTS, "kafkaprod", FIGURES)
    by = {s["client"]: s for s in summary}
    return {"row": row.name, "shape": asdict(row.shape), "setting": row.setting, "records": n,
            "workload": asdict(load), "summary": summary, "verdict": verdicts(by.get("kafkaprod"), by.get("confluent")),
            "runs": results.runs, "failed": results.failed, "error": results.error,
            "wall_s": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rows = select_rows(args.rows)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        print(list_rows(rows, args.scale, args.num_records))
        return 0
    lineup = line_up(CLIENTS)
    if [c.label for c in lineup.contenders] != list(CLIENTS):
        print(f"error: both clients must import: {lineup.skipped}", file=sys.stderr)
        return 2
    from kafkaprod.tools.broker import NoidaBroker, TansuBroker

    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "rounds": args.rounds, "delivery": args.delivery, "clients": lineup.info,
        "command": shlex.join(["python", "bench/matrix.py", *(sys.argv[1:] if argv is None else argv)]),
        "batch_stats": not args.no_batch_stats,
    }
    done: list[dict[str, Any]] = []
    started = time.monotonic()
    broker_cls = TansuBroker if args.broker == "tansu" else NoidaBroker
    meta["broker"] = (f"{'Tansu with memory storage' if args.broker == 'tansu' else 'noida-db'}, a fresh one "
                      f"for each row, on this host")
    try:
        for row in rows:
            # A fresh broker per row: Tansu's memory storage spends more per written batch the more partitions it
            # has held (deleted topics included), which would charge later rows for earlier ones.
            with broker_cls() as broker:
                try:
                    done.append(run_row(row, args, lineup.contenders, broker.bootstrap_servers, broker.pid))
                except Exception as exc:  # topics that cannot be made or counted: that row, not the matrix
                    print(f"{row.name}: FAILED: {exc}", file=sys.stderr, flush=True)
                    done.append({"row": row.name, "shape": asdict(row.shape), "setting": row.setting,
                                 "records": records_per_run(row.shape.record_size, args.scale, args.num_records),
                                 "summary": [], "runs": [], "failed": {}, "wall_s": None,
                                 "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    finally:
        meta["loadavg_at_end"] = os.getloadavg()
        meta["wall_s"] = time.monotonic() - started
    print(render(meta, done))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": done}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if any(r["failed"] or r["error"] for r in done) else 0


if __name__ == "__main__":
    sys.exit(main())
