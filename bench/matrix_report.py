"""bench/matrix.py's markdown report: one line per row with both clients' medians and kafkaprod ÷ confluent."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kafkaprod.tools.compare import fmt

#: The bar a row is held to: kafkaprod at least this many times confluent's rate, at most this share of its CPU.
RATE_BAR, CPU_BAR = 1.5, 0.5


def verdicts(kafkaprod: dict[str, Any] | None, confluent: dict[str, Any] | None) -> dict[str, Any]:
    """kafkaprod ÷ confluent for rate and CPU per record, and whether the row meets each bar (None: unknown)."""
    if not kafkaprod or not confluent:
        return {"rate_ratio": None, "cpu_ratio": None, "meets_bar": None, "broker_ok": None}
    rate = kafkaprod["records_per_s"] / confluent["records_per_s"]
    cpu = kafkaprod["cpu_us_per_record"] / confluent["cpu_us_per_record"]
    ours, theirs = kafkaprod.get("broker_cpu_s_per_million"), confluent.get("broker_cpu_s_per_million")
    return {"rate_ratio": rate, "cpu_ratio": cpu, "meets_bar": rate >= RATE_BAR and cpu <= CPU_BAR,
            "broker_ok": None if ours is None or theirs is None else ours <= theirs}


def _yes(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def _pair(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str, digits: int = 0) -> list[str]:
    return [fmt(None if s is None else s.get(key), digits) for s in (a, b)]


HEADER = ("| row | records/run | runs | records/s kafkaprod | records/s confluent | rate ÷ | CPU s kafkaprod "
          "| CPU s confluent | CPU ÷ | broker CPU s/M kafkaprod | broker CPU s/M confluent | batch B kafkaprod "
          "| batch B confluent | records/request kafkaprod | records/request confluent | Produce requests kafkaprod "
          f"| Produce requests confluent | ≥ {RATE_BAR}× rate at ≤ {CPU_BAR}× CPU | broker CPU/M ≤ confluent's |")


def row_line(row: dict[str, Any]) -> str:
    by = {s["client"]: s for s in row["summary"]}
    kp, cf = by.get("kafkaprod"), by.get("confluent")
    v = verdicts(kp, cf)
    runs = "/".join(str(s["runs"]) if s else "0" for s in (kp, cf))
    cells = [row["row"], f"{row['records']:,}", runs, *_pair(kp, cf, "records_per_s"), fmt(v["rate_ratio"], 2),
             *_pair(kp, cf, "cpu_s", 2), fmt(v["cpu_ratio"], 2), *_pair(kp, cf, "broker_cpu_s_per_million", 2),
             *_pair(kp, cf, "batch_size_avg"), *_pair(kp, cf, "records_per_request", 1),
             *_pair(kp, cf, "produce_requests"), _yes(v["meets_bar"]), _yes(v["broker_ok"])]
    return "| " + " | ".join(cells) + " |"


def notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        if row.get("error"):
            out.append(f"- {row['row']}: stopped: {row['error']}")
        for client, why in row.get("failed", {}).items():
            out.append(f"- {row['row']}: {client} failed: {why}")
        off = [run for run in row["runs"] if run.get("stats_records_match") is False]
        if off:
            out.append(f"- {row['row']}: librdkafka's summed batch records differ from the records sent in "
                       f"{len(off)} run(s): {[(r['batch_records'], r['records']) for r in off]}")
    return out


def machine_line(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    return (f"- machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"{fmt(m['memory_gib'], 1)} GiB, Linux {m['kernel']}, Python {m['python']}, load average "
            f"{m['loadavg_at_start'][0]:.2f} at start, {meta.get('loadavg_at_end', [math.nan])[0]:.2f} at end")


def render(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    clients = ", ".join(f"{name} {info.get('version', '?')}" + (f" (librdkafka {info['librdkafka']})"
                                                               if info.get("librdkafka") else "")
                        for name, info in meta.get("clients", {}).items())
    lines = [
        "## Workload matrix: kafkaprod send() vs confluent-kafka produce()", "",
        f"- date: {meta['date']}", machine_line(meta), f"- broker: {meta['broker']}", f"- clients: {clients}",
        f"- command: `{meta['command']}`",
        f"- method: per row, {meta['rounds']} alternating round(s) (kafkaprod, confluent, ...), each run a fresh "
        "process and fresh topic(s), one warm-up record per topic; window = first send to last acknowledgement; "
        f"delivery {meta['delivery']}; medians over rounds. CPU = user+sys of the client process (all threads) in "
        "the window; broker CPU s/M = the broker's CPU over the window per million records; ÷ = kafkaprod ÷ "
        "confluent (CPU per record). batch B = bytes per batch over the producer's life (the warm-up batch "
        "included); records/request and Produce requests = the window's (kafkaprod metrics(), librdkafka "
        "statistics)" + ("" if meta.get("batch_stats", True) else "; batching figures off (--no-batch-stats)"),
        "- settings: java = acks=all, idempotence on, batch 16,384 B, linger 5 ms, max request 1 MiB; throughput = "
        "acks=1, idempotence off, batch 1,000,000 B, linger 5 ms, max request 64 MiB; the same for both clients",
        f"- wall time: {fmt(meta.get('wall_s'), 0)} s", "",
        HEADER, "|---|--:|--:|" + "--:|" * 14 + "---|---|",
    ]
    lines += [row_line(row) for row in rows]
    problems = notes(rows)
    if problems:
        lines += ["", "Problems:", *problems]
    lines += ["", "<details><summary>every run</summary>", "",
              "| row | round | client | records | records/s | CPU s | broker CPU s | other CPU s | peak RSS MB (VmHWM) "
              "| Produce requests | records/request | batch B | wall s |",
              "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        for run in row["runs"]:
            lines.append(
                f"| {row['row']} | {run['round']} | {run['client']} | {run['records']:,} "
                f"| {fmt(run['records_per_s'])} | {fmt(run['cpu_s'], 2)} | {fmt(run.get('broker_cpu_s'), 2)} "
                f"| {fmt(run.get('other_cpu_s'), 2)} | {fmt(run.get('peak_rss_own_mb'))} | {fmt(run.get('produce_requests'))} "
                f"| {fmt(run.get('records_per_request'), 1)} | {fmt(run.get('batch_size_avg'))} "
                f"| {fmt(run.get('child_wall_s'), 1)} |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)
