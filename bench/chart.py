"""compare.py's results as a PNG: records/s, CPU seconds per million records and peak RSS, per client per workload.

    python bench/compare.py --ceiling --chart bench/results/plain.png           # run, then draw this run
    python bench/compare.py --chart all.png --chart-from plain.json keyed.json  # draw earlier --json runs together

Each input is one compare.py run (one workload): its ``meta``, ``workload`` and ``summary`` (medians per client).
Workloads are the groups on the x axis, clients the bars in a group, in the same colour in every panel; the
ceiling (a replay, not a client) is hatched. Needs matplotlib (the ``bench`` extra); drawn with the Agg backend,
so no display is needed.
"""
from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CEILING = "ceiling"
# Fixed colours, so a client looks the same in every chart; others take the remaining tab10 colours.
_COLOURS = {"kafkaprod": "#1f77b4", "confluent": "#ff7f0e", "aiokafka": "#2ca02c", "kafka-python": "#9467bd",
            _CEILING: "#bbbbbb"}
# (summary key, panel title, value label): CPU µs per record is numerically CPU seconds per million records.
PANELS = (
    ("records_per_s", "records/s (higher is better)", "{:,.0f}"),
    ("cpu_us_per_record", "CPU s per million records (lower is better)", "{:.2f}"),
    ("peak_rss_mb", "peak RSS MB (lower is better)", "{:,.0f}"),
)


def workload_label(workload: dict[str, Any]) -> str:
    """A short name for a workload: keys, codec, batch size, acks (and the records each client sent)."""
    keys = f"{workload['key_size']} B keys" if workload.get("key_size") else "no keys"
    parts = [f"{workload.get('record_size', '?')} B values, {keys}", f"compression {workload.get('compression', '?')}",
             f"batch {workload.get('batch_size', 0):,} B, acks={workload.get('acks', '?')}"]
    return "\n".join(parts)


def _labels(datasets: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    labels = [workload_label(d.get("workload", {})) for d in datasets]
    # Two runs of the same workload (e.g. on different days) stay apart by their file name.
    return [f"{label}\n({name})" if labels.count(label) > 1 else label for label, name in zip(labels, names)]


def _clients(datasets: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for data in datasets:
        for row in data.get("summary", []):
            seen.setdefault(row["client"], None)
    # The ceiling last, so the clients sit together and the bound closes each group.
    return [c for c in seen if c != _CEILING] + ([_CEILING] if _CEILING in seen else [])


def _row(data: dict[str, Any], client: str) -> dict[str, Any] | None:
    return next((r for r in data.get("summary", []) if r["client"] == client), None)


def chart_title(datasets: Sequence[dict[str, Any]]) -> str:
    metas = [d.get("meta", {}) for d in datasets]
    dates = list(dict.fromkeys(m.get("date", "?") for m in metas))
    machines = []
    for m in metas:
        mach = m.get("machine") or {}
        mem = mach.get("memory_gib")
        machines.append(f"{mach.get('cpu_model', '?')}, {mach.get('cores', '?')} cores"
                        + (f", {mem:.1f} GiB" if isinstance(mem, (int, float)) else ""))
    machines = list(dict.fromkeys(machines))
    lines = ["Producer throughput on one Tansu broker: medians per client",
             f"{' / '.join(dates)} - {' / '.join(machines)}"]
    for m in metas:
        lines.extend(textwrap.wrap(f"$ {m.get('command', '?')}", 150))
    return "\n".join(lines)


def draw(datasets: Sequence[dict[str, Any]], path: Path, names: Sequence[str] | None = None) -> None:
    """Write the chart of ``datasets`` (compare.py --json contents, one per workload) to ``path`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    if not datasets:
        raise ValueError("no results to chart")
    names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(datasets))]
    labels = _labels(datasets, names)
    clients = _clients(datasets)
    spare = iter(c for c in plt.get_cmap("tab10").colors if c not in _COLOURS.values())
    colours = {c: _COLOURS.get(c) or next(spare, "grey") for c in clients}
    groups = len(datasets)
    present = [[c for c in clients if _row(d, c) is not None] for d in datasets]
    width = 0.8 / max(1, max(map(len, present)))
    fig_width = max(10.0, 2.2 + groups * (1.2 + 0.75 * len(clients)))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(fig_width * len(PANELS) / 2.2, 6.4), squeeze=False)
    for ax, (key, title, fmt) in zip(axes[0], PANELS):
        for client in clients:
            xs, heights, notes = [], [], []
            for gi, data in enumerate(datasets):
                row = _row(data, client)
                if row is None or row.get(key) is None:
                    continue
                # The clients a workload has sit side by side, centred on its tick; absent ones leave no gap.
                slot = present[gi].index(client)
                xs.append(gi + width * (slot - (len(present[gi]) - 1) / 2))
                heights.append(row[key])
                note = f"{row[key] / 1000:,.0f}k" if key == "records_per_s" else fmt.format(row[key])
                fraction = row.get("fraction_of_ceiling")
                if key == "records_per_s" and fraction is not None and client != _CEILING:
                    note += f"\n{fraction:.0%}"
                notes.append(note)
            if not xs:
                continue
            bars = ax.bar(xs, heights, width * 0.92, label=client, color=colours[client],
                          hatch="//" if client == _CEILING else None, edgecolor="black", linewidth=0.4)
            ax.bar_label(bars, notes, fontsize=7, padding=2)
        if key == "records_per_s":
            ax.yaxis.set_major_formatter(EngFormatter(sep=""))  # 1.5M rather than a 1e6 offset label
        if key == "records_per_s" and any(r.get("fraction_of_ceiling") is not None
                                          for d in datasets for r in d.get("summary", [])):
            title += "; % = of the ceiling"
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(groups), labels, fontsize=8)
        ax.margins(y=0.18)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, legend_labels = axes[0][0].get_legend_handles_labels()
    legend_labels = [f"{c} (replay of ready-encoded requests; its RSS holds them all)" if c == _CEILING else c
                     for c in legend_labels]
    fig.legend(handles, legend_labels, loc="lower center", ncol=min(len(clients), 6), fontsize=9, frameon=False)
    fig.suptitle(chart_title(datasets), fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_from_files(paths: Sequence[Path], out: Path) -> None:
    """Chart several compare.py --json files together (one workload each)."""
    datasets = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if "summary" not in data:
            raise ValueError(f"{path}: not a compare.py --json file (no 'summary')")
        datasets.append(data)
    draw(datasets, out, names=[Path(p).stem for p in paths])
