"""kafkaprod against confluent-kafka, aiokafka and kafka-python on one Tansu broker, in one run: the benchmark CLI.

The measuring is kafkaprod's comparison harness (kafkaprod/tools/compare.py, its child kafkaprod/tools/runners.py),
the same that ``kafkaprod-perf --compare`` runs, so the two give comparable numbers for the same workload. This
file adds what only the benchmark needs: several rounds by default, named workloads, a detailed markdown report
(machine, broker CPU, every run), ``--json``, the replay ``--ceiling`` row (bench/ceiling.py) and ``--chart``.

Clients: kafkaprod (send() per record), kafkaprod-batch (send_batch() of 10,000 records per call), confluent
(produce() per record), confluent-batch (produce_batch() of 10,000 message dicts per call), aiokafka,
kafka-python. The bulk clients' inputs (lists, dicts) are built before the timed window.

    python bench/compare.py                                   # all installed clients, 3 rounds of 1M records
    python bench/compare.py --clients confluent,aiokafka --rounds 5 --json bench/results/run.json
    python bench/compare.py --workload keyed-lz4              # 16-byte keys, lz4
    python bench/compare.py --clients kafkaprod,confluent --baseline ../old/.venv/bin/python   # before/after

The method (fresh child process and fresh topic per run, alternating rounds, one warm-up record, window = first
send to the end of the final flush, records counted on the broker after every run) is described in
kafkaprod/tools/compare.py; broker CPU and the rest of the machine's CPU over each window are shown as well.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as `python bench/compare.py`: make `bench.*` importable like `python -m bench.compare`
    sys.path.insert(0, str(ROOT))

from bench import ceiling  # noqa: E402
from kafkaprod.tools.compare import (  # noqa: E402
    ASYNCIO_CLIENTS,
    BASELINE_SUFFIX,
    CLIENTS,
    CODECS,
    DELIVERY_MODES,
    EVENT_LOOPS,
    KAFKAPROD_CLIENTS,
    Workload,
    fmt,
    line_up,
    non_negative_int,
    positive_int,
    python_arg,
    run_rounds,
    summarize,
)

# The replay baseline (bench/ceiling.py) runs like a client, in its own child, under this name.
CEILING = ceiling.CLIENT

# Named workloads; explicit --key-size/--compression win over the preset.
WORKLOADS: dict[str, dict[str, Any]] = {
    "plain": {"key_size": 0, "compression": "none"},
    "keyed": {"key_size": 16, "compression": "none"},
    "lz4": {"key_size": 0, "compression": "lz4"},
    "keyed-lz4": {"key_size": 16, "compression": "lz4"},
}


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
    return client, positive_int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description="Producer throughput and CPU of kafkaprod and its peers on one Tansu broker; medians of "
                    "alternating rounds, each run a fresh process and a fresh topic.")
    parser.add_argument("--clients", type=_client_list, default=list(CLIENTS),
                        help=f"comma-separated subset of {','.join(CLIENTS)} (default: all; missing ones are skipped)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="runs per client, alternating (default 3)")
    parser.add_argument("--num-records", type=positive_int, default=1_000_000, help="records per run (default 1000000)")
    parser.add_argument("--client-records", type=_client_records, action="append", default=[], metavar="CLIENT=N",
                        help="records per run for one client (e.g. kafka-python=200000), repeatable; the table "
                             "shows what each client was measured with")
    parser.add_argument("--record-size", type=positive_int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="plain",
                        help="preset: plain (no keys, no compression), keyed (16-byte keys), lz4, keyed-lz4")
    parser.add_argument("--key-size", type=non_negative_int, default=None, help="key bytes (0: no keys); overrides --workload")
    parser.add_argument("--key-count", type=positive_int, default=10_000, help="distinct keys cycled through (default 10000)")
    parser.add_argument("--compression", choices=CODECS, default=None, help="codec; overrides --workload")
    parser.add_argument("--partitions", type=positive_int, default=6, help="partitions of each run's topic (default 6)")
    parser.add_argument("--acks", choices=("all", "-1", "0", "1"), default="1", help="acks (default 1)")
    parser.add_argument("--idempotence", action="store_true", help="enable idempotence (needs --acks all)")
    parser.add_argument("--linger-ms", type=non_negative_int, default=5, help="linger (default 5 ms)")
    parser.add_argument("--batch-size", type=positive_int, default=1_000_000, help="batch bytes (default 1000000)")
    parser.add_argument("--delivery", choices=DELIVERY_MODES, default="none",
                        help="none (default: fire and forget), callback (a delivery callback per record), future "
                             "(every future resolved after the flush) or gather (asyncio clients only: every "
                             "awaitable kept, then asyncio.gather() of them all); a failed record fails the run")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio",
                        help="the asyncio clients' event loop (default asyncio; uvloop needs the uvloop package)")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="use these brokers instead of starting a local Tansu (topics are still created and deleted)")
    parser.add_argument("--baseline", type=python_arg, default=None, metavar="PYTHON",
                        help="also run every selected kafkaprod client with this interpreter's kafkaprod (e.g. an "
                             "older build's venv/bin/python), as kafkaprod@baseline, alternating with the others")
    parser.add_argument("--ratio-base", choices=[*CLIENTS, *(c + BASELINE_SUFFIX for c in KAFKAPROD_CLIENTS)],
                        default="kafkaprod", metavar="CLIENT",
                        help="the client the ratio columns divide by the others (default kafkaprod)")
    parser.add_argument("--tls", action="store_true",
                        help="TLS: start stunnel4 in front of the local Tansu (which advertises stunnel's port) with a "
                             "throwaway CA, and have every client connect with security_protocol=SSL trusting it")
    parser.add_argument("--timeout", type=positive_int, default=1800, help="seconds before a run is killed (default 1800)")
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
    if args.tls and (args.ceiling or args.bootstrap_servers):
        parser.error("--tls starts its own TLS front for the local broker: not with --bootstrap-servers, and not "
                     "with --ceiling (the replay speaks plaintext)")
    if args.delivery == "gather":
        others = [c for c in args.clients if c.split("@")[0] not in ASYNCIO_CLIENTS]
        if others:
            parser.error(f"--delivery gather is asyncio.gather(): only {', '.join(ASYNCIO_CLIENTS)} have it, not "
                         f"{', '.join(others)} (pick clients with --clients)")
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
        delivery=args.delivery,
        event_loop=args.event_loop,
        client_records=dict(args.client_records),
    )
    return args, workload


def add_ceiling_fraction(rows: list[dict[str, Any]]) -> None:
    """Give every row ``fraction_of_ceiling``: its records/s over the ceiling's (None without a ceiling row)."""
    row_of_ceiling = next((row for row in rows if row["client"] == CEILING), None)
    for row in rows:
        row["fraction_of_ceiling"] = (row["records_per_s"] / row_of_ceiling["records_per_s"]
                                      if row_of_ceiling and row_of_ceiling["records_per_s"] and row["records_per_s"]
                                      else None)


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


def render_markdown(meta: dict[str, Any], workload: Workload, rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                    skipped: dict[str, str], ratio_base: str, failed: dict[str, str] | None = None,
                    notes: Sequence[str] = ()) -> str:
    m = meta["machine"]
    lines = [
        "## Producer throughput: kafkaprod and peers on Tansu",
        "",
        f"- date: {meta['date']}",
        f"- machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{fmt(m['memory_gib'], 1)} GiB, Linux {m['kernel']}, Python {m['python']}, "
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
    for note in notes:
        lines.append(f"- {note}")
    for client, why in skipped.items():
        lines.append(f"- skipped {client}: {why}")
    for client, why in (failed or {}).items():
        lines.append(f"- failed {client} (left out of the table): {why}")
    have_base = any(row["client"] == ratio_base for row in rows)
    if not have_base:
        lines.append(f"- ratio columns empty: no {ratio_base} runs (choose another with --ratio-base)")
    # Only with a ceiling row (--ceiling): the client's records/s over the replay's.
    fraction = any(row.get("fraction_of_ceiling") is not None for row in rows)
    if fraction:
        lines.append("- fraction of ceiling = client records/s ÷ the records/s of the same records replayed as "
                     "ready-encoded ProduceRequests (bench/ceiling.py): the most this broker takes on this machine")
    lines += [
        "",
        f"| client | version | records/run | runs | records/s | MB/s | CPU s | CPU µs/record | broker CPU s | "
        f"peak RSS MB | records/s {ratio_base} ÷ client (>1: {ratio_base} faster) "
        f"| CPU/record {ratio_base} ÷ client (<1: {ratio_base} cheaper) |" + (" fraction of ceiling |" if fraction else ""),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|" if fraction else ""),
    ]
    for row in rows:
        lines.append(
            f"| {row['client']} | {row['version']} | {', '.join(f'{n:,}' for n in row['records'])} | {row['runs']} "
            f"| {fmt(row['records_per_s'])} | {fmt(row['mb_per_s'], 1)} | {fmt(row['cpu_s'], 2)} "
            f"| {fmt(row['cpu_us_per_record'], 2)} | {fmt(row['broker_cpu_s'], 2)} | {fmt(row['peak_rss_mb'], 0)} "
            f"| {fmt(row['ratio_records_per_s'], 2)} "
            f"| {fmt(row['ratio_cpu_per_record'], 2)} |"
            + (f" {fmt(row.get('fraction_of_ceiling'), 2)} |" if fraction else ""))
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
            f"| {run['round']} | {run['client']} | {run['records']:,} | {fmt(run['records_per_s'])} "
            f"| {fmt(run['mb_per_s'], 1)} | {fmt(run['elapsed_s'], 2)} "
            f"| {fmt(run['cpu_s'], 2)} ({fmt(run['cpu_user_s'], 2)}+{fmt(run['cpu_sys_s'], 2)}) "
            f"| {fmt(run['broker_cpu_s'], 2)} | {fmt(run.get('other_cpu_s'), 2)} | {fmt(run['peak_rss_mb'], 0)} |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _run_over_tls(meta: dict[str, Any], contenders: list[Any], workload: Workload, args: argparse.Namespace) -> Any:
    """The rounds against a local Tansu behind stunnel4: every client (and the admin client that creates,
    counts and deletes the topics) connects over TLS, trusting a CA made for this run."""
    import tempfile

    from kafkaprod.tools.broker import TansuBroker, free_port
    from kafkaprod.tools.tls_front import Stunnel, make_certificates

    with tempfile.TemporaryDirectory(prefix="kafkaprod-tls-") as tmp:
        ca_file, server_file = make_certificates(Path(tmp))
        front = free_port()
        workload.security = {"security_protocol": "SSL", "ssl_cafile": str(ca_file)}
        with TansuBroker(advertised_port=front) as broker, Stunnel(Path(tmp), front, broker.port, server_file):
            meta["broker"] = (f"Tansu with memory storage behind stunnel4 (TLS on 127.0.0.1:{front}, plaintext "
                              f"{broker.bootstrap_servers}), started for this run on this host")
            return run_rounds(contenders, workload, f"127.0.0.1:{front}", args.rounds, broker_pid=broker.pid,
                              timeout=args.timeout, topic_prefix="bench")


def main(argv: list[str] | None = None) -> int:
    args, workload = parse_args(argv)
    command = shlex.join(["python", "bench/compare.py", *(sys.argv[1:] if argv is None else argv)])
    if args.chart_from:
        from bench.chart import draw_from_files

        draw_from_files(args.chart_from, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
        return 0
    lineup = line_up(args.clients, args.baseline)
    for client, why in lineup.skipped.items():
        print(f"note: skipping {client}: {why}", file=sys.stderr)
    for note in lineup.notes:
        print(f"note: {note}", file=sys.stderr)
    if not lineup.contenders:
        print("error: none of the selected clients can be imported", file=sys.stderr)
        return 2
    if args.ceiling:
        lineup.contenders.append(ceiling.contender())
        lineup.info[CEILING] = ceiling.client_version()
    labels = [contender.label for contender in lineup.contenders]
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "command": command, "rounds": args.rounds, "clients": lineup.info,
    }
    try:
        if args.bootstrap_servers:
            meta["broker"] = f"external, {args.bootstrap_servers}"
            results = run_rounds(lineup.contenders, workload, args.bootstrap_servers, args.rounds,
                                 timeout=args.timeout, topic_prefix="bench")
        elif args.tls:
            results = _run_over_tls(meta, lineup.contenders, workload, args)
        else:
            from kafkaprod.tools.broker import TansuBroker

            with TansuBroker() as broker:
                meta["broker"] = f"Tansu with memory storage, started for this run on this host ({broker.bootstrap_servers})"
                results = run_rounds(lineup.contenders, workload, broker.bootstrap_servers, args.rounds,
                                     broker_pid=broker.pid, timeout=args.timeout, topic_prefix="bench")
    finally:
        meta["loadavg_at_end"] = os.getloadavg()
    rows = summarize(results.runs, labels, args.ratio_base)
    add_ceiling_fraction(rows)
    print(render_markdown(meta, workload, rows, results.runs, lineup.skipped, args.ratio_base, results.failed,
                          [*lineup.builds(), *lineup.notes]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "workload": asdict(workload), "skipped": lineup.skipped,
                                         "failed": results.failed, "summary": rows, "runs": results.runs,
                                         "error": results.error}, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.chart and rows:
        from bench.chart import draw

        draw([{"meta": meta, "workload": asdict(workload), "summary": rows}], args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    if results.error or results.failed:
        print(f"\nERROR: {results.error or 'failed: ' + ', '.join(results.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
