"""What a producer's memory is made of as partitions grow: RSS and tracemalloc before the producer, after its
metadata for the topic, and after keyed records, against a local noida-db.

    python bench/bench_memory.py [--partitions 10000] [--records 500000]

Keys are 9 bytes (100,000 distinct), values 100 bytes, the Java defaults otherwise. Prints VmRSS at each step, the
peak (ru_maxrss) and the largest tracemalloc totals per source file.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    sys.path.insert(0, str(ROOT))

from kafkaprod import KafkaProducer  # noqa: E402
from kafkaprod.tools.broker import NoidaBroker  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def top_files(snapshot: tracemalloc.Snapshot, n: int = 5) -> str:
    stats = snapshot.statistics("filename")
    total = sum(s.size for s in stats)
    parts = []
    for stat in stats[:n]:
        name = stat.traceback[0].filename
        shown = os.path.relpath(name, ROOT) if str(ROOT) in name else os.path.basename(name)
        parts.append(f"{shown} {stat.size / 1e6:.2f} MB")
    return f"{total / 1e6:.1f} MB ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=500_000)
    args = parser.parse_args(argv)
    with NoidaBroker() as broker:
        broker.create_topics({"memory": args.partitions})
        gc.collect()
        before = rss_mb()
        tracemalloc.start(1)
        producer = KafkaProducer(broker.bootstrap_servers)
        producer.partitions_for("memory")
        gc.collect()
        with_metadata, metadata_snapshot = rss_mb(), tracemalloc.take_snapshot()
        keys = [b"k%08d" % i for i in range(100_000)]
        value = b"v" * 100
        for i in range(args.records):
            producer.send("memory", value, key=keys[i % 100_000])
        producer.flush()
        gc.collect()
        after, sent_snapshot = rss_mb(), tracemalloc.take_snapshot()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        producer.close()
    print(f"{args.partitions:,} partitions, {args.records:,} keyed records: RSS {before:.1f} MB before the producer, "
          f"+{with_metadata - before:.1f} MB after its metadata, +{after - with_metadata:.1f} MB after the records; "
          f"peak {peak:.1f} MB (tracemalloc itself included)")
    print(f"tracemalloc after the metadata: {top_files(metadata_snapshot)}")
    print(f"tracemalloc after the records:  {top_files(sent_snapshot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
