# cython: language_level=3
"""Argument checks of a record (topic, partition, timestamp, key and value, callback), one set for every entry
point (headers are checked by their encoder, headers.pyx).

send()'s compiled fast path and send_batch()'s engine call the C functions (checks.pxd); the producer's Python
path calls the Python ones below, which wrap the same code, so a bad argument gets the same error everywhere.
"""
import re

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer
from libc.stdint cimport int64_t

from kafkaprod._native.clock cimport wall_ms

_INT32_MAX = 0x7fffffff
_INT64_MAX = 0x7fffffffffffffff
# Kafka's rule for topic names (its clients' internals.Topic): these characters, 1-249 of them, not "." or "..".
_TOPIC_CHARS = re.compile(r"[a-zA-Z0-9._-]+")
_TOPIC_MAX_LEN = 249


cdef int buffer_view(object obj, Py_buffer* view, const unsigned char** ptr, Py_ssize_t* length,
                     str what) except -1:
    """bytes_view for anything but None and exact bytes: exports a buffer, which pins the object (a bytearray
    cannot be resized under the pointer). Returns 1: the caller releases the view."""
    if isinstance(obj, str):
        raise TypeError(f"{what} must be bytes" + (f" (or set a {what}_serializer)" if what in ("key", "value") else "")
                        + f", got str {obj[:40]!r}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"{what} must be bytes-like or None"
                        + (f" (or set a {what}_serializer)" if what in ("key", "value") else "")
                        + f", got {type(obj).__name__}") from None
    except (BufferError, ValueError) as exc:
        # A strided memoryview or a non-contiguous array: its bytes are not one run, so they cannot be copied as is.
        raise TypeError(f"{what} must be a contiguous bytes-like object, got a non-contiguous "
                        f"{type(obj).__name__} ({exc})") from None
    ptr[0] = <const unsigned char*>view.buf
    length[0] = view.len
    return 1


cdef int64_t timestamp_of(object timestamp_ms) except? -1:
    if timestamp_ms is None:
        return wall_ms()
    # A float would be truncated silently and True taken as 1 ms.
    if type(timestamp_ms) is not int and (not isinstance(timestamp_ms, int) or isinstance(timestamp_ms, bool)):
        raise TypeError(f"timestamp_ms must be an int (ms since the epoch) or None, got "
                        f"{type(timestamp_ms).__name__} {timestamp_ms!r}")
    # Compared as Python ints first: a value beyond int64 would otherwise surface as a bare OverflowError.
    if timestamp_ms < 0 or timestamp_ms > _INT64_MAX:
        raise ValueError(f"timestamp_ms must be in [0, 2**63-1] (ms since the epoch), got {timestamp_ms}")
    return timestamp_ms


cdef int partition_of(object partition) except? -2:
    if partition is None:
        return -1
    if type(partition) is not int and (not isinstance(partition, int) or isinstance(partition, bool)):
        raise TypeError(f"partition must be an int >= 0 or None, got {type(partition).__name__} {partition!r}")
    if partition < 0 or partition > _INT32_MAX:
        raise ValueError(f"partition must be an int >= 0 or None, got {partition!r}")
    return partition


cdef int check_in_range(int partition, str topic, int num_partitions) except -1:
    if partition >= num_partitions:
        raise ValueError(f"partition {partition} is out of range for topic {topic!r}, which has {num_partitions} "
                         f"partitions (0-{num_partitions - 1})")
    return 0


cdef int check_callback(object callback) except -1:
    if callback is not None and not callable(callback):
        # Found now rather than on the I/O thread, where calling it would fail long after send() returned.
        raise TypeError(f"callback must be callable (metadata, exception) or None, got {callback!r}")
    return 0


# ---- for the producer's Python path ---------------------------------------------------------------------------

def check_topic(topic) -> None:
    """TypeError/ValueError unless topic is a name Kafka allows. Checked here rather than left to the broker: one
    that auto-creates topics may accept a name Kafka refuses, and a name that can never exist would block for
    max_block_ms."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__} {topic!r}")
    if not topic or len(topic) > _TOPIC_MAX_LEN or topic in (".", "..") or not _TOPIC_CHARS.fullmatch(topic):
        shown = topic if len(topic) <= 60 else topic[:60] + "..."
        raise ValueError(f"topic {shown!r} is not a valid topic name: Kafka allows 1-{_TOPIC_MAX_LEN} of "
                         f"[a-zA-Z0-9._-], not '.' or '..' (length {len(topic)})")


def check_partition(partition):
    """partition unchanged (None or an int in [0, 2**31-1]); TypeError/ValueError otherwise."""
    partition_of(partition)
    return partition


def check_timestamp(timestamp_ms):
    """timestamp_ms unchanged (None or an int in [0, 2**63-1]); TypeError/ValueError otherwise."""
    if timestamp_ms is not None:
        timestamp_of(timestamp_ms)
    return timestamp_ms


def check_record_callback(callback):
    """callback unchanged (None or a callable); TypeError otherwise."""
    check_callback(callback)
    return callback
