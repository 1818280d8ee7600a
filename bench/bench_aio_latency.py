"""Latency of kafkaprod.aio at a paced rate, against the synchronous producer at the same rate, on a local Tansu.

    python bench/bench_aio_latency.py                  # 50,000 records/s for 5 s each, 3 alternating rounds

Each run is a fresh process sending 100-byte records at the given rate (sleeping whenever 1 ms or more ahead; the
coroutine also yields to its loop every 50 records when it is behind).
Every record's latency is measured, from just before send() to its completion as the caller sees it: the send()
callback for the synchronous producer (it runs on the I/O thread), the resolution of the awaitable on the event
loop for kafkaprod.aio. Linger 5 ms, acks=1 and idempotence off, as in bench/compare.py; p50/p99/p99.9 in ms,
medians over rounds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": ordered[-1] * 1000.0}


OPTIONS = {"acks": 1, "enable_idempotence": False, "linger_ms": 5}


def run_sync(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, float]:
    from kafkaprod import KafkaProducer

    value, n = b"x" * 100, int(rate * seconds)
    latencies: list[float] = []
    now = time.perf_counter
    with KafkaProducer(bootstrap, **OPTIONS) as producer:
        producer.send(topic, b"warm-up").get(60)
        start = now()
        for i in range(n):
            due = start + i / rate
            if due - now() > 0.001:  # the pacing of both producers: sleep once 1 ms or more ahead
                time.sleep(due - now())
            t0 = now()
            producer.send(topic, value, callback=lambda md, exc, t0=t0: latencies.append(now() - t0))
        producer.flush()
    assert len(latencies) == n
    return _percentiles(latencies)


def run_aio(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, float]:
    from kafkaprod.aio import AIOKafkaProducer

    async def main() -> dict[str, float]:
        value, n = b"x" * 100, int(rate * seconds)
        latencies: list[float] = []
        now = time.perf_counter
        async with AIOKafkaProducer(bootstrap, **OPTIONS) as producer:
            await producer.send_and_wait(topic, b"warm-up")
            start = now()
            futures = []
            for i in range(n):
                due = start + i / rate
                if due - now() > 0.001:
                    await asyncio.sleep(due - now())
                elif i % 50 == 0:
                    # Behind schedule: still give the loop a turn every 50 records (1 ms at 50,000/s), as a
                    # service's handlers do; a loop that never yields delays every callback, not the producer.
                    await asyncio.sleep(0)
                t0 = now()
                future = await producer.send(topic, value)
                future.add_done_callback(lambda f, t0=t0: latencies.append(now() - t0))
                futures.append(future)
            # As the synchronous run's flush(): the loop stays free to complete records while the flush is awaited.
            # Awaiting 250,000 records one after another first would keep it busy, and delay the last ones.
            await producer.flush()
            for future in futures:  # not gather(): wrapping each in a task would keep the loop from callbacks
                await future
            await asyncio.sleep(0)
        assert len(latencies) == n
        return _percentiles(latencies)

    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "BOOTSTRAP", "TOPIC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, bootstrap, topic = args.child
        fn = run_sync if kind == "sync" else run_aio
        print(json.dumps(fn(bootstrap, topic, args.rate, args.seconds)))
        return 0
    from kafkaprod.tools.broker import TansuBroker, create_topics, delete_topics

    results: dict[str, list[dict[str, float]]] = {"sync": [], "aio": []}
    with TansuBroker() as broker:
        for r in range(args.rounds):
            for kind in results:
                topic = f"latency-{kind}-{r}-{os.getpid()}"
                create_topics(broker.bootstrap_servers, {topic: 6})
                out = subprocess.run([sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                                      str(args.seconds), "--child", kind, broker.bootstrap_servers, topic],
                                     capture_output=True, text=True, cwd="/", check=True)
                results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
                delete_topics(broker.bootstrap_servers, [topic])
                print(f"round {r + 1} {kind:>4}: {results[kind][-1]}", file=sys.stderr)
    print(f"| producer ({args.rate:,} records/s) | p50 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|--:|--:|--:|--:|")
    for kind, runs in results.items():
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        name = "KafkaProducer, send() callback" if kind == "sync" else "kafkaprod.aio, awaitable resolved"
        print(f"| {name} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {med['p999_ms']:.2f} | {med['max_ms']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
