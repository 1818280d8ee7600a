"""ProducerInterceptors: on_send before serialization, on_acknowledgement when a record completes.

As in the Java client, an interceptor that raises is logged and skipped; it never fails the send.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

log = logging.getLogger("kafkaprod")


class ProducerRecord(NamedTuple):
    topic: str
    value: Any
    key: Any = None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: Any = None


class ProducerInterceptors:
    def __init__(self, interceptors: Sequence[Any]) -> None:
        self._interceptors = tuple(interceptors)

    def on_send(self, topic: str, value: Any, key: Any, partition: int | None, timestamp_ms: int | None,
                headers: Any) -> tuple[str, Any, Any, int | None, int | None, Any]:
        record = ProducerRecord(topic, value, key, partition, timestamp_ms, headers)
        for icpt in self._interceptors:
            try:
                out = icpt.on_send(record)
                if out is not None:
                    record = out if isinstance(out, ProducerRecord) else ProducerRecord(*out)
            except Exception:
                log.exception("interceptor %r on_send raised; ignoring it", icpt)
        return record.topic, record.value, record.key, record.partition, record.timestamp_ms, record.headers

    def on_acknowledgement(self, metadata: Any, exception: Exception | None) -> None:
        for icpt in self._interceptors:
            try:
                icpt.on_acknowledgement(metadata, exception)
            except Exception:
                log.exception("interceptor %r on_acknowledgement raised; ignoring it", icpt)

    def on_send_error(self, exception: Exception) -> None:
        self.on_acknowledgement(None, exception)

    def close(self) -> None:
        for icpt in self._interceptors:
            try:
                icpt.close()
            except Exception:
                log.exception("interceptor %r close raised; ignoring it", icpt)
