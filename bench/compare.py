"""kafkaprod against confluent-kafka, aiokafka and kafka-python on one Tansu broker, in one run.

Clients: kafkaprod (send() per record), kafkaprod-batch (send_batch() of 10,000 records per call), confluent
(produce() per record), confluent-batch (produce_batch() of 10,000 message dicts per call), aiokafka,
kafka-python. The bulk clients' inputs (lists, dicts) are built before the timed window.

    python bench/compare.py                                   # all installed clients, 3 rounds of 1M records
    python bench/compare.py --clients confluent,aiokafka --rounds 5 --json bench/results/run.json
    python bench/compare.py --workload keyed-lz4              # 16-byte keys, lz4

Method (why each step is there):

- Every run is a fresh child process (bench/runners.py) so no client inherits another's threads, memory or
  imported C libraries, and CPU time and peak RSS belong to that client alone.
- Runs alternate between clients (round 1: A B C D, round 2: A B C D, ...) so that slow drift of this shared
  machine hits every client alike; the table reports medians over rounds.
- Each run gets a fresh topic (created before, deleted after): no client writes behind another's records.
- Inside the child, the window is first send -> last acknowledgement, after one warm-up record (connections,
  metadata). CPU is user+sys of the whole child (all threads), broker CPU is read from /proc over the same window.
- After each run the records in the topic are counted on the broker; anything but num_records + 1 (the warm-up)
  stops the benchmark with an error, since a number for lost or duplicated records measures nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python bench/compare.py`: make `bench.*` importable like `python -m bench.compare`
    sys.path.insert(0, str(ROOT))

from bench import brokers  # noqa: E402
from bench.runners import CLIENTS  # noqa: E402

RUNNER = Path(__file__).resolve().with_name("runners.py")
# The replay baseline (bench/ceiling.py) runs like a client, in its own child, under this name.
CEILING = "ceiling"
CEILING_SCRIPT = Path(__file__).resolve().with_name("ceiling.py")

# Named workloads; explicit --key-size/--compression win over the preset.
WORKLOADS: dict[str, dict[str, Any]] = {
    "plain": {"key_size": 0, "compression": "none"},
    "keyed": {"key_size": 16, "compression": "none"},
    "lz4": {"key_size": 0, "compression": "lz4"},
    "keyed-lz4": {"key_size": 16, "compression": "lz4"},
}
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


class BenchmarkError(Exception):
    """A run that produced no trustworthy number (lost records, a crashed child)."""


@dataclass
class Workload:
    num_records: int = 1_000_000
    record_size: int = 100
    key_size: int = 0
    key_count: int = 10_000
    compression: str = "none"
    partitions: int = 6
    acks: str = "1"
    idempotence: bool = False
    linger_ms: int = 5
    batch_size: int = 1_000_000
    client_records: dict[str, int] = field(default_factory=dict)

    def records_for(self, client: str) -> int:
        return self.client_records.get(client, self.num_records)

    def describe(self) -> str:
        keys = f"{self.key_size}-byte keys ({self.key_count:,} distinct, cycled)" if self.key_size else "no keys"
        return (f"{self.record_size}-byte values, {keys}, {self.partitions} partitions, acks={self.acks}, "
                f"idempotence {'on' if self.idempotence else 'off'}, linger {self.linger_ms} ms, "
                f"batch size {self.batch_size:,} B, compression {self.compression}")


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _client_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CLIENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown client(s) {unknown or text!r}; choose from {', '.join(CLIENTS)}")
    return list(dict.fromkeys(names))


def _client_records(text: str) -> tuple[str, int]:
    client, sep, count = text.partition("=")
    if not sep or client not in CLIENTS:
        raise argparse.ArgumentTypeError(f"expected CLIENT=N with CLIENT one of {', '.join(CLIENTS)}, got {text!r}")
    return client, _positive_int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description="Producer throughput and CPU of kafkaprod and its peers on one Tansu broker; medians of "
                    "alternating rounds, each run a fresh process and a fresh topic.")
    parser.add_argument("--clients", type=_client_list, default=list(CLIENTS),
                        help=f"comma-separated subset of {','.join(CLIENTS)} (default: all; missing ones are skipped)")
    parser.add_argument("--rounds", type=_positive_int, default=3, help="runs per client, alternating (default 3)")
    parser.add_argument("--num-records", type=_positive_int, default=1_000_000, help="records per run (default 1000000)")
    parser.add_argument("--client-records", type=_client_records, action="append", default=[], metavar="CLIENT=N",
                        help="records per run for one client (e.g. kafka-python=200000), repeatable; the table "
                             "shows what each client was measured with")
    parser.add_argument("--record-size", type=_positive_int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="plain",
                        help="preset: plain (no keys, no compression), keyed (16-byte keys), lz4, keyed-lz4")
    parser.add_argument("--key-size", type=_non_negative_int, default=None, help="key bytes (0: no keys); overrides --workload")
    parser.add_argument("--key-count", type=_positive_int, default=10_000, help="distinct keys cycled through (default 10000)")
    parser.add_argument("--compression", choices=CODECS, default=None, help="codec; overrides --workload")
    parser.add_argument("--partitions", type=_positive_int, default=6, help="partitions of each run's topic (default 6)")
    parser.add_argument("--acks", choices=("all", "-1", "0", "1"), default="1", help="acks (default 1)")
    parser.add_argument("--idempotence", action="store_true", help="enable idempotence (needs --acks all)")
    parser.add_argument("--linger-ms", type=_non_negative_int, default=5, help="linger (default 5 ms)")
    parser.add_argument("--batch-size", type=_positive_int, default=1_000_000, help="batch bytes (default 1000000)")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="use these brokers instead of starting a local Tansu (topics are still created and deleted)")
    parser.add_argument("--baseline", choices=CLIENTS, default="kafkaprod",
                        help="the client the ratio columns divide by the others (default kafkaprod)")
    parser.add_argument("--timeout", type=_positive_int, default=1800, help="seconds before a run is killed (default 1800)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write all runs and medians here")
    parser.add_argument("--ceiling", action="store_true",
                        help="also run bench/ceiling.py (ready-encoded requests replayed at the broker) as a client "
                             "named 'ceiling' and add a 'fraction of ceiling' column")
    parser.add_argument("--chart", type=Path, default=None, metavar="PATH.png",
                        help="draw records/s, CPU s per million records and peak RSS per client as a PNG")
    parser.add_argument("--chart-from", type=Path, nargs="+", default=None, metavar="RUN.json",
                        help="draw --chart from these --json files (one workload each) instead of running")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Workload]:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = WORKLOADS[args.workload]
    acks = "all" if args.acks == "-1" else args.acks
    if args.idempotence and acks != "all":
        parser.error("--idempotence needs --acks all")
    if args.ceiling and acks == "0":
        parser.error("--ceiling needs acks: the replay ends its window at the last answer, and acks=0 has none")
    if args.chart_from and args.chart is None:
        parser.error("--chart-from needs --chart PATH.png to write to")
    workload = Workload(
        num_records=args.num_records,
        record_size=args.record_size,
        key_size=preset["key_size"] if args.key_size is None else args.key_size,
        key_count=args.key_count,
        compression=preset["compression"] if args.compression is None else args.compression,
        partitions=args.partitions,
        acks=acks,
        idempotence=args.idempotence,
        linger_ms=args.linger_ms,
        batch_size=args.batch_size,
        client_records=dict(args.client_records),
    )
    return args, workload


def _child_env() -> dict[str, str]:
    # The repository root first, so that an in-place build of kafkaprod is the one measured (the probe records
    # which kafkaprod each run imported).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def probe_clients(clients: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Which clients import in a child process: ({client: version info}, {client: why skipped})."""
    found: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    for client in clients:
        proc = subprocess.run([sys.executable, str(RUNNER), "--probe", client], capture_output=True, text=True,
                              env=_child_env(), timeout=120)
        lines = proc.stdout.strip().splitlines()
        try:
            info = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-500:]}
        except json.JSONDecodeError:
            info = {"error": proc.stdout.strip()[-500:]}
        if proc.returncode == 0:
            found[client] = info
        else:
            why = (info.get("error") or f"probe exited {proc.returncode}").strip()
            skipped[client] = why if len(why) <= 240 else why[:240] + "..."
    return found, skipped


def run_once(client: str, workload: Workload, bootstrap: str, broker_pid: int | None, round_no: int,
             timeout: float, extra_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """One client, one fresh process, one fresh topic; the child's measurements plus the verified record count."""
    num_records = workload.records_for(client)
    topic = brokers.fresh_topic_name(f"bench-{client}-r{round_no}")
    brokers.create_topics(bootstrap, {topic: workload.partitions})
    spec = {
        "client": client, "topic": topic, "bootstrap_servers": bootstrap, "broker_pid": broker_pid,
        "num_records": num_records, "record_size": workload.record_size, "key_size": workload.key_size,
        "key_count": workload.key_count, "compression": workload.compression, "acks": workload.acks,
        "idempotence": workload.idempotence, "linger_ms": workload.linger_ms, "batch_size": workload.batch_size,
        "partitions": workload.partitions, **(extra_spec or {}),
    }
    child = [str(CEILING_SCRIPT), "--run"] if client == CEILING else [str(RUNNER)]
    try:
        with tempfile.TemporaryDirectory(prefix="kafkaprod-bench-") as tmp:
            result_path = Path(tmp) / "result.json"
            started = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, *child, json.dumps(spec), str(result_path)],
                                      capture_output=True, text=True, env=_child_env(), timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BenchmarkError(f"{client} round {round_no}: no result within {timeout:.0f}s (child killed)") from None
            wall = time.perf_counter() - started
            if proc.returncode != 0 or not result_path.exists():
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
                raise BenchmarkError(f"{client} round {round_no}: child exited {proc.returncode}:\n{tail}")
            result = json.loads(result_path.read_text())
        expected = num_records + 1  # the warm-up record
        stored = brokers.count_records(bootstrap, topic)
        if stored != expected:
            raise BenchmarkError(f"{client} round {round_no}: topic {topic} holds {stored:,} records, expected "
                                 f"{expected:,} ({num_records:,} + 1 warm-up); lost or duplicated records")
    finally:
        try:
            brokers.delete_topic(bootstrap, topic)
        except Exception as exc:  # a leftover topic costs broker memory, not correctness
            print(f"warning: could not delete topic {topic}: {exc}", file=sys.stderr)
    result.update(round=round_no, records_verified=stored, child_wall_s=wall)
    return result


def summarize(runs: list[dict[str, Any]], clients: list[str], baseline: str) -> list[dict[str, Any]]:
    """Per client: medians over its runs, and baseline ÷ client ratios when the baseline ran."""
    rows = []
    for client in clients:
        mine = [run for run in runs if run["client"] == client]
        if not mine:
            continue
        row: dict[str, Any] = {"client": client, "version": mine[0].get("version"), "runs": len(mine),
                               "records": sorted({run["records"] for run in mine})}
        for key in ("records_per_s", "mb_per_s", "cpu_s", "cpu_us_per_record", "peak_rss_mb", "broker_cpu_s"):
            values = [run[key] for run in mine if run.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    base = next((row for row in rows if row["client"] == baseline), None)
    for row in rows:
        row["ratio_records_per_s"] = base["records_per_s"] / row["records_per_s"] if base else None
        row["ratio_cpu_per_record"] = base["cpu_us_per_record"] / row["cpu_us_per_record"] if base else None
    return rows


def add_ceiling_fraction(rows: list[dict[str, Any]]) -> None:
    """Give every row ``fraction_of_ceiling``: its records/s over the ceiling's (None without a ceiling row)."""
    ceiling = next((row for row in rows if row["client"] == CEILING), None)
    for row in rows:
        row["fraction_of_ceiling"] = (row["records_per_s"] / ceiling["records_per_s"]
                                      if ceiling and ceiling["records_per_s"] and row["records_per_s"] else None)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render_markdown(meta: dict[str, Any], workload: Workload, rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                    skipped: dict[str, str], baseline: str) -> str:
    m = meta["machine"]
    lines = [
        "## Producer throughput: kafkaprod and peers on Tansu",
        "",
        f"- date: {meta['date']}",
        f"- machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{_fmt(m['memory_gib'], 1)} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"load average {m['loadavg_at_start'][0]:.2f} at start, {meta.get('loadavg_at_end', [math.nan])[0]:.2f} at end",
        f"- broker: {meta['broker']}",
        f"- command: `{meta['command']}`",
        f"- workload: {workload.describe()}",
        f"- method: {meta['rounds']} alternating rounds, each run a fresh process and topic, one warm-up record "
        "first; window = first send to last acknowledgement; medians over rounds; CPU = user+sys of the client "
        "process (all threads) in the window; broker CPU = Tansu's over the same window; other CPU = the rest of "
        "the machine's busy time in the window (other processes: noise); MB = 2^20 bytes of key+value; peak RSS = "
        "the child's lifetime peak",
    ]
    for client, why in skipped.items():
        lines.append(f"- skipped {client}: {why}")
    have_base = any(row["client"] == baseline for row in rows)
    if not have_base:
        lines.append(f"- ratio columns empty: no {baseline} runs (choose another with --baseline)")
    # Only with a ceiling row (--ceiling): the client's records/s over the replay's.
    fraction = any(row.get("fraction_of_ceiling") is not None for row in rows)
    if fraction:
        lines.append("- fraction of ceiling = client records/s ÷ the records/s of the same records replayed as "
                     "ready-encoded ProduceRequests (bench/ceiling.py): the most this broker takes on this machine")
    lines += [
        "",
        f"| client | version | records/run | runs | records/s | MB/s | CPU s | CPU µs/record | broker CPU s | "
        f"peak RSS MB | records/s {baseline} ÷ client (>1: {baseline} faster) "
        f"| CPU/record {baseline} ÷ client (<1: {baseline} cheaper) |" + (" fraction of ceiling |" if fraction else ""),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|" if fraction else ""),
    ]
    for row in rows:
        lines.append(
            f"| {row['client']} | {row['version']} | {', '.join(f'{n:,}' for n in row['records'])} | {row['runs']} "
            f"| {_fmt(row['records_per_s'])} | {_fmt(row['mb_per_s'], 1)} | {_fmt(row['cpu_s'], 2)} "
            f"| {_fmt(row['cpu_us_per_record'], 2)} | {_fmt(row['broker_cpu_s'], 2)} | {_fmt(row['peak_rss_mb'], 0)} "
            f"| {_fmt(row['ratio_records_per_s'], 2)} "
            f"| {_fmt(row['ratio_cpu_per_record'], 2)} |"
            + (f" {_fmt(row.get('fraction_of_ceiling'), 2)} |" if fraction else ""))
    lines += [
        "",
        "<details><summary>every run</summary>",
        "",
        "| round | client | records | records/s | MB/s | elapsed s | CPU s (user+sys) | broker CPU s | other CPU s "
        "| peak RSS MB |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['round']} | {run['client']} | {run['records']:,} | {_fmt(run['records_per_s'])} "
            f"| {_fmt(run['mb_per_s'], 1)} | {_fmt(run['elapsed_s'], 2)} "
            f"| {_fmt(run['cpu_s'], 2)} ({_fmt(run['cpu_user_s'], 2)}+{_fmt(run['cpu_sys_s'], 2)}) "
            f"| {_fmt(run['broker_cpu_s'], 2)} | {_fmt(run.get('other_cpu_s'), 2)} | {_fmt(run['peak_rss_mb'], 0)} |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, workload = parse_args(argv)
    command = shlex.join(["python", "bench/compare.py", *(sys.argv[1:] if argv is None else argv)])
    if args.chart_from:
        from bench.chart import draw_from_files

        draw_from_files(args.chart_from, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
        return 0
    found, skipped = probe_clients(args.clients)
    for client, why in skipped.items():
        print(f"note: skipping {client}: {why}", file=sys.stderr)
    clients = [client for client in args.clients if client in found]
    if not clients:
        print("error: none of the selected clients can be imported", file=sys.stderr)
        return 2
    if args.ceiling:
        from bench.ceiling import client_version as ceiling_version

        clients.append(CEILING)
        found[CEILING] = ceiling_version()
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "command": command, "rounds": args.rounds, "clients": found,
    }
    runs: list[dict[str, Any]] = []
    error: str | None = None
    try:
        if args.bootstrap_servers:
            meta["broker"] = f"external, {args.bootstrap_servers}"
            runs, error = _run_rounds(args, workload, clients, args.bootstrap_servers, None)
        else:
            with brokers.start_broker() as broker:
                meta["broker"] = f"Tansu with memory storage, started for this run on this host ({broker.bootstrap_servers})"
                runs, error = _run_rounds(args, workload, clients, broker.bootstrap_servers, brokers.broker_pid(broker))
    finally:
        meta["loadavg_at_end"] = os.getloadavg()
    rows = summarize(runs, clients, args.baseline)
    add_ceiling_fraction(rows)
    print(render_markdown(meta, workload, rows, runs, skipped, args.baseline))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "workload": asdict(workload), "skipped": skipped,
                                         "summary": rows, "runs": runs, "error": error}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.chart and rows:
        from bench.chart import draw

        draw([{"meta": meta, "workload": asdict(workload), "summary": rows}], args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    if error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _run_rounds(args: argparse.Namespace, workload: Workload, clients: list[str], bootstrap: str,
                broker_pid: int | None) -> tuple[list[dict[str, Any]], str | None]:
    runs: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for client in clients:
            try:
                run = run_once(client, workload, bootstrap, broker_pid, round_no, args.timeout)
            except BenchmarkError as exc:
                return runs, str(exc)
            runs.append(run)
            print(f"round {round_no} {client:>12}: {run['records']:,} records, {run['records_per_s']:,.0f} records/s, "
                  f"{run['mb_per_s']:.1f} MB/s, CPU {run['cpu_s']:.2f} s, {run['elapsed_s']:.2f} s", file=sys.stderr)
    return runs, None


if __name__ == "__main__":
    sys.exit(main())
