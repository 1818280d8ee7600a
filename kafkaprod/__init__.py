"""kafkaprod: a Kafka producer for Python with a compiled hot path.

The per-record work (murmur2, record and CRC-32C encoding, the buffer pool) lives in the compiled modules of
``kafkaprod._native``; importing the package checks that they were built.
"""
from __future__ import annotations

import logging

__version__ = "0.1.0"

import importlib

# Every compiled module of the send path; a missing one means the build step did not run.
_NATIVE_MODULES = ("crc32c", "murmur2", "varint", "bulk_input", "checks", "headers", "records", "record_metadata",
                   "buffer_pool", "future", "batch_future", "batch", "partition_state", "accumulator", "bulk",
                   "aio_bridge", "sockio", "produce_codec")

try:
    for _name in _NATIVE_MODULES:
        importlib.import_module("kafkaprod._native." + _name)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "kafkaprod's compiled modules (kafkaprod._native.*) are missing or failed to load "
        f"({exc}). Build them with `pip install .` (or `pip install -e .` for development, or "
        "`python setup.py build_ext --inplace` in a source checkout, which needs setuptools 77 or newer: "
        "`pip install 'setuptools>=77' Cython`); this needs Cython and a C compiler."
    ) from exc

logging.getLogger("kafkaprod").addHandler(logging.NullHandler())

# After the native check, which names the fix.
from kafkaprod._native.batch_future import BatchFuture, BatchMetadata  # noqa: E402
from kafkaprod._native.future import FutureRecordMetadata  # noqa: E402
from kafkaprod.errors import (  # noqa: E402
    AuthenticationError, BatchSendError, BrokerDataLossError, BrokerResponseError, BufferExhaustedError, ErrorCode, KafkaError,
    KafkaTimeoutError, ProducerClosedError, ProducerFencedError, ProducerForkedError, ProtocolError,
    RecordTooLargeError, RetriableBrokerError, SaslAuthenticationError, SslAuthenticationError, TransactionAbortableError,
    TransactionAbortedError, TransactionStateError, UnknownBrokerError, UnsupportedSaslMechanismError,
    UnsupportedVersionError,
)
from kafkaprod.producer import KafkaProducer  # noqa: E402
from kafkaprod._native.record_metadata import RecordMetadata  # noqa: E402

__all__ = [
    "AuthenticationError", "SaslAuthenticationError", "SslAuthenticationError", "UnsupportedSaslMechanismError",
    "BatchFuture", "BatchMetadata", "BatchSendError", "BrokerDataLossError", "BrokerResponseError", "BufferExhaustedError", "ErrorCode",
    "FutureRecordMetadata", "KafkaError", "KafkaProducer", "KafkaTimeoutError", "ProducerClosedError",
    "ProducerForkedError", "ProtocolError", "RecordMetadata", "RecordTooLargeError", "RetriableBrokerError", "UnknownBrokerError",
    "UnsupportedVersionError", "__version__",
    "ProducerFencedError", "TransactionAbortableError", "TransactionAbortedError", "TransactionStateError",
]
