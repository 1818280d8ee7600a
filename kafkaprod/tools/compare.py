"""The comparison harness: kafkaprod and its peers producing the same records on one broker, as a ratio table.

The one harness behind ``kafkaprod-perf --compare`` (:mod:`kafkaprod.tools.perf`) and the source tree's
``bench/compare.py``, which adds named workloads, JSON, a replay ceiling and charts on top. Both run the same child
(:mod:`kafkaprod.tools.runners`) with the same records for the same :class:`Workload`, so their numbers compare.

Clients: ``kafkaprod`` (``send()`` per record), ``kafkaprod-batch`` (``send_batch()`` of ``chunk`` records per
call), ``confluent`` (confluent-kafka's ``Producer.produce()``), ``confluent-batch`` (``produce_batch()``),
``aiokafka`` and ``kafka-python``. How it measures (why each step is there):

- Every run is a fresh child process (``runners.py``, run as a script by path) so no client inherits another's
  threads, memory or C libraries, and CPU time and peak RSS are that client's alone. The child imports the
  kafkaprod this process imported: the directory holding it heads the child's ``PYTHONPATH``.
- Every run writes to a fresh topic, created before and deleted after it (Tansu's memory storage keeps every
  record in RAM until its topic goes); no client writes behind another's records.
- Runs alternate between clients (round 1: A B C D, round 2: A B C D, ...) so that slow drift of a shared
  machine hits every client alike; the tables show medians over rounds.
- Inside the child: one warm-up record first, then the window is first send to the end of the final flush;
  CPU is user+sys of the whole child (all threads) over the window; peak RSS is the child's lifetime peak.
- The delivery mode (:attr:`Workload.delivery`) says what the sending loop does about each record's outcome:
  ``none`` drops what send returns (fire and forget); ``callback`` gives every record a delivery callback;
  ``future`` keeps every future and resolves each after the final flush (confluent-kafka, which has no futures,
  uses its delivery callback). With callback or future the window also covers counting every outcome, and a run
  with a failed record fails. runners.py says what each client calls.
- After every run the records in the topic are counted on the broker; anything but the records sent plus the
  warm-up stops the comparison, since a number for lost or duplicated records measures nothing. A client whose
  child fails (a peer that cannot run with these settings on this broker, say) is named and dropped from later
  rounds; the others go on.
- Ratios divide one client (kafkaprod by default) by every other: records/s and CPU per record.
- A baseline build (``--baseline PYTHON``): every selected kafkaprod client runs a second time, as
  ``kafkaprod@baseline`` (``kafkaprod-batch@baseline``), under that interpreter, with whatever kafkaprod it has
  installed -- an older one, without this module, say. It runs the same runners.py by path (stdlib only), takes
  its turn right after the build under test in every round, and gets no PYTHONPATH, so the two rows of a
  before/after comparison come from one run on one broker.

Topic creation, deletion and counting use confluent-kafka's admin client and consumer, so it must be installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafkaprod.compression import COMPRESSION_TYPES
from kafkaprod.tools.runners import (
    ASYNCIO_CLIENTS,
    CLIENTS,
    DEFAULT_CHUNK,
    DEFAULT_KEY_COUNT,
    DELIVERY_MODES,
    EVENT_LOOPS,
    MODULES,
)

__all__ = [
    "ASYNCIO_CLIENTS", "BASELINE_SUFFIX", "BULK_CLIENTS", "CLIENTS", "CODECS", "DELIVERY_MODES", "EVENT_LOOPS",
    "KAFKAPROD_CLIENTS", "PER_RECORD_CLIENTS", "SECURITY_OPTIONS", "SHARED_OPTIONS", "ComparisonError", "Contender", "CountMismatch", "Lineup", "Results",
    "Workload", "client_settings", "format_table", "installed_clients", "line_up", "non_negative_int",
    "positive_int", "python_arg", "run_child", "run_once", "run_rounds", "summarize",
]

#: The child every client runs in, started by path.
RUNNER = Path(__file__).resolve().with_name("runners.py")
PER_RECORD_CLIENTS = ("kafkaprod", "confluent", "aiokafka", "kafka-python")
BULK_CLIENTS = ("kafkaprod-batch", "confluent-batch")
#: The clients that run a second time, as CLIENT@baseline, under a baseline interpreter.
KAFKAPROD_CLIENTS = ("kafkaprod", "kafkaprod-batch", "kafkaprod-aio")
BASELINE_SUFFIX = "@baseline"
CODECS = tuple(COMPRESSION_TYPES)
#: kafkaprod-perf -X options that every client can be given the same way; any other -X would only change kafkaprod.
SHARED_OPTIONS = frozenset({"enable_idempotence", "max_request_size"})
# Security options that every client gets too (each in its own spelling), so a comparison can run against a
# secured cluster.
SECURITY_OPTIONS = frozenset({"security_protocol", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password",
                              "ssl_check_hostname", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"})
#: The benchmark's request size limit: requests may carry one full batch per partition, in every client.
BENCH_MAX_REQUEST_SIZE = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 1800.0


class ComparisonError(Exception):
    """A run that gave no trustworthy number: the child failed, or the topic holds the wrong number of records."""


class CountMismatch(ComparisonError):
    """The topic holds another number of records than were sent: the comparison stops."""


# ------------------------------------------------------------------------------------------------ arguments


def int_arg(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``; underscores allowed (``1_000_000``)."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = int_arg(1)
non_negative_int = int_arg(0)


# ------------------------------------------------------------------------------------------------ the workload


@dataclass
class Workload:
    """What every client is given: the records and the producer settings, in neutral names.

    The defaults are the benchmark's (bench/compare.py); ``kafkaprod-perf --compare`` fills in what kafkaprod
    resolves from its flags (:func:`client_settings`).
    """

    num_records: int = 1_000_000
    record_size: int = 100
    key_size: int = 0
    key_count: int = DEFAULT_KEY_COUNT
    compression: str = "none"
    partitions: int = 6  # per topic
    topics: int = 1  # topics per run, each with ``partitions``; record i goes to topic i % topics
    acks: str = "1"  # "all", "1" or "0"
    idempotence: bool = False
    linger_ms: int = 5
    batch_size: int = 1_000_000
    max_request_size: int = BENCH_MAX_REQUEST_SIZE
    chunk: int = DEFAULT_CHUNK  # records per call of the bulk clients
    delivery: str = "none"  # one of DELIVERY_MODES
    event_loop: str = "asyncio"  # the asyncio clients' loop: one of EVENT_LOOPS
    client_records: dict[str, int] = field(default_factory=dict)  # records per run for some clients
    # Security options in kafkaprod's (= kafka-python's) names, e.g. {"security_protocol": "SSL", "ssl_cafile":
    # path}; each client gets them in its own spelling, and so do the admin client and the record count.
    security: dict[str, Any] = field(default_factory=dict)

    def records_for(self, label: str, client: str | None = None) -> int:
        """Records per run for a row: its own count, else its client's (``kafkaprod`` for
        ``kafkaprod@baseline``), else ``num_records``."""
        return self.client_records.get(label, self.client_records.get(client or label, self.num_records))

    def describe(self) -> str:
        keys = f"{self.key_size}-byte keys ({self.key_count:,} distinct, cycled)" if self.key_size else "no keys"
        where = f"{self.topics} topics x {self.partitions} partitions" if self.topics > 1 else \
            f"{self.partitions} partitions"
        return (f"{self.record_size}-byte values, {keys}, {where}, acks={self.acks}, "
                f"idempotence {'on' if self.idempotence else 'off'}, linger {self.linger_ms} ms, "
                f"batch size {self.batch_size:,} B, compression {self.compression}, "
                f"max request size {self.max_request_size:,} B, delivery {self.delivery}"
                + (f", event loop {self.event_loop}" if self.event_loop != "asyncio" else "")
                + (f", security {self.security.get('security_protocol', 'PLAINTEXT')}" if self.security else ""))

    def spec(self, client: str, topic: str, bootstrap_servers: str, num_records: int,
             topics: Sequence[str] = ()) -> dict[str, Any]:
        """The child's instructions for one run (JSON); ``topics`` (several) only for a run over several topics,
        ``topic`` then being the first of them."""
        return {**({"topics": list(topics)} if len(topics) > 1 else {}),
            "client": client, "topic": topic, "bootstrap_servers": bootstrap_servers, "num_records": num_records,
            "record_size": self.record_size, "key_size": self.key_size, "key_count": self.key_count,
            "compression": self.compression, "partitions": self.partitions, "acks": self.acks,
            "idempotence": self.idempotence, "linger_ms": self.linger_ms, "batch_size": self.batch_size,
            "max_request_size": self.max_request_size, "chunk": self.chunk, "delivery": self.delivery,
            "event_loop": self.event_loop, "security": self.security,
        }


def client_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The settings every client gets: what kafkaprod resolves from producer options, in neutral names."""
    from kafkaprod.config import resolve

    config = resolve({k: v for k, v in options.items() if k != "bootstrap_servers"})
    return {
        "acks": "all" if config.acks == -1 else int(config.acks),
        "idempotence": bool(config.enable_idempotence),
        "linger_ms": config.linger_ms,
        "batch_size": config.batch_size,
        "compression": config.compression_type,
        "max_request_size": config.max_request_size,
    }


# ------------------------------------------------------------------------------------------------ who runs


@dataclass(frozen=True)
class Contender:
    """One row of the table: a client run by an interpreter with a child command.

    ``client`` is what the child runs (one of :data:`CLIENTS`, or what ``command`` understands); ``label`` names
    the row. ``command`` is the child's script and leading arguments; it is called as
    ``python *command SPEC_JSON RESULT_PATH``.
    """

    label: str
    client: str
    python: str = sys.executable
    command: tuple[str, ...] = (str(RUNNER),)
    baseline: bool = False  # runs the kafkaprod ``python`` has installed, not the one this process imported


def _package_root() -> str:
    """The directory holding the kafkaprod package this process imported (site-packages, or a source tree with an
    in-place or editable build)."""
    import kafkaprod

    return str(Path(kafkaprod.__file__).resolve().parent.parent)


def child_env(contender: Contender) -> dict[str, str]:
    """The child's environment: this process's, with the kafkaprod it imported first on the import path; for a
    baseline, without any PYTHONPATH, so that its interpreter imports its own installed kafkaprod."""
    env = dict(os.environ)
    if contender.baseline:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    return env


def python_arg(text: str) -> str:
    """An argparse type: an interpreter, by path or by name on PATH (not resolved: a virtual environment's python
    is a link whose own location selects the environment)."""
    path = text if os.sep in text else (shutil.which(text) or text)
    path = os.path.abspath(os.path.expanduser(path))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} is not an executable interpreter")
    return path


def installed_clients(clients: Sequence[str] = PER_RECORD_CLIENTS) -> tuple[list[str], dict[str, str]]:
    """(clients whose package this interpreter finds, {client: why skipped}); nothing is imported here."""
    found, skipped = [], {}
    for client in clients:
        if importlib.util.find_spec(MODULES[client]) is None:
            skipped[client] = f"package {MODULES[client]!r} is not installed"
        else:
            found.append(client)
    return found, skipped


def probe(contender: Contender, timeout: float = 120.0) -> dict[str, str]:
    """Import the contender's client in a child as the run will: its version info, or ComparisonError saying why
    it cannot run."""
    try:
        proc = subprocess.run([contender.python, str(RUNNER), "--probe", contender.client], capture_output=True,
                              text=True, env=child_env(contender), cwd=tempfile.gettempdir(), timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ComparisonError(f"probe failed: {exc}") from None
    lines = proc.stdout.strip().splitlines()
    try:
        info = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-500:]}
    except json.JSONDecodeError:
        info = {"error": proc.stdout.strip()[-500:]}
    if proc.returncode != 0:
        why = str(info.get("error") or f"probe exited {proc.returncode}").strip()
        raise ComparisonError(why if len(why) <= 240 else why[:240] + "...")
    return info


@dataclass
class Lineup:
    """The contenders that can run, what each one imports, why the others were skipped, and notes."""

    contenders: list[Contender]
    info: dict[str, dict[str, str]]
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def builds(self) -> list[str]:
        """Which kafkaprod each kafkaprod row runs, when a baseline takes part (their versions may be equal)."""
        if not any(contender.baseline for contender in self.contenders):
            return []
        return [f"{label}: kafkaprod {info.get('version', '?')} from {info.get('path', '?')} "
                f"(python {info.get('python', '?')})"
                for label, info in self.info.items() if label.split("@")[0] in KAFKAPROD_CLIENTS]


def line_up(clients: Sequence[str], baseline_python: str | None = None) -> Lineup:
    """The selected clients that import here, probed in a child each (in the order given); with
    ``baseline_python`` every kafkaprod client once more under that interpreter, right after its own."""
    found, skipped = installed_clients(clients)
    lineup = Lineup([], {}, skipped)

    def enter(contender: Contender) -> None:
        try:
            lineup.info[contender.label] = probe(contender)
        except ComparisonError as exc:
            skipped[contender.label] = str(exc)
        else:
            lineup.contenders.append(contender)

    for client in clients:
        if client in found:
            enter(Contender(client, client))
        if baseline_python is not None and client in KAFKAPROD_CLIENTS:
            enter(Contender(client + BASELINE_SUFFIX, client, python=baseline_python, baseline=True))
    for client in KAFKAPROD_CLIENTS:
        ours, theirs = lineup.info.get(client), lineup.info.get(client + BASELINE_SUFFIX)
        if ours and theirs and ours.get("path") == theirs.get("path"):
            lineup.notes.append(f"{client}{BASELINE_SUFFIX} imports the same kafkaprod as {client} "
                                f"({ours.get('path')}): the two rows measure one build twice")
    return lineup


# ------------------------------------------------------------------------------------------------ one run


def run_child(spec: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S, *,
              contender: Contender | None = None) -> dict[str, Any]:
    """One run in a fresh interpreter; its result dict, or ComparisonError with the child's last words."""
    contender = contender or Contender(spec["client"], spec["client"])
    with tempfile.TemporaryDirectory(prefix="kafkaprod-compare-") as tmp:
        result_path = Path(tmp) / "result.json"
        try:
            # The child starts in an empty directory, so that nothing in the caller's working directory (a source
            # checkout without a build, say) can stand in for the kafkaprod it should import.
            proc = subprocess.run([contender.python, *contender.command, json.dumps(spec), str(result_path)],
                                  capture_output=True, text=True, env=child_env(contender), cwd=tmp,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ComparisonError(f"{contender.label}: no result within {timeout:.0f} s (child killed)") from None
        if proc.returncode != 0 or not result_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise ComparisonError(f"{contender.label}: child exited {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result


def topic_name(prefix: str, label: str, round_no: int) -> str:
    # Topic names take [a-zA-Z0-9._-] only.
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in label)
    return f"{prefix}-{safe}-r{round_no}-{uuid.uuid4().hex[:10]}"


def run_once(contender: Contender, workload: Workload, bootstrap_servers: str, round_no: int, *,
             broker_pid: int | None = None, timeout: float = DEFAULT_TIMEOUT_S, topic_prefix: str = "compare",
             extra_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """One contender, one fresh process, one fresh topic: the child's measurements plus the verified record count.

    Raises ComparisonError when the child fails, and CountMismatch when the topic holds anything but the records
    sent plus the warm-up.
    """
    from kafkaprod.tools.broker import count_records_in, create_topics, delete_topics, librdkafka_security

    num_records = workload.records_for(contender.label, contender.client)
    topic = topic_name(topic_prefix, contender.label, round_no)
    topics = [topic] if workload.topics == 1 else [f"{topic}-t{i}" for i in range(workload.topics)]
    spec = workload.spec(contender.client, topics[0], bootstrap_servers, num_records, topics)
    spec.update(broker_pid=broker_pid, client_id=f"{topic_prefix}-{contender.client}", **(extra_spec or {}))
    admin_config = librdkafka_security(workload.security)
    create_topics(bootstrap_servers, dict.fromkeys(topics, workload.partitions), config=admin_config)
    try:
        started = time.perf_counter()
        result = run_child(spec, timeout, contender=contender)
        wall = time.perf_counter() - started
        stored = count_records_in(bootstrap_servers, topics, config=admin_config)
    finally:
        try:
            delete_topics(bootstrap_servers, topics, config=admin_config)
        except Exception as exc:  # a leftover topic costs broker memory, not correctness
            print(f"warning: could not delete topic(s) {', '.join(topics)}: {exc}", file=sys.stderr)
    # Record i went to topic i % len(topics), plus one warm-up record per topic.
    expected = {name: num_records // len(topics) + (i < num_records % len(topics)) + 1
                for i, name in enumerate(topics)}
    wrong = {name: stored[name] for name in topics if stored[name] != expected[name]}
    if wrong:
        name = next(iter(wrong))
        raise CountMismatch(f"{contender.label} round {round_no}: topic {name} holds {stored[name]:,} records, "
                            f"expected {expected[name]:,} (its share of {num_records:,} + 1 warm-up); lost or "
                            f"duplicated records" + (f" ({len(wrong)} of {len(topics)} topics wrong)"
                                                     if len(topics) > 1 else ""))
    result.update(client=contender.label, round=round_no, records_verified=sum(stored.values()), child_wall_s=wall,
                  baseline=contender.baseline)
    return result


# ------------------------------------------------------------------------------------------------ the rounds


@dataclass
class Results:
    """Every run in order, the contenders that failed (label -> why) and the error that stopped the rounds."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def progress_line(run: dict[str, Any]) -> str:
    return (f"round {run['round']} {run['client']:>16}: {run['records']:,} records, {run['records_per_s']:,.0f} "
            f"records/s, {run['mb_per_s']:.1f} MB/s, CPU {run['cpu_s']:.2f} s, {run['elapsed_s']:.2f} s")


def run_rounds(contenders: Sequence[Contender], workload: Workload, bootstrap_servers: str, rounds: int, *,
               broker_pid: int | None = None, timeout: float = DEFAULT_TIMEOUT_S, topic_prefix: str = "compare",
               progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
               extra_spec: dict[str, Any] | None = None) -> Results:
    """Every contender ``rounds`` times, alternating; a failed child drops its contender, a count mismatch stops."""
    results = Results()
    for round_no in range(1, rounds + 1):
        for contender in [c for c in contenders if c.label not in results.failed]:
            try:
                run = run_once(contender, workload, bootstrap_servers, round_no, broker_pid=broker_pid,
                               timeout=timeout, topic_prefix=topic_prefix, extra_spec=extra_spec)
            except CountMismatch as exc:
                results.error = str(exc)
                return results
            except ComparisonError as exc:
                # One client that cannot run with these settings on this broker (a peer's protocol gap, say)
                # says nothing about the others: note it, drop it from later rounds, go on.
                results.failed[contender.label] = _last_line(str(exc))
                progress(f"round {round_no} {contender.label:>16}: FAILED: {exc}")
                continue
            results.runs.append(run)
            progress(progress_line(run))
    return results


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # A Python traceback ends with the exception; "Unclosed ..." warnings printed at exit come after it.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return (lines[-1] if lines else text)[:300]


# ------------------------------------------------------------------------------------------------ the table


def summarize(runs: Sequence[dict[str, Any]], clients: Sequence[str] | None = None,
              ratio_base: str = "kafkaprod", extra_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Medians per client (in ``clients`` order, else first-run order) and ratio_base ÷ client ratios when the
    ratio base ran; ``extra_keys`` are run fields to take medians of too (None where no run has one)."""
    order = list(clients) if clients is not None else list(dict.fromkeys(run["client"] for run in runs))
    rows = []
    for client in order:
        mine = [run for run in runs if run["client"] == client]
        if not mine:
            continue
        version = str(mine[0].get("version", "?"))
        if mine[0].get("librdkafka"):
            version += f" (librdkafka {mine[0]['librdkafka']})"
        row: dict[str, Any] = {"client": client, "version": version, "runs": len(mine),
                               "records": sorted({run["records"] for run in mine if "records" in run})}
        for key in ("records_per_s", "mb_per_s", "cpu_s", "cpu_us_per_record", "peak_rss_mb", "broker_cpu_s",
                    *extra_keys):
            values = [run[key] for run in mine if run.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    base = next((row for row in rows if row["client"] == ratio_base), None)
    for row in rows:
        row["ratio_records_per_s"] = base["records_per_s"] / row["records_per_s"] if base else None
        row["ratio_cpu_per_record"] = base["cpu_us_per_record"] / row["cpu_us_per_record"] if base else None
    return rows


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]], ratio_base: str = "kafkaprod") -> str:
    """The ratio table as markdown: one row per client, ratios of ``ratio_base`` over it."""
    lines = [f"| client | version | runs | records/s | MB/s | CPU s | CPU µs/record | peak RSS MB "
             f"| records/s {ratio_base} ÷ client (>1: {ratio_base} faster) "
             f"| CPU/record {ratio_base} ÷ client (<1: {ratio_base} cheaper) |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        lines.append(f"| {row['client']} | {row['version']} | {row['runs']} | {fmt(row['records_per_s'])} "
                     f"| {fmt(row['mb_per_s'], 1)} | {fmt(row['cpu_s'], 2)} | {fmt(row['cpu_us_per_record'], 2)} "
                     f"| {fmt(row['peak_rss_mb'])} | {fmt(row['ratio_records_per_s'], 2)} "
                     f"| {fmt(row['ratio_cpu_per_record'], 2)} |")
    return "\n".join(lines)
