"""What one ProduceRequest costs the I/O thread to encode and its answer to decode, by version and shape.

    python bench/produce_codec_timeit.py                 # the table, best of 7 repeats per cell
    python bench/produce_codec_timeit.py --repeat 15 --json out.json

It times the public kafkaprod.protocol.encode_request / decode_response for PRODUCE, whatever codec they use, so
the same script measures any build; where framing has the schema codec on its own (schema_encode_request,
schema_decode_response), it times that too, in the same run, for a side-by-side that the rest of the machine
disturbs alike. Shapes: 1, 6, 100 and 1000 partitions, all in one topic and spread over
several (6 = 3 topics x 2, 100 = 10 x 10, 1000 = 100 x 10). Records are read-only memoryview slices of one
buffer, as the Sender hands them in; responses carry no errors and no tagged fields, the common answer.
Microseconds per call, the best repeat (the least disturbed by the rest of the machine).
"""
from __future__ import annotations

import argparse
import json
import timeit
from typing import Any

from kafkaprod.protocol import ApiKey, decode_response, encode_request, encode_response, framing

VERSIONS = (3, 7, 9, 11)
# (partitions, topics)
SHAPES = ((1, 1), (6, 1), (6, 3), (100, 1), (100, 10), (1000, 1), (1000, 100))

_BUFFER = bytes(16 * 1024 * 1024)


def _names(topics: int) -> list[str]:
    return [f"topic-{t:03d}" for t in range(topics)]


def request_body(partitions: int, topics: int) -> dict[str, Any]:
    per_topic = partitions // topics
    view = memoryview(_BUFFER).toreadonly()
    topic_data = []
    for t, name in enumerate(_names(topics)):
        parts = []
        for p in range(per_topic):
            start = (t * per_topic + p) * 1000
            parts.append({"index": p, "records": view[start:start + 900]})
        topic_data.append({"name": name, "partition_data": parts})
    return {"transactional_id": None, "acks": -1, "timeout_ms": 30000, "topic_data": topic_data}


def response_body(partitions: int, topics: int) -> dict[str, Any]:
    per_topic = partitions // topics
    return {"responses": [{"name": name, "partition_responses": [
        {"index": p, "error_code": 0, "base_offset": 1_000_000 + 17 * p, "log_append_time_ms": -1,
         "log_start_offset": 0} for p in range(per_topic)]} for name in _names(topics)],
        "throttle_time_ms": 0}


def _best_us(fn: Any, repeat: int) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, number // 2)  # autorange aims at 0.2 s a repeat; 0.1 s is enough here
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    schema_encode = getattr(framing, "schema_encode_request", None)
    schema_decode = getattr(framing, "schema_decode_response", None)
    reference = schema_encode is not None and schema_decode is not None
    rows = []
    if reference:
        print("| version | partitions | topics | encode µs | schema encode µs | decode µs | schema decode µs |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| version | partitions | topics | encode µs | decode µs |")
        print("|---:|---:|---:|---:|---:|")
    for version in VERSIONS:
        for partitions, topics in SHAPES:
            body = request_body(partitions, topics)
            frame = b"".join(encode_response(ApiKey.PRODUCE, version, 1, response_body(partitions, topics)))[4:]
            enc = _best_us(lambda: encode_request(ApiKey.PRODUCE, version, 1, "producer-1", body), args.repeat)
            dec = _best_us(lambda: decode_response(ApiKey.PRODUCE, version, frame, allow_trailing=True),
                           args.repeat)
            row = {"version": version, "partitions": partitions, "topics": topics, "encode_us": enc, "decode_us": dec}
            if reference:
                row["schema_encode_us"] = _best_us(
                    lambda: schema_encode(ApiKey.PRODUCE, version, 1, "producer-1", body), args.repeat)
                row["schema_decode_us"] = _best_us(
                    lambda: schema_decode(ApiKey.PRODUCE, version, frame, allow_trailing=True), args.repeat)
                print(f"| v{version} | {partitions} | {topics} | {enc:.2f} | {row['schema_encode_us']:.2f} | "
                      f"{dec:.2f} | {row['schema_decode_us']:.2f} |", flush=True)
            else:
                print(f"| v{version} | {partitions} | {topics} | {enc:.2f} | {dec:.2f} |", flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
