"""kafkaprod.aio.AIOKafkaProducer against a real broker (Tansu): what a coroutine sends is written once, every
awaitable ends in its record's metadata or error, cancelling one does not cancel its record, stop() sends what is
pending, and the producer refuses another event loop or use after stop(). What it wrote is read back with
confluent-kafka's consumer."""
from __future__ import annotations

import asyncio
import threading

import pytest

from kafkaprod import RecordMetadata
from kafkaprod.aio import AIOKafkaProducer
from kafkaprod.errors import KafkaTimeoutError, ProducerClosedError
from mock_cluster import ALL_BROKERS
from producer_support import FAST, WAIT_S, read_back

NOWHERE = "127.0.0.1:9"  # nothing listens on the discard port


def _producer(bootstrap_servers: str, **options) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers, **{**FAST, **options})


def test_sent_records_resolve_to_their_metadata_and_are_written_once(tansu, tansu_topic):
    topic = tansu_topic(partitions=3)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=5) as producer:
            futures = [await producer.send(topic, b"v%03d" % i, key=b"k%d" % (i % 7)) for i in range(300)]
            first = await producer.send_and_wait(topic, b"last", partition=1, headers=[("h", b"x")])
            return [await f for f in futures], first

    metadata, last = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert all(isinstance(md, RecordMetadata) and md.topic == topic for md in metadata)
    assert last.partition == 1 and last.serialized_value_size == 4
    stored = read_back(tansu.bootstrap_servers, topic, 3, 301)
    by_value = {s.value: (p, s.offset) for p, ss in stored.items() for s in ss}
    assert all(by_value[b"v%03d" % i] == (md.partition, md.offset) for i, md in enumerate(metadata))
    assert [s.headers for s in stored[1] if s.value == b"last"] == [[("h", b"x")]]


def test_send_batch_gives_one_awaitable_for_the_whole_call_with_headers(tansu, tansu_topic):
    topic = tansu_topic(partitions=2)

    async def main():
        async with _producer(tansu.bootstrap_servers) as producer:
            waiter = await producer.send_batch(topic, [b"a", b"b", b"c"], headers=[("trace", b"t1")], partition=0)
            return list(await waiter)

    metadata = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert [md.offset for md in metadata] == [0, 1, 2]
    stored = read_back(tansu.bootstrap_servers, topic, 2, 3)
    assert [(s.value, s.headers) for s in stored[0]] == [(v, [("trace", b"t1")]) for v in (b"a", b"b", b"c")]


def test_cancelling_an_awaitable_does_not_cancel_or_lose_its_record(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=50) as producer:
            cancelled = await producer.send(topic, b"cancelled")
            cancelled.cancel()
            kept = await producer.send(topic, b"kept")
            await producer.flush()
            return cancelled.cancelled(), await kept

    was_cancelled, kept = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert was_cancelled and kept.offset == 1
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 2)[0]] == [b"cancelled", b"kept"]


def test_stop_sends_what_is_pending_before_it_returns(tansu, tansu_topic):
    topic = tansu_topic(partitions=2)

    async def main():
        producer = _producer(tansu.bootstrap_servers, linger_ms=200)
        await producer.start()
        futures = [await producer.send(topic, b"p%d" % i) for i in range(50)]
        await producer.stop()
        return [f.done() and f.exception() is None for f in futures]

    assert all(asyncio.run(asyncio.wait_for(main(), WAIT_S)))
    read_back(tansu.bootstrap_servers, topic, 2, 50)


def test_stop_that_runs_out_of_time_fails_pending_records_with_a_named_error():
    async def main():
        producer = _producer(NOWHERE, max_block_ms=60_000)
        await producer.start()
        sending = asyncio.ensure_future(producer.send("no-such-broker-topic", b"x"))
        await asyncio.sleep(0.1)  # the send waits for metadata in a worker thread; the loop runs on
        await producer.stop(timeout=0)
        with pytest.raises(ProducerClosedError):
            await sending

    asyncio.run(asyncio.wait_for(main(), WAIT_S))


def test_waiting_for_metadata_is_awaited_and_the_loop_runs_on(tansu):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        async with _producer(NOWHERE, max_block_ms=1_000) as producer:
            with pytest.raises(KafkaTimeoutError, match="not present in metadata after 1000 ms"):
                await producer.send("unknown-topic", b"x")
        stop.set()
        await task
        return ticks

    assert asyncio.run(asyncio.wait_for(main(), WAIT_S)) > 5


def test_every_record_ends_in_an_error_when_nothing_can_be_delivered(mock_cluster, mock_topic):
    topic = mock_topic(partitions=2)

    async def main():
        async with _producer(mock_cluster.bootstrap_servers, delivery_timeout_ms=1_500, request_timeout_ms=1_000,
                             linger_ms=0) as producer:
            await producer.partitions_for(topic)
            mock_cluster.broker_down(ALL_BROKERS)
            futures = [await producer.send(topic, b"r%d" % i) for i in range(20)]
            return await asyncio.gather(*futures, return_exceptions=True)

    try:
        outcomes = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    finally:
        mock_cluster.broker_up(ALL_BROKERS)
    assert len(outcomes) == 20 and all(isinstance(o, KafkaTimeoutError) for o in outcomes)


def test_the_producer_refuses_another_event_loop_and_use_after_stop(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    producer = _producer(tansu.bootstrap_servers)
    errors = []

    async def start():
        await producer.start()
        await producer.send_and_wait(topic, b"first")

    async def from_elsewhere():
        try:
            await producer.send(topic, b"other loop")
        except RuntimeError as exc:
            errors.append(str(exc))

    async def use_then_stop():
        await producer.send_and_wait(topic, b"second")
        await producer.stop()
        with pytest.raises(ProducerClosedError, match=r"send\(\) after the producer was stopped"):
            await producer.send(topic, b"after stop")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(start())
        other = threading.Thread(target=lambda: asyncio.run(from_elsewhere()))
        other.start()
        other.join(WAIT_S)
        loop.run_until_complete(use_then_stop())
    finally:
        loop.close()
    assert errors and "another event loop" in errors[0]
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 2)[0]] == [b"first", b"second"]


def test_bad_options_are_refused_at_construction_naming_the_option():
    with pytest.raises(ValueError, match="unknown producer option 'lingr_ms'"):
        AIOKafkaProducer(NOWHERE, lingr_ms=5)


def test_a_record_awaitable_works_with_asyncio_helpers_and_done_callbacks(tansu, tansu_topic):
    topic = tansu_topic(partitions=2)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=20) as producer:
            records = [await producer.send(topic, b"g%d" % i, partition=0) for i in range(10)]
            called = []
            records[3].add_done_callback(lambda r: called.append(r.result().offset))
            gathered = await asyncio.gather(*records[:5])
            waited = await asyncio.wait_for(records[9], WAIT_S)
            await asyncio.sleep(0)
            late = []
            records[0].add_done_callback(lambda r: late.append(r.exception()))  # already done: runs soon
            await asyncio.sleep(0)
            return [md.offset for md in gathered], waited.offset, called, late, records[2].result()

    offsets, last, called, late, third = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert offsets == [0, 1, 2, 3, 4] and last == 9 and called == [3] and late == [None]
    assert third.offset == 2


def test_done_callbacks_each_run_once_and_a_raising_one_goes_to_the_loops_exception_handler(tansu, tansu_topic):
    topic = tansu_topic(partitions=1)

    async def main():
        reported = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        async with _producer(tansu.bootstrap_servers, linger_ms=20) as producer:
            records = [await producer.send(topic, b"c%d" % i) for i in range(6)]
            calls = []

            def boom(record):
                raise RuntimeError("callback failed")

            for i, record in enumerate(records):
                record.add_done_callback(lambda r, i=i: calls.append(("first", i)))
                if i == 2:
                    record.add_done_callback(boom)
                record.add_done_callback(lambda r, i=i: calls.append(("second", i)))
            records[4].add_done_callback(boom)
            assert records[4].remove_done_callback(boom) == 1
            await producer.flush()
            for record in records:
                await record
            await asyncio.sleep(0)
            return calls, reported

    calls, reported = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert sorted(calls) == sorted([(w, i) for i in range(6) for w in ("first", "second")])
    assert [(c["exception"].args, c["future"].result().offset) for c in reported] == [(("callback failed",), 2)]
