"""Producer metrics, named as the Java producer's: updated per request or per batch, never per record."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from kafkaprod._native.batch import ProducerBatch
from kafkaprod._native.buffer_pool import BufferPool


class ProducerMetrics:
    def __init__(self, pool: BufferPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.records_sent = 0  # records in completed successful batches
        self.records_errored = 0
        self.records_retried = 0
        self.requests = 0
        self.records_in_requests = 0
        self.batches = 0
        self.batch_bytes = 0
        self.compression_ratio_sum = 0.0
        self.latency_sum = 0.0
        self.latency_count = 0
        self.latency_max = 0.0
        self.producer_id_resets = 0
        self.broker_data_losses = 0  # partitions whose broker refused the sequence after its last acknowledgement
        self.acknowledged_records_lost = 0  # acknowledged records gone, as the broker's log end offset showed

    def record_request(self, batches: Sequence[ProducerBatch], now: float) -> None:
        n = 0
        nbytes = 0
        ratio = 0.0
        for b in batches:
            n += b.record_count
            nbytes += b.estimated_size  # the built size: the Sender closed the batch
            ratio += b.builder.compression_ratio
        with self._lock:
            self.requests += 1
            self.records_in_requests += n
            self.batches += len(batches)
            self.batch_bytes += nbytes
            self.compression_ratio_sum += ratio

    def record_latency(self, seconds: float) -> None:
        with self._lock:
            self.latency_sum += seconds
            self.latency_count += 1
            if seconds > self.latency_max:
                self.latency_max = seconds

    def record_done(self, batch: ProducerBatch) -> None:
        if batch.result.error is None:
            with self._lock:
                self.records_sent += batch.record_count

    def record_errors(self, count: int) -> None:
        with self._lock:
            self.records_errored += count

    def record_retry(self, count: int) -> None:
        with self._lock:
            self.records_retried += count

    def record_producer_id_reset(self) -> None:
        with self._lock:
            self.producer_id_resets += 1

    def record_broker_data_loss(self, records: int = 0) -> None:
        """A broker lost acknowledged records of a partition (records: 0 for the event, how many once known)."""
        with self._lock:
            if records:
                self.acknowledged_records_lost += records
            else:
                self.broker_data_losses += 1

    def snapshot(self) -> dict[str, float]:
        """Java metric names; rates are per second since the producer started, latencies in ms."""
        with self._lock:
            elapsed = max(time.monotonic() - self._start, 1e-9)
            return {
                "record-send-rate": self.records_sent / elapsed,
                "record-send-total": float(self.records_sent),
                "record-error-rate": self.records_errored / elapsed,
                "record-error-total": float(self.records_errored),
                "record-retry-rate": self.records_retried / elapsed,
                "record-retry-total": float(self.records_retried),
                "batch-size-avg": self.batch_bytes / self.batches if self.batches else 0.0,
                "records-per-request-avg": self.records_in_requests / self.requests if self.requests else 0.0,
                "request-total": float(self.requests),
                "request-latency-avg": 1000.0 * self.latency_sum / self.latency_count if self.latency_count else 0.0,
                "request-latency-max": 1000.0 * self.latency_max,
                "compression-rate-avg": self.compression_ratio_sum / self.batches if self.batches else 0.0,
                "buffer-total-bytes": float(self._pool.total_memory),
                "buffer-available-bytes": float(self._pool.available_memory),
                "bufferpool-wait-time": self._pool.wait_time_ns_total / 1e9 / elapsed,
                "bufferpool-wait-time-total": self._pool.wait_time_ns_total / 1e9,
                "waiting-threads": float(self._pool.queued),
                # kafkaprod's own: new idempotent producer ids taken after a sequence gap or lost producer state.
                "producer-id-reset-total": float(self.producer_id_resets),
                # kafkaprod's own: a broker lost records it had acknowledged (see TransactionManager.can_retry).
                "broker-data-loss-total": float(self.broker_data_losses),
                "acknowledged-records-lost-total": float(self.acknowledged_records_lost),
            }
