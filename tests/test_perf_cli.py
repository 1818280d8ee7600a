"""kafkaprod-perf's command line: what each flag turns into, which inputs are refused, and one --bulk run on Tansu."""
from __future__ import annotations

import json
import math
import time

import pytest

from kafkaprod.errors import KafkaTimeoutError
from kafkaprod.tools import perf, perf_stats


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Parse argv expecting argparse to refuse it; returns the error text it printed."""
    with pytest.raises(SystemExit) as exc_info:
        perf.parse_args(argv)
    assert exc_info.value.code == 2
    return capsys.readouterr().err


def test_defaults_start_a_local_broker_with_100_byte_records_and_no_throttle():
    args = perf.parse_args([])
    assert args.num_records == perf.DEFAULT_NUM_RECORDS
    assert args.record_size == 100
    assert args.payload_file is None
    assert args.topic == "kafkaprod-perf"
    assert args.partitions == 6
    assert args.bootstrap_servers is None
    assert args.throughput == -1.0
    assert args.key_size == 0
    assert args.json is False


def test_unset_flags_leave_the_producer_defaults_alone():
    options = perf.producer_options(perf.parse_args([]), "h1:9092")
    assert options == {"bootstrap_servers": "h1:9092", "client_id": "kafkaprod-perf"}


@pytest.mark.parametrize(("flag", "expected"), [("all", "all"), ("-1", -1), ("0", 0), ("1", 1)])
def test_acks_flag_becomes_the_producer_acks_value(flag, expected):
    options = perf.producer_options(perf.parse_args(["--acks", flag]), "h:1")
    assert options["acks"] == expected
    assert type(options["acks"]) is type(expected)


def test_acks_outside_kafkas_choices_is_refused(capsys):
    assert "--acks" in refused(capsys, ["--acks", "2"])


def test_producer_flags_map_to_snake_case_producer_options():
    args = perf.parse_args(["--compression", "lz4", "--batch-size", "1000000", "--linger-ms", "0",
                            "--bootstrap-servers", "a:1,b:2"])
    options = perf.producer_options(args, args.bootstrap_servers)
    assert options["compression_type"] == "lz4"
    assert options["batch_size"] == 1_000_000
    assert options["linger_ms"] == 0
    assert options["bootstrap_servers"] == "a:1,b:2"


def test_unknown_codec_is_refused(capsys):
    assert "--compression" in refused(capsys, ["--compression", "brotli"])


@pytest.mark.parametrize("count", ["0", "-5", "many"])
def test_num_records_must_be_a_positive_integer(capsys, count):
    assert "--num-records" in refused(capsys, ["--num-records", count])


def test_num_records_accepts_underscore_separators():
    assert perf.parse_args(["--num-records", "2_000_000"]).num_records == 2_000_000


def test_record_size_and_payload_file_exclude_each_other(capsys, tmp_path):
    payloads = tmp_path / "p.txt"
    payloads.write_text("a\nb\n")
    assert "--payload-file" in refused(capsys, ["--record-size", "10", "--payload-file", str(payloads)])


def test_payload_file_replaces_the_default_record_size(tmp_path):
    payloads = tmp_path / "p.txt"
    payloads.write_text("a\nb\n")
    args = perf.parse_args(["--payload-file", str(payloads)])
    assert args.record_size is None
    assert args.payload_file == str(payloads)


def test_payload_delimiter_understands_backslash_escapes():
    assert perf.parse_args(["--payload-delimiter", "\\t"]).payload_delimiter == "\t"
    assert perf.parse_args([]).payload_delimiter == "\n"


def test_empty_payload_delimiter_is_refused(capsys):
    assert "--payload-delimiter" in refused(capsys, ["--payload-delimiter", ""])


def test_payload_file_values_are_split_on_the_delimiter_without_empty_ones(tmp_path):
    payloads = tmp_path / "p.txt"
    payloads.write_bytes(b"one\n\ntwo\nthree\n")
    assert perf.load_payloads(str(payloads), "\n") == [b"one", b"two", b"three"]


def test_payload_file_without_values_is_refused_naming_the_file(tmp_path):
    payloads = tmp_path / "empty.txt"
    payloads.write_bytes(b"\n\n")
    with pytest.raises(ValueError, match="empty.txt"):
        perf.load_payloads(str(payloads), "\n")


@pytest.mark.parametrize(("text", "expected"), [("5000", 5000.0), ("-1", -1.0), ("-20", -1.0), ("0.5", 0.5)])
def test_throughput_is_a_rate_or_negative_for_unlimited(text, expected):
    assert perf.parse_args(["--throughput", text]).throughput == expected


@pytest.mark.parametrize("text", ["0", "fast", "nan", "inf"])
def test_throughput_zero_or_not_a_number_is_refused(capsys, text):
    assert "--throughput" in refused(capsys, ["--throughput", text])


def test_latency_sampling_defaults_to_about_twenty_thousand_samples():
    assert perf.parse_args(["--num-records", "1000000"]).latency_sample_every == 50
    assert perf.parse_args(["--num-records", "100"]).latency_sample_every == 1
    assert perf.parse_args(["--num-records", "100", "--latency-sample-every", "3"]).latency_sample_every == 3


def test_latency_sample_interval_must_not_be_negative_and_zero_turns_sampling_off(capsys):
    assert "--latency-sample-every" in refused(capsys, ["--latency-sample-every", "-1"])
    assert perf.parse_args(["--latency-sample-every", "0"]).latency_sample_every == 0


@pytest.mark.parametrize("key_size", [0, 8])  # the constant-value loop and the general one
def test_a_run_without_latency_samples_sends_and_checks_every_record(tansu, tansu_topic, capsys, key_size):
    topic = tansu_topic(partitions=3)
    status = perf.main(["--latency-sample-every", "0", "--num-records", "5000", "--key-size", str(key_size),
                        "--topic", topic, "--bootstrap-servers", tansu.bootstrap_servers, "--json"])
    assert status == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["records"], report["failed"], report["latency_samples"]) == (5000, 0, 0)


def test_extra_producer_options_are_typed_and_java_names_become_snake_case():
    args = perf.parse_args(["-X", "buffer.memory=67108864", "-X", "enable_idempotence=false",
                            "--producer-option", "client_id=mine"])
    options = perf.producer_options(args, "h:1")
    assert options["buffer_memory"] == 67108864
    assert options["enable_idempotence"] is False
    assert options["client_id"] == "mine"  # -X wins over the tool's own client id


def test_extra_option_without_equals_sign_is_refused(capsys):
    assert "KEY=VALUE" in refused(capsys, ["-X", "linger_ms"])


def test_extra_option_given_twice_is_refused(capsys):
    assert "twice" in refused(capsys, ["-X", "linger_ms=1", "-X", "linger.ms=2"])


def test_extra_option_may_not_repeat_a_flag(capsys):
    err = refused(capsys, ["--linger-ms", "5", "-X", "linger.ms=7"])
    assert "--linger-ms" in err and "linger_ms" in err


def test_bootstrap_servers_only_come_from_their_flag(capsys):
    assert "--bootstrap-servers" in refused(capsys, ["-X", "bootstrap_servers=h:1"])


def test_create_topic_needs_external_bootstrap_servers(capsys):
    assert "--create-topic" in refused(capsys, ["--create-topic"])
    assert perf.parse_args(["--create-topic", "--bootstrap-servers", "h:1"]).create_topic is True


def test_reporting_interval_must_be_positive(capsys):
    assert "--reporting-interval" in refused(capsys, ["--reporting-interval", "0"])


def test_a_sampled_callback_records_its_latency_or_counts_its_error():
    stats = perf_stats.Stats()
    ok = stats.sampled_callback(time.perf_counter() - 0.25)
    failed = stats.sampled_callback(time.perf_counter())
    ok(object(), None)
    failed(None, KafkaTimeoutError("expired"))
    assert len(stats.latencies_ms) == 1 and stats.latencies_ms[0] >= 250.0
    assert stats.take_window() == stats.latencies_ms
    assert stats.errors == {"KafkaTimeoutError": 1}
    assert stats.first_errors == ["KafkaTimeoutError: expired"]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert perf_stats.percentile(values, 0.5) == 50.0
    assert perf_stats.percentile(values, 0.99) == 99.0
    assert perf_stats.percentile(values, 0.999) == 100.0
    assert perf_stats.percentile([7.0], 0.5) == 7.0
    assert math.isnan(perf_stats.percentile([], 0.5))


def test_total_bytes_counts_cycled_values_and_keys():
    records = perf.Records(values=[b"a", b"bbb"], keys=[b"kk"])
    # 5 records: values a, bbb, a, bbb, a (9 bytes) and 5 two-byte keys.
    assert records.total_bytes(5) == 9 + 10
    assert [pair for pair in records.stream(3)] == [(b"a", b"kk"), (b"bbb", b"kk"), (b"a", b"kk")]


def test_summary_line_has_the_java_tool_fields_and_names_failures():
    report = perf.Report(
        records=1000, failed=2, errors={"KafkaTimeoutError": 2}, elapsed_s=2.0, records_per_s=500.0,
        mb_per_s=0.05, latency_samples=10, latency_sample_every=100, avg_latency_ms=1.5, max_latency_ms=9.0,
        p50_ms=1.0, p95_ms=4.0, p99_ms=8.0, p999_ms=9.0, producer_options={}, bootstrap_servers="h:1", topic="t")
    text = perf.format_summary(report)
    assert text.startswith("1000 records sent, 500.0 records/sec (0.05 MB/sec), 1.50 ms avg latency, "
                           "9.00 ms max latency, 1.00 ms 50th, 4.00 ms 95th, 8.00 ms 99th, 9.00 ms 99.9th.")
    assert "2 records FAILED (KafkaTimeoutError: 2)" in text


# ------------------------------------------------------------------------------------------------ --compare


def test_compare_is_off_by_default_with_one_round():
    args = perf.parse_args([])
    assert args.compare is False
    assert args.rounds == 1
    assert perf.parse_args(["--compare", "--rounds", "3"]).rounds == 3


def test_rounds_without_compare_is_refused(capsys):
    assert "--rounds" in refused(capsys, ["--rounds", "2"])


@pytest.mark.parametrize(("argv", "named"), [
    (["--throughput", "1000"], "--throughput"),
    (["--latency-sample-every", "10"], "--latency-sample-every"),
    (["--create-topic", "--bootstrap-servers", "h:1"], "--create-topic"),
])
def test_compare_refuses_flags_that_would_not_apply_to_every_client(capsys, argv, named):
    assert named in refused(capsys, ["--compare", *argv])


def test_compare_refuses_producer_options_only_kafkaprod_would_get(capsys):
    err = refused(capsys, ["--compare", "-X", "buffer_memory=67108864"])
    assert "buffer_memory" in err and "enable_idempotence" in err


def test_compare_accepts_options_every_client_gets():
    args = perf.parse_args(["--compare", "-X", "enable_idempotence=false", "-X", "max.request.size=67108864"])
    assert args.producer_options == {"enable_idempotence": False, "max_request_size": 67108864}


def test_compare_gives_every_client_the_security_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    args = perf.parse_args(["--compare", "-X", "security.protocol=SSL", "-X", f"ssl_cafile={ca}"])
    assert perf.compare_workload(args).security == {"security_protocol": "SSL", "ssl_cafile": str(ca)}
    from kafkaprod.tools.broker import librdkafka_security

    assert librdkafka_security(perf.compare_workload(args).security) == \
        {"security.protocol": "SSL", "ssl.ca.location": str(ca)}


def test_every_client_gets_the_settings_kafkaprod_resolves_from_the_flags():
    from kafkaprod.tools.compare import client_settings

    defaults = client_settings(perf.producer_options(perf.parse_args(["--compare"]), "h:1"))
    assert defaults == {"acks": "all", "idempotence": True, "linger_ms": 5, "batch_size": 16384,
                        "compression": "none", "max_request_size": 1048576}
    # As in Java, idempotence is on by default only where acks allows it.
    args = perf.parse_args(["--compare", "--acks", "1", "--compression", "lz4", "--batch-size", "1000000"])
    chosen = client_settings(perf.producer_options(args, "h:1"))
    assert (chosen["acks"], chosen["idempotence"], chosen["compression"], chosen["batch_size"]) == \
        (1, False, "lz4", 1_000_000)


def test_missing_peer_packages_are_skipped_with_their_name(monkeypatch):
    import importlib.util

    from kafkaprod.tools import compare

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "aiokafka" else real(name))
    found, skipped = compare.installed_clients()
    assert "aiokafka" not in found and "kafkaprod" in found
    assert "aiokafka" in skipped["aiokafka"]


def test_compare_table_divides_kafkaprod_by_each_client_over_medians():
    from kafkaprod.tools import compare

    def run(client, rate, cpu_us):
        return {"client": client, "version": "v", "records_per_s": rate, "mb_per_s": rate / 10000,
                "cpu_s": cpu_us, "cpu_us_per_record": cpu_us, "peak_rss_mb": 40.0}

    runs = [run("kafkaprod", 400.0, 1.0), run("confluent", 100.0, 4.0), run("kafkaprod", 600.0, 1.0),
            run("confluent", 300.0, 4.0), run("kafkaprod", 500.0, 3.0)]
    rows = compare.summarize(runs)
    assert [(r["client"], r["runs"], r["records_per_s"]) for r in rows] == [("kafkaprod", 3, 500.0),
                                                                          ("confluent", 2, 200.0)]
    assert rows[1]["ratio_records_per_s"] == 2.5
    assert rows[1]["ratio_cpu_per_record"] == 0.25
    table = compare.format_table(rows).splitlines()
    assert table[0].startswith("| client | version | runs | records/s |")
    assert table[3] == "| confluent | v | 2 | 200 | 0.0 | 4.00 | 4.00 | 40 | 2.50 | 0.25 |"


def test_a_failed_client_is_named_by_the_exception_its_child_raised():
    from kafkaprod.tools.compare import _last_line

    text = ("aiokafka: child exited 1:\n  File \"x.py\", line 3\n"
            "aiokafka.errors.UnknownError: [Error -1] UnknownError\nUnclosed AIOKafkaProducer\nproducer: <obj>")
    assert _last_line(text) == "aiokafka.errors.UnknownError: [Error -1] UnknownError"


def test_bulk_flag_alone_sends_ten_thousand_records_per_call():
    assert perf.parse_args([]).bulk is None
    assert perf.parse_args(["--bulk"]).bulk == perf.DEFAULT_BULK_CHUNK == 10_000
    assert perf.parse_args(["--bulk", "2500"]).bulk == 2500


def test_bulk_chunk_must_be_positive(capsys):
    assert "--bulk" in refused(capsys, ["--bulk", "0"])


def test_bulk_run_sends_every_record_through_send_batch(tansu, tansu_topic, capsys):
    topic = tansu_topic(partitions=3)
    status = perf.main(["--bulk", "3000", "--num-records", "10000", "--key-size", "8", "--topic", topic,
                        "--bootstrap-servers", tansu.bootstrap_servers, "--json"])
    assert status == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["records"], report["failed"], report["bulk"]) == (10_000, 0, 3000)
    assert report["latency_samples"] == 4  # one per call: 3000 + 3000 + 3000 + 1000


def test_compare_children_import_the_parents_kafkaprod_even_when_started_inside_a_source_tree(tmp_path,
                                                                                             monkeypatch):
    # `kafkaprod-perf --compare` run from a checkout's root, with kafkaprod installed rather than built in place:
    # the checkout's uncompiled package must not shadow the installed one in the children.
    from kafkaprod.tools import compare

    shadow = tmp_path / "kafkaprod"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the source tree was imported')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(compare.ComparisonError) as failed:
        compare.run_child({"client": "no-such-client"}, timeout=120)  # fails, but only once it is running
    assert "the source tree was imported" not in str(failed.value)
    assert "no-such-client" in str(failed.value) or "KeyError" in str(failed.value)


def test_delivery_mode_applies_only_with_compare(capsys):
    assert perf.parse_args(["--compare"]).delivery == "none"
    assert perf.parse_args(["--compare", "--delivery", "future"]).delivery == "future"
    assert "--delivery" in refused(capsys, ["--delivery", "callback"])
    assert "--delivery" in refused(capsys, ["--compare", "--delivery", "sometimes"])
    assert "--delivery" in refused(capsys, ["--compare", "--delivery", "gather"])  # asyncio clients only


def test_a_failed_record_fails_a_callback_run_and_is_counted():
    from kafkaprod.tools.runners import DeliveryError, Outcomes

    outcomes = Outcomes("callback")
    outcomes.on_kafkaprod(object(), None)
    outcomes.on_kafkaprod(None, TimeoutError("expired"))
    with pytest.raises(DeliveryError, match="1 of 2 records failed.*TimeoutError: expired"):
        outcomes.report(2)
    fine = Outcomes("future")
    fine.on_confluent(None, object())
    assert fine.report(1) == {"delivery": "future", "delivered": 1, "failed": 0}
    assert Outcomes("none").report(5) == {"delivery": "none"}


def test_the_child_runner_imports_only_the_standard_library_until_it_runs_a_client():
    # A baseline interpreter (an older kafkaprod, without kafkaprod.tools) runs this file by path.
    import subprocess
    import sys

    from kafkaprod.tools import compare

    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'kafkaprod', 'confluent_kafka', 'aiokafka', "
            "'kafka'}))")
    out = subprocess.run([sys.executable, "-c", code, str(compare.RUNNER)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_baseline_runs_each_kafkaprod_client_again_under_its_interpreter_right_after_its_own(capsys):
    import sys

    from kafkaprod.tools import compare

    assert perf.parse_args(["--compare", "--baseline", sys.executable]).baseline == sys.executable
    assert "--baseline" in refused(capsys, ["--baseline", sys.executable])
    assert "--baseline" in refused(capsys, ["--compare", "--baseline", "/no/such/python"])
    # This interpreter as its own baseline: the rows are labelled apart, and the note says they are one build.
    lineup = compare.line_up(["kafkaprod", "kafkaprod-batch"], sys.executable)
    assert [(c.label, c.client, c.baseline) for c in lineup.contenders] == [
        ("kafkaprod", "kafkaprod", False), ("kafkaprod@baseline", "kafkaprod", True),
        ("kafkaprod-batch", "kafkaprod-batch", False), ("kafkaprod-batch@baseline", "kafkaprod-batch", True)]
    assert "PYTHONPATH" not in compare.child_env(lineup.contenders[1])
    assert len(lineup.notes) == 2 and "the same kafkaprod" in lineup.notes[0]
    assert compare.topic_name("p", "kafkaprod@baseline", 2).startswith("p-kafkaprod-baseline-r2-")


@pytest.mark.parametrize("delivery", ["none", "callback", "future"])
def test_every_installed_client_runs_through_the_harness_and_its_records_are_counted(tansu, delivery):
    # The harness's children run by path under `python -I`: a runner that cannot find a piece of itself, or a
    # client whose delivery mode is miswired, fails here rather than in a benchmark.
    from kafkaprod.tools import compare
    from kafkaprod.tools.runners import CLIENTS

    found, skipped = compare.installed_clients(CLIENTS)
    assert {"kafkaprod", "kafkaprod-batch", "kafkaprod-aio", "confluent", "confluent-aio"} <= set(found), skipped
    workload = compare.Workload(num_records=3000, partitions=2, chunk=1000, delivery=delivery)
    for client in found:
        run = compare.run_once(compare.Contender(client, client), workload, tansu.bootstrap_servers, 1,
                               topic_prefix="harness")
        assert run["records_verified"] == 3001, client
        assert run["delivery"] == delivery, client
        if delivery != "none":
            assert (run["delivered"], run["failed"]) == (3000, 0), client


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_the_asyncio_clients_gather_their_records_on_either_event_loop(tansu, event_loop):
    from kafkaprod.tools import compare
    from kafkaprod.tools.runners import ASYNCIO_CLIENTS

    found, skipped = compare.installed_clients(ASYNCIO_CLIENTS)
    assert set(found) == set(ASYNCIO_CLIENTS), skipped
    workload = compare.Workload(num_records=3000, partitions=2, delivery="gather", event_loop=event_loop)
    for client in found:
        run = compare.run_once(compare.Contender(client, client), workload, tansu.bootstrap_servers, 1,
                               topic_prefix="gather")
        assert run["records_verified"] == 3001, client
        assert (run["delivery"], run["delivered"], run["failed"]) == ("gather", 3000, 0), client
        assert run["event_loop_class"].split(".")[0] == event_loop, (client, run["event_loop_class"])


def test_gather_is_refused_for_a_client_without_asyncio():
    from kafkaprod.tools.runners import run

    with pytest.raises(ValueError, match="only aiokafka, kafkaprod-aio, confluent-aio have it, not kafkaprod"):
        run({"client": "kafkaprod", "topic": "t", "delivery": "gather"})
