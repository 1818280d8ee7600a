"""bench/matrix.py: which rows a selection picks, how many records a row sends, how librdkafka's statistics and
kafkaprod's metrics become batching figures, and two real tiny runs on Tansu. No timed assertions.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# bench/ is a folder of the repository, not part of the installed package; the root goes at the end of sys.path,
# where it can only supply `bench`, never shadow the installed kafkaprod (as in test_ceiling_cli.py).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from bench import matrix, matrix_report  # noqa: E402
from kafkaprod.tools import runners_batching, runners_topics  # noqa: E402

# ------------------------------------------------------------------------------------------------ rows


def names(rows: list[matrix.Row]) -> list[str]:
    return [row.name for row in rows]


def test_every_shape_runs_in_both_settings_and_the_100_byte_size_row_is_p6():
    assert len(matrix.ROWS) == 2 * len(matrix.SHAPES) == 32
    assert len(set(names(matrix.ROWS))) == 32
    assert names(matrix.select_rows(None)) == names(matrix.ROWS)
    sizes = sorted({s.record_size for s in matrix.SHAPES if s.partitions == 6 and not s.keyed and s.topics == 1})
    assert sizes == [10, 100, 1024, 10 * 1024, 100 * 1024]


def test_a_name_without_a_setting_selects_both_settings_in_table_order():
    assert names(matrix.select_rows("p6")) == ["p6/java", "p6/throughput"]
    assert names(matrix.select_rows("p6-keyed/java,p1/throughput")) == ["p1/throughput", "p6-keyed/java"]


def test_globs_select_rows_and_overlaps_count_once():
    assert len(matrix.select_rows("*/java")) == 16
    assert names(matrix.select_rows("v*/throughput")) == ["v10/throughput", "v1k/throughput", "v10k/throughput",
                                                          "v100k/throughput"]
    assert names(matrix.select_rows("t100x10*,t100x10-keyed/java")) == [
        "t100x10/java", "t100x10/throughput", "t100x10-keyed/java", "t100x10-keyed/throughput"]
    assert names(matrix.select_rows("p1000,p1000-keyed")) == ["p1000/java", "p1000/throughput",
                                                              "p1000-keyed/java", "p1000-keyed/throughput"]
    assert len(matrix.select_rows("p1000*")) == 8  # a glob is a glob: p10000 too


def test_a_pattern_that_matches_nothing_is_refused(capsys):
    with pytest.raises(ValueError, match="p7"):
        matrix.select_rows("p6,p7")
    with pytest.raises(SystemExit):
        matrix.main(["--rows", "nothing*", "--list"])
    assert "nothing*" in capsys.readouterr().err


def test_settings_are_the_java_defaults_and_the_throughput_setting():
    java = matrix.workload(matrix.select_rows("p6-keyed/java")[0], 1000, "callback")
    assert (java.acks, java.idempotence, java.batch_size, java.linger_ms) == ("all", True, 16_384, 5)
    assert (java.key_size, java.key_count, java.partitions, java.topics) == (9, 100_000, 6, 1)
    fast = matrix.workload(matrix.select_rows("t100x10/throughput")[0], 1000, "none")
    assert (fast.acks, fast.idempotence, fast.batch_size, fast.linger_ms) == ("1", False, 1_000_000, 5)
    assert (fast.key_size, fast.partitions, fast.topics, fast.delivery) == (0, 10, 100, "none")
    # The harness's request limit lets a 100 KiB record through, in kafkaprod and as confluent's message.max.bytes.
    assert java.max_request_size >= 100 * 1024 + 1024


# ------------------------------------------------------------------------------------------------ records per run


def test_records_carry_about_50_mb_of_values_within_the_bounds():
    assert matrix.records_per_run(100) == 500_000
    assert matrix.records_per_run(1024) == 244_141  # 250 MB for records of 1 KiB and more
    assert matrix.records_per_run(10) == 1_000_000  # 5,000,000 capped
    assert matrix.records_per_run(100 * 1024) == 2_441
    assert matrix.records_per_run(1000) == 50_000  # just under 1 KiB: 50 MB


def test_scale_multiplies_the_bounded_count_and_num_records_overrides_everything():
    assert matrix.records_per_run(100, 0.2) == 100_000
    assert matrix.records_per_run(100 * 1024, 0.2) == 488
    assert matrix.records_per_run(10, 0.000_000_1) == 1
    assert matrix.records_per_run(100, 0.2, 777) == 777
    args = matrix.build_parser().parse_args(["--scale", "0.5", "--num-records", "1_000"])
    assert (args.scale, args.num_records, args.delivery, args.broker, args.rounds) == (0.5, 1000, "callback",
                                                                                        "tansu", 3)


def test_list_shows_every_selected_row_with_its_records(capsys):
    assert matrix.main(["--list", "--rows", "v*", "--scale", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "| v100k/java | 102,400 B values, no keys, 6 partitions, java | 488 |" in out
    assert "p6/java" not in out


def test_statistics_interval_grows_with_partitions():
    assert [matrix.stats_interval_ms(n) for n in (1, 6, 400, 1000, 10_000)] == [100, 100, 100, 250, 2500]


def test_records_go_to_topic_i_mod_topics():
    topics = ["a", "b", "c"]
    assert list(runners_topics.topic_stream(topics, 7)) == ["a", "b", "c", "a", "b", "c", "a"]
    assert runners_topics.expected_per_topic(topics, 7) == {"a": 3, "b": 2, "c": 2}


# ------------------------------------------------------------------------------------------------ batching figures


def _window(count: int, total: int) -> dict[str, Any]:
    # A librdkafka rolling-average window as its statistics print it.
    return {"min": 0, "max": 0, "avg": total // count if count else 0, "sum": total, "stddev": 0, "p50": 0,
            "p75": 0, "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0, "hdrsize": 14448, "cnt": count}


def _stats(ts: int, produce: list[int], windows: list[tuple[int, int, int]]) -> dict[str, Any]:
    """One librdkafka statistics document, trimmed but in its shape: brokers (each with req and toppars), then
    topics (batchsize, batchcnt, partitions). windows: (batches, batch bytes, records) per topic."""
    return {
        "name": "rdkafka#producer-1", "client_id": "matrix-confluent", "type": "producer", "ts": ts,
        "time": 1_796_660_572, "age": 201_771, "replyq": 0, "msg_cnt": 0,
        "brokers": {f"127.0.0.1:9092/{i}": {
            "name": f"127.0.0.1:9092/{i}", "nodeid": i, "state": "UP", "tx": n + 3, "rx": n + 3,
            "int_latency": _window(0, 0), "rtt": _window(0, 0),
            "req": {"Produce": n, "ListOffsets": 0, "Metadata": 2, "ApiVersion": 1, "InitProducerId": 1},
            "toppars": {"t-0": {"topic": "t", "partition": 0}}} for i, n in enumerate(produce)},
        "topics": {f"t{i}": {
            "topic": f"t{i}", "age": 201, "metadata_age": 200, "batchsize": _window(batches, nbytes),
            "batchcnt": _window(batches, records),
            "partitions": {"0": {"partition": 0, "broker": 0, "leader": 0, "txmsgs": records, "msgs": records},
                           "-1": {"partition": -1, "broker": -1, "leader": -1, "txmsgs": 0, "msgs": 0}}}
            for i, (batches, nbytes, records) in enumerate(windows)},
        "tx": 10, "txmsgs": 0,
    }


def test_produce_requests_are_summed_over_brokers_and_are_totals():
    assert runners_batching.produce_requests(_stats(1, [4, 7], [])) == 11


def test_topic_windows_reset_per_emission_so_their_sums_are_totals():
    emissions = [_stats(1, [1], [(1, 70, 1)]),  # the warm-up batch
                 _stats(2, [40], [(30, 480_000, 4_440), (9, 90_000, 1_000)]),
                 _stats(3, [52], [(12, 190_000, 2_560), (0, 0, 0)])]
    assert runners_batching.sum_windows(emissions) == {"batches": 52, "batch_bytes": 760_070,
                                                       "batch_records": 8_001, "batchcnt_batches": 52}


def test_the_callback_keeps_exactly_what_the_figures_need_from_the_document_text():
    doc = _stats(123_456, [5, 6], [(2, 300, 20), (3, 450, 30)])
    slim = runners_batching.slim_stats(json.dumps(doc))
    assert slim["ts"] == 123_456
    assert [b["req"] for b in slim["brokers"].values()] == [b["req"] for b in doc["brokers"].values()]
    assert [(t["batchsize"], t["batchcnt"]) for t in slim["topics"].values()] == \
        [(t["batchsize"], t["batchcnt"]) for t in doc["topics"].values()]
    # librdkafka's own spacing, and stopping after the topics it was told about.
    compact = json.dumps(doc, separators=(",", ":"))
    assert runners_batching.slim_stats(compact) == slim
    assert len(runners_batching.slim_stats(compact, topics=1)["topics"]) == 1


class _FakeProducer:
    """Serves queued statistics documents to the collector's callback, one per poll(), as librdkafka would."""

    def __init__(self, stats: runners_batching.LibrdkafkaStats) -> None:
        self.stats, self.queue = stats, []

    def poll(self, timeout: float) -> None:
        if self.queue:
            doc = self.queue.pop(0)
            doc["ts"] = int(time.monotonic() * 1e6) + 1  # made now, on the same clock
            self.stats.callback(json.dumps(doc))


def test_confluent_figures_count_the_window_requests_and_check_the_records():
    stats = runners_batching.LibrdkafkaStats(100, topics=1)
    producer = _FakeProducer(stats)
    stats.callback(json.dumps(_stats(1, [1], [(1, 70, 1)])))  # during the warm-up
    producer.queue = [_stats(0, [1], [(0, 0, 0)])]  # the first after it: the window's baseline
    stats.open_window(producer)
    producer.queue = [_stats(0, [31], [(30, 480_000, 4_440)]), _stats(0, [41], [(10, 160_000, 1_560)])]
    producer.poll(0)  # served during the window
    figures = stats.figures(producer, records=6_000)
    assert figures["produce_requests"] == 40
    assert figures["records_per_request"] == 150.0
    assert (figures["batches"], figures["batch_records"], figures["batch_records_life"]) == (40, 6_000, 6_001)
    assert figures["batch_size_avg"] == pytest.approx(640_070 / 41)
    assert figures["stats_records_match"] is True
    short = copy.deepcopy(stats)
    short.emissions[-1]["topics"]["0"]["batchcnt"]["sum"] -= 1
    producer.stats = short
    producer.queue = [_stats(0, [41], [(0, 0, 0)])]
    assert short.figures(producer, records=6_000)["stats_records_match"] is False


def test_kafkaprod_figures_leave_the_warm_up_request_out():
    before = {"request-total": 1.0, "records-per-request-avg": 1.0, "batch-size-avg": 80.0}
    after = {"request-total": 11.0, "records-per-request-avg": 1_101 / 11, "batch-size-avg": 9_000.0}
    figures = runners_batching.kafkaprod_figures(before, after)
    assert figures["produce_requests"] == 10
    assert figures["records_per_request"] == pytest.approx(110.0)  # (1,101 records - the warm-up) / 10 requests
    assert figures["batch_size_avg"] == 9_000.0
    assert runners_batching.kafkaprod_figures(None, after) == {}


def test_a_row_meets_the_bar_at_one_and_a_half_times_the_rate_and_half_the_cpu():
    def summary(rate: float, cpu: float, broker: float) -> dict[str, Any]:
        return {"records_per_s": rate, "cpu_us_per_record": cpu, "broker_cpu_s_per_million": broker}

    v = matrix_report.verdicts(summary(300, 1.0, 2.0), summary(200, 2.0, 2.0))
    assert (v["rate_ratio"], v["cpu_ratio"], v["meets_bar"], v["broker_ok"]) == (1.5, 0.5, True, True)
    v = matrix_report.verdicts(summary(299, 1.0, 2.1), summary(200, 2.0, 2.0))
    assert (v["meets_bar"], v["broker_ok"]) == (False, False)
    assert matrix_report.verdicts(None, summary(1, 1, 1))["meets_bar"] is None


# ------------------------------------------------------------------------------------------------ real runs


def test_a_tiny_row_on_tansu_reports_both_clients_with_their_batching_figures(tmp_path, capsys):
    out = tmp_path / "matrix.json"
    status = matrix.main(["--rows", "p6/java", "--rounds", "1", "--num-records", "3000", "--json", str(out)])
    report = capsys.readouterr().out
    assert status == 0, report
    line = next(line for line in report.splitlines() if line.startswith("| p6/java |"))
    assert "—" not in line  # every figure of both clients is there
    assert "- machine: " in report
    (row,) = json.loads(out.read_text())["rows"]
    assert [run["client"] for run in row["runs"]] == ["kafkaprod", "confluent"]
    for run in row["runs"]:
        assert run["records_verified"] == 3001
        assert run["produce_requests"] > 0 and run["records_per_request"] > 0 and run["batch_size_avg"] > 0
        assert run["broker_cpu_s"] is not None
        # The child's own peak; ru_maxrss also carries the parent's peak at spawn.
        assert 0 < run["peak_rss_own_mb"] <= run["peak_rss_mb"]
    confluent = row["runs"][1]
    assert confluent["stats_records_match"] and confluent["batch_records"] == 3000


def test_both_clients_send_to_several_topics_through_the_harness(tansu):
    from kafkaprod.tools import compare

    workload = compare.Workload(num_records=1001, partitions=2, topics=3, key_size=9, delivery="callback")
    for client in ("kafkaprod", "confluent"):
        run = compare.run_once(compare.Contender(client, client), workload, tansu.bootstrap_servers, 1,
                               topic_prefix="multi", extra_spec={"batch_stats": True})
        assert run["records_verified"] == 1001 + 3, client  # one warm-up record per topic
        assert (run["delivered"], run["failed"]) == (1001, 0), client
        assert run["produce_requests"] > 0, client
    with pytest.raises(compare.ComparisonError, match="several topics"):
        compare.run_once(compare.Contender("kafkaprod-batch", "kafkaprod-batch"), workload,
                         tansu.bootstrap_servers, 1, topic_prefix="multi")
