"""``kafkaprod-perf --compare``: the same records with kafkaprod and every installed peer, as a ratio table.

The peers are confluent-kafka (``Producer.produce``), aiokafka and kafka-python; one that is not installed is
skipped with a note. How it measures (bench/compare.py in the source tree does the same with more detail):

- Every run is a fresh child process (``python -m kafkaprod.perf_compare SPEC_JSON``) so no client inherits
  another's threads, memory or C libraries, and CPU time and peak RSS are that client's alone. The child imports
  the kafkaprod the parent imported.
- Every run writes to a fresh topic (``--partitions`` partitions), created before and deleted after it; with
  ``--rounds`` above 1 the clients take turns (A B C D, A B C D, ...) and the table shows medians.
- Each client gets the settings kafkaprod resolves from the flags (acks, idempotence, linger, batch size,
  compression, max request size) and sends one warm-up record first; the window is first send to the end of
  the final flush; CPU is user+sys of the whole child (all threads) over the window. The send loop drops the
  returned futures: no per-record callback for any client.
- After every run the records in the topic are counted on the broker; anything but the records sent plus the
  warm-up stops the comparison, since a number for lost records measures nothing.

Topic creation, deletion and counting use confluent-kafka's admin client and consumer, so it must be installed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CLIENTS = ("kafkaprod", "confluent", "aiokafka", "kafka-python")
_MODULES = {"kafkaprod": "kafkaprod", "confluent": "confluent_kafka", "aiokafka": "aiokafka", "kafka-python": "kafka"}
#: -X options that every client can be given the same way; any other -X would only change kafkaprod.
SHARED_OPTIONS = frozenset({"enable_idempotence", "max_request_size"})
_WARMUP_TIMEOUT_S = 60.0
_MIB = float(1 << 20)


class ComparisonError(Exception):
    """A run that gave no trustworthy number: the child failed, or the topic holds the wrong number of records."""


# ------------------------------------------------------------------------------------------------ parent side


def installed_clients() -> tuple[list[str], dict[str, str]]:
    """(clients whose package is installed, {client: why skipped}); nothing is imported here."""
    found, skipped = [], {}
    for client in CLIENTS:
        if importlib.util.find_spec(_MODULES[client]) is None:
            skipped[client] = f"package {_MODULES[client]!r} is not installed"
        else:
            found.append(client)
    return found, skipped


def client_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The settings every client gets: what kafkaprod resolves from the perf flags, in neutral names."""
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


def _package_root() -> str:
    """The directory holding the kafkaprod package this process imported (site-packages, or a source tree with an
    in-place build)."""
    import kafkaprod

    return str(Path(kafkaprod.__file__).resolve().parent.parent)


def run_child(spec: dict[str, Any], timeout: float = 3600.0) -> dict[str, Any]:
    """One client's run in a fresh interpreter; its result dict, or ComparisonError with the child's last words."""
    try:
        # Started in the package's own root: `python -m` puts the working directory first on sys.path, and run
        # from a source checkout without an in-place build that would import its uncompiled kafkaprod.
        proc = subprocess.run([sys.executable, "-m", "kafkaprod.perf_compare", json.dumps(spec)],
                              capture_output=True, text=True, cwd=_package_root(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ComparisonError(f"{spec['client']}: no result within {timeout:.0f} s (child killed)") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise ComparisonError(f"{spec['client']}: child exited {proc.returncode}:\n{tail}")
    return json.loads(lines[-1])


def compare(args: Any, bootstrap_servers: str, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run every installed client ``args.rounds`` times, alternating; returns rows, runs, skipped and error."""
    from kafkaprod.tools.broker import count_records, create_topics, delete_topics
    from kafkaprod.perf import producer_options

    clients, skipped = installed_clients()
    if "confluent" not in clients:
        raise ComparisonError("--compare needs confluent-kafka (topics are created, deleted and counted with it); "
                              "pip install confluent-kafka")
    settings = client_settings(producer_options(args, bootstrap_servers))
    base = {"bootstrap_servers": bootstrap_servers, "settings": settings, "perf_args": dataclasses.asdict(args)}
    runs: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    error = None
    try:
        for round_no in range(1, args.rounds + 1):
            for client in [c for c in clients if c not in failed]:
                topic = f"{args.topic}-{client}-r{round_no}-{uuid.uuid4().hex[:8]}"
                create_topics(bootstrap_servers, {topic: args.partitions})
                try:
                    result = run_child({**base, "client": client, "topic": topic})
                    stored = count_records(bootstrap_servers, topic)
                except ComparisonError as exc:
                    # One client that cannot run with these settings on this broker (a peer's protocol gap, say)
                    # says nothing about the others: note it, drop it from later rounds, go on.
                    failed[client] = _last_line(str(exc))
                    progress(f"round {round_no} {client:>12}: FAILED: {exc}")
                    continue
                finally:
                    delete_topics(bootstrap_servers, [topic])
                expected = args.num_records + 1  # the warm-up record
                if stored != expected:
                    raise ComparisonError(f"{client} round {round_no}: topic {topic} holds {stored:,} records, "
                                          f"expected {expected:,}; lost or duplicated records")
                result.update(client=client, round=round_no)
                runs.append(result)
                progress(f"round {round_no} {client:>12}: {result['records_per_s']:,.0f} records/s, "
                         f"{result['mb_per_s']:.1f} MB/s, CPU {result['cpu_s']:.2f} s")
    except ComparisonError as exc:
        error = str(exc)
    return {"settings": settings, "skipped": skipped, "failed": failed, "rows": summarize(runs), "runs": runs,
            "error": error}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # A Python traceback ends with the exception; "Unclosed ..." warnings printed at exit come after it.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return (lines[-1] if lines else text)[:300]


def summarize(runs: Sequence[dict[str, Any]], baseline: str = "kafkaprod") -> list[dict[str, Any]]:
    """Medians per client (in first-run order) and baseline ÷ client ratios when the baseline ran."""
    rows = []
    for client in dict.fromkeys(run["client"] for run in runs):
        mine = [run for run in runs if run["client"] == client]
        row: dict[str, Any] = {"client": client, "version": mine[0].get("version", "?"), "runs": len(mine)}
        for key in ("records_per_s", "mb_per_s", "cpu_s", "cpu_us_per_record", "peak_rss_mb"):
            row[key] = statistics.median(run[key] for run in mine)
        rows.append(row)
    base = next((row for row in rows if row["client"] == baseline), None)
    for row in rows:
        row["ratio_records_per_s"] = base["records_per_s"] / row["records_per_s"] if base else None
        row["ratio_cpu_per_record"] = base["cpu_us_per_record"] / row["cpu_us_per_record"] if base else None
    return rows


def describe_settings(settings: dict[str, Any]) -> str:
    return (f"acks={settings['acks']}, idempotence {'on' if settings['idempotence'] else 'off'}, "
            f"linger {settings['linger_ms']} ms, batch size {settings['batch_size']:,} B, "
            f"compression {settings['compression']}, max request size {settings['max_request_size']:,} B")


def format_table(rows: Sequence[dict[str, Any]], baseline: str = "kafkaprod") -> str:
    """The ratio table as markdown: one row per client, ratios of ``baseline`` over it."""
    def fmt(value: float | None, digits: int = 0) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    lines = [f"| client | version | runs | records/s | MB/s | CPU s | CPU µs/record | peak RSS MB "
             f"| records/s {baseline} ÷ client (>1: {baseline} faster) "
             f"| CPU/record {baseline} ÷ client (<1: {baseline} cheaper) |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        lines.append(f"| {row['client']} | {row['version']} | {row['runs']} | {fmt(row['records_per_s'])} "
                     f"| {fmt(row['mb_per_s'], 1)} | {fmt(row['cpu_s'], 2)} | {fmt(row['cpu_us_per_record'], 2)} "
                     f"| {fmt(row['peak_rss_mb'])} | {fmt(row['ratio_records_per_s'], 2)} "
                     f"| {fmt(row['ratio_cpu_per_record'], 2)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ child side


class _Window:
    """CPU and wall time of this process from the first send to the end of the final flush."""

    def start(self) -> None:
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.t1 = time.perf_counter()
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)

    def result(self, records: int, total_bytes: int) -> dict[str, Any]:
        elapsed = self.t1 - self.t0
        cpu = (self.ru1.ru_utime - self.ru0.ru_utime) + (self.ru1.ru_stime - self.ru0.ru_stime)
        return {"records": records, "elapsed_s": elapsed, "records_per_s": records / elapsed,
                "mb_per_s": total_bytes / _MIB / elapsed, "cpu_s": cpu, "cpu_us_per_record": cpu / records * 1e6,
                # ru_maxrss is the lifetime peak in KiB on Linux, imports and setup included.
                "peak_rss_mb": self.ru1.ru_maxrss / 1024}


def _records(spec: dict[str, Any]) -> Any:
    from kafkaprod.perf import PerfArgs, Records

    return Records.from_args(PerfArgs(**spec["perf_args"]))


def _send_all(send: Callable[..., Any], topic: str, records: Any, n: int) -> None:
    if records.constant:
        value = records.values[0]
        for _ in itertools.repeat(None, n):
            send(topic, value)
    else:
        for value, key in records.stream(n):
            send(topic, value, key)


def _run_kafkaprod(spec: dict[str, Any], records: Any, window: _Window) -> str:
    import kafkaprod
    from kafkaprod import KafkaProducer
    from kafkaprod.perf import PerfArgs, producer_options

    options = producer_options(PerfArgs(**spec["perf_args"]), spec["bootstrap_servers"])
    options["client_id"] = "kafkaprod-perf-compare"
    producer = KafkaProducer(**options)
    topic, n = spec["topic"], spec["perf_args"]["num_records"]
    first_value, first_key = next(iter(records.stream(1)))
    producer.send(topic, first_value, first_key).get(timeout=_WARMUP_TIMEOUT_S)
    window.start()
    _send_all(producer.send, topic, records, n)
    producer.flush()
    window.stop()
    producer.close()
    return kafkaprod.__version__


def _run_confluent(spec: dict[str, Any], records: Any, window: _Window) -> str:
    import confluent_kafka

    s = spec["settings"]
    errors: list[str] = []
    producer = confluent_kafka.Producer({
        "bootstrap.servers": spec["bootstrap_servers"], "acks": s["acks"], "enable.idempotence": s["idempotence"],
        "linger.ms": s["linger_ms"], "batch.size": s["batch_size"], "compression.type": s["compression"],
        "message.max.bytes": s["max_request_size"], "client.id": "confluent-perf-compare",
        "error_cb": lambda err: errors.append(str(err)),
    })
    topic, n = spec["topic"], spec["perf_args"]["num_records"]
    warm: list[Any] = []
    first_value, first_key = next(iter(records.stream(1)))
    producer.produce(topic, first_value, first_key, on_delivery=lambda err, msg: warm.append(err))
    if producer.flush(_WARMUP_TIMEOUT_S) or warm != [None]:
        raise RuntimeError(f"confluent warm-up record not delivered: {warm} {errors}")
    produce, poll = producer.produce, producer.poll

    def send(topic: str, value: bytes, key: bytes | None = None) -> None:
        # produce() raises BufferError when librdkafka's queue is full; serving delivery reports makes room.
        while True:
            try:
                produce(topic, value, key)
                return
            except BufferError:
                poll(0.0005)

    window.start()
    _send_all(send, topic, records, n)
    left = producer.flush(600)
    window.stop()
    if left:
        raise RuntimeError(f"confluent: {left} records undelivered after flush(600); errors: {errors[:5]}")
    return f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def _run_kafka_python(spec: dict[str, Any], records: Any, window: _Window) -> str:
    import kafka

    s = spec["settings"]
    producer = kafka.KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"], acks=s["acks"], enable_idempotence=s["idempotence"],
        linger_ms=s["linger_ms"], batch_size=s["batch_size"], max_request_size=s["max_request_size"],
        compression_type=None if s["compression"] == "none" else s["compression"],
        client_id="kafka-python-perf-compare")
    topic, n = spec["topic"], spec["perf_args"]["num_records"]
    first_value, first_key = next(iter(records.stream(1)))
    producer.send(topic, first_value, first_key).get(timeout=_WARMUP_TIMEOUT_S)
    window.start()
    _send_all(producer.send, topic, records, n)
    producer.flush()
    window.stop()
    producer.close()
    return kafka.__version__


def _run_aiokafka(spec: dict[str, Any], records: Any, window: _Window) -> str:
    import aiokafka

    s = spec["settings"]

    async def main() -> None:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=spec["bootstrap_servers"], acks=s["acks"], enable_idempotence=s["idempotence"],
            linger_ms=s["linger_ms"], max_batch_size=s["batch_size"], max_request_size=s["max_request_size"],
            compression_type=None if s["compression"] == "none" else s["compression"],
            client_id="aiokafka-perf-compare")
        await producer.start()
        try:
            topic, n = spec["topic"], spec["perf_args"]["num_records"]
            first_value, first_key = next(iter(records.stream(1)))
            await asyncio.wait_for(await producer.send(topic, first_value, first_key), _WARMUP_TIMEOUT_S)
            send = producer.send
            window.start()
            # send() returns once the record is in a batch (waiting for room when the queue is full).
            if records.constant:
                value = records.values[0]
                for _ in itertools.repeat(None, n):
                    await send(topic, value)
            else:
                for value, key in records.stream(n):
                    await send(topic, value, key)
            await producer.flush()
            window.stop()
        finally:
            await producer.stop()

    asyncio.run(main())
    return aiokafka.__version__


_RUNNERS: dict[str, Callable[[dict[str, Any], Any, _Window], str]] = {
    "kafkaprod": _run_kafkaprod,
    "confluent": _run_confluent,
    "aiokafka": _run_aiokafka,
    "kafka-python": _run_kafka_python,
}


def run_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The child's whole job: build the records, run the client, measure the window."""
    records = _records(spec)
    window = _Window()
    version = _RUNNERS[spec["client"]](spec, records, window)
    n = spec["perf_args"]["num_records"]
    result = window.result(n, records.total_bytes(n))
    result["version"] = version
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        print("usage: python -m kafkaprod.perf_compare SPEC_JSON (started by kafkaprod-perf --compare)",
              file=sys.stderr)
        return 2
    print(json.dumps(run_in_child(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
