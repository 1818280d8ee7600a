"""bench/ceiling.py and compare.py --ceiling: options, the shape of the replayed requests, the table's column.

No broker and no timing here: the replay itself is measured by running bench/ceiling.py.
"""
from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

import pytest

# bench/ is a folder of the repository, not part of the installed package. The suite runs without the
# repository root on sys.path (so that `kafkaprod` is the installed build); the root goes at the end, where it
# can only supply `bench`, never shadow the installed kafkaprod.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from bench import ceiling, compare  # noqa: E402

# RecordBatch v2: baseSequence sits at byte 53 and recordCount at byte 57 of the 61-byte header.
_BASE_SEQUENCE = struct.Struct(">i")


def _base_sequence(batch: bytes) -> int:
    return _BASE_SEQUENCE.unpack_from(batch, 53)[0]


def _record_count(batch: bytes) -> int:
    return _BASE_SEQUENCE.unpack_from(batch, 57)[0]


def test_defaults_replay_compares_default_workload_in_1mb_batches():
    args, workloads = ceiling.parse_args([])
    assert [w.batch_size for w in workloads] == [1_000_000]
    (w,) = workloads
    assert (w.num_records, w.record_size, w.key_size, w.partitions, w.acks, w.compression) == \
        (1_000_000, 100, 0, 6, "1", "none")
    assert args.max_in_flight == 5
    assert args.rounds == 3


def test_each_distinct_batch_size_is_one_data_point():
    _, workloads = ceiling.parse_args(["--batch-size", "1000000", "--batch-size", "16384", "--batch-size", "16384"])
    assert [w.batch_size for w in workloads] == [1_000_000, 16_384]


def test_ceiling_refuses_acks_0_which_has_no_answers_to_end_the_window(capsys):
    with pytest.raises(SystemExit):
        ceiling.parse_args(["--acks", "0"])
    assert "--acks" in capsys.readouterr().err
    with pytest.raises(ceiling.CeilingError, match="acks=0"):
        ceiling._acks("0")


def test_idempotent_replay_needs_acks_all(capsys):
    with pytest.raises(SystemExit):
        ceiling.parse_args(["--idempotence"])
    assert "--acks all" in capsys.readouterr().err


def test_keyless_requests_carry_one_full_batch_per_partition_like_the_sticky_partitioner():
    shape = ceiling.Shape(num_records=3000, record_size=100, key_size=0, key_count=1, partitions=6, batch_size=16384)
    requests = ceiling.plan_requests(shape, timestamp_ms=1_700_000_000_000)
    assert sum(n for request in requests for _, _, n in request) == 3000
    for request in requests:
        partitions = [p for p, _, _ in request]
        assert len(partitions) == len(set(partitions)) <= 6
    # 148 records of 100 bytes fill kafkaprod's 16 KB batch; all batches but the last are full.
    counts = [n for request in requests for _, _, n in request]
    assert counts[:-1] == [148] * (len(counts) - 1)
    assert all(len(batch) <= 16384 and _record_count(batch) == n for request in requests for _, batch, n in request)
    # Sticky order: batch i went to partition i % 6, so request r holds every partition's r-th batch.
    assert [p for p, _, _ in requests[0]] == [0, 1, 2, 3, 4, 5]


def test_keyed_records_are_replayed_on_their_murmur2_partitions():
    from kafkaprod._native.murmur2 import partition_for_key

    shape = ceiling.Shape(num_records=5000, record_size=50, key_size=16, key_count=300, partitions=4,
                          batch_size=16384)
    requests = ceiling.plan_requests(shape, timestamp_ms=1_700_000_000_000)
    got = Counter()
    for request in requests:
        for partition, _, n in request:
            got[partition] += n
    keys = ceiling.make_keys(16, 300)
    expected = Counter(partition_for_key(keys[i % 300], 4) for i in range(5000))
    assert got == expected


def test_idempotent_batches_continue_each_partitions_sequence_after_the_warm_up():
    shape = ceiling.Shape(num_records=1000, record_size=100, key_size=0, key_count=1, partitions=3, batch_size=16384)
    state = ceiling.ProducerState(producer_id=7, producer_epoch=0)
    requests = ceiling.plan_requests(shape, 1_700_000_000_000, state, {0: 1})
    next_seq = {0: 1, 1: 0, 2: 0}
    for request in requests:
        for partition, batch, n in request:
            assert _base_sequence(batch) == next_seq[partition]
            next_seq[partition] += n


def test_compare_ceiling_option_is_refused_with_acks_0(capsys):
    with pytest.raises(SystemExit):
        compare.parse_args(["--ceiling", "--acks", "0"])
    assert "--ceiling" in capsys.readouterr().err


def _row(client: str, records_per_s: float) -> dict:
    return {"client": client, "version": "1", "runs": 1, "records": [1000], "records_per_s": records_per_s,
            "mb_per_s": 1.0, "cpu_s": 1.0, "cpu_us_per_record": 1.0, "peak_rss_mb": 10.0, "broker_cpu_s": None,
            "ratio_records_per_s": 1.0, "ratio_cpu_per_record": 1.0}


def _meta() -> dict:
    return {"date": "2025-01-01 00:00 UTC", "broker": "Tansu", "command": "python bench/compare.py", "rounds": 1,
            "loadavg_at_end": [0.0, 0.0, 0.0],
            "machine": {"cpu_model": "cpu", "cores": 2, "usable_cores": 2, "memory_gib": 4.0, "kernel": "6",
                        "python": "3.11", "loadavg_at_start": [0.0, 0.0, 0.0]}}


def test_fraction_of_ceiling_is_client_records_per_s_over_the_replays():
    rows = [_row("kafkaprod", 300_000), _row("confluent", 150_000), _row(compare.CEILING, 600_000)]
    compare.add_ceiling_fraction(rows)
    assert [row["fraction_of_ceiling"] for row in rows] == [0.5, 0.25, 1.0]


def test_table_gets_a_fraction_of_ceiling_column_only_when_the_ceiling_ran():
    rows = [_row("kafkaprod", 300_000), _row(compare.CEILING, 600_000)]
    compare.add_ceiling_fraction(rows)
    table = compare.render_markdown(_meta(), compare.Workload(), rows, [], {}, "kafkaprod")
    header = next(line for line in table.splitlines() if line.startswith("| client |"))
    kafkaprod = next(line for line in table.splitlines() if line.startswith("| kafkaprod |"))
    assert header.endswith("fraction of ceiling |")
    assert kafkaprod.endswith("| 0.50 |")
    assert len(kafkaprod.split("|")) == len(header.split("|"))

    plain = [_row("kafkaprod", 300_000)]
    compare.add_ceiling_fraction(plain)
    assert plain[0]["fraction_of_ceiling"] is None
    assert "fraction of ceiling" not in compare.render_markdown(_meta(), compare.Workload(), plain, [], {},
                                                                "kafkaprod")


def test_ceiling_summary_takes_medians_per_batch_size():
    run = {"records_per_s": 0.0, "mb_per_s": 1.0, "cpu_s": 0.1, "cpu_us_per_record": 0.1, "broker_cpu_s": 1.0,
           "other_cpu_s": 0.0, "peak_rss_mb": 50.0, "requests": 19, "batches": 111, "records_per_batch_max": 9082,
           "produce_version": 11}
    runs = [dict(run, batch_size=size, records_per_s=rate)
            for size, rate in ((1_000_000, 3.0), (16384, 1.0), (1_000_000, 5.0), (16384, 2.0), (1_000_000, 4.0))]
    rows = ceiling.summarize(runs)
    assert [(r["batch_size"], r["runs"], r["records_per_s"]) for r in rows] == [(1_000_000, 3, 4.0), (16384, 2, 1.5)]
    table = ceiling.render_markdown(rows, 1_000_000, 5)
    assert "| 1,000,000 | 9,082 | 19 | 11 | 3 | 4 |" in table


def test_chart_from_needs_a_png_to_write(capsys):
    with pytest.raises(SystemExit):
        compare.parse_args(["--chart-from", "a.json"])
    assert "--chart" in capsys.readouterr().err


def test_chart_names_workloads_by_keys_codec_batch_and_acks():
    from bench import chart

    label = chart.workload_label({"record_size": 100, "key_size": 16, "compression": "lz4", "batch_size": 16384,
                                  "acks": "all"})
    assert label.splitlines() == ["100 B values, 16 B keys", "compression lz4", "batch 16,384 B, acks=all"]


def test_chart_title_names_date_machine_and_every_command():
    from bench import chart

    one, two = {"meta": _meta()}, {"meta": dict(_meta(), command="python bench/compare.py --workload keyed")}
    title = chart.chart_title([one, two]).splitlines()
    assert "2025-01-01 00:00 UTC" in title[1] and "cpu, 2 cores, 4.0 GiB" in title[1]
    assert title[2:] == ["$ python bench/compare.py", "$ python bench/compare.py --workload keyed"]


def test_chart_is_written_as_png_from_json_files(tmp_path):
    pytest.importorskip("matplotlib")  # the bench extra; the charts are drawn by bench tools only
    import json

    from bench import chart

    rows = [_row("kafkaprod", 300_000), _row(compare.CEILING, 600_000)]
    compare.add_ceiling_fraction(rows)
    files = []
    for name, batch in (("big", 1_000_000), ("small", 16384)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"meta": _meta(), "workload": {"batch_size": batch}, "summary": rows}))
        files.append(path)
    out = tmp_path / "chart.png"
    chart.draw_from_files(files, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    not_a_run = tmp_path / "other.json"
    not_a_run.write_text("{}")
    with pytest.raises(ValueError, match="summary"):
        chart.draw_from_files([not_a_run], out)
