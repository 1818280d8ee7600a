# cython: language_level=3
"""RecordMetadata (Java's RecordMetadata): what a broker acknowledged for one record.

A compiled value that behaves like the named tuple it replaces -- same fields in the same order, indexing,
unpacking, equality with tuples, hashing, repr, _fields and _asdict() -- but costs one small allocation to make,
since one is made for every record whose callback or future is asked for it.
"""
cimport cython
from libc.stdint cimport int64_t

from collections.abc import Sequence as _Sequence

_FIELDS = ("topic", "partition", "offset", "timestamp", "serialized_key_size", "serialized_value_size")


@cython.final
@cython.freelist(64)
@cython.no_gc  # holds a str and numbers only: it can never be part of a cycle
cdef class RecordMetadata:
    """topic, partition, offset (-1 when unknown, acks=0), timestamp (the record's create time, or the broker's
    log-append time when the topic uses that), serialized_key_size and serialized_value_size (-1 for null)."""

    _fields = _FIELDS

    def __init__(self, str topic, int partition, int64_t offset, int64_t timestamp, int serialized_key_size,
                 int serialized_value_size):
        _fill(self, topic, partition, offset, timestamp, serialized_key_size, serialized_value_size)

    cdef tuple as_tuple(self):
        return (self.topic, self.partition, self.offset, self.timestamp, self.serialized_key_size,
                self.serialized_value_size)

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.as_tuple()[index]

    def __iter__(self):
        return iter(self.as_tuple())

    def __contains__(self, value):
        return value in self.as_tuple()

    def __reversed__(self):
        return reversed(self.as_tuple())

    def index(self, value, *args):
        return self.as_tuple().index(value, *args)

    def count(self, value):
        return self.as_tuple().count(value)

    def __eq__(self, other):
        if type(other) is RecordMetadata:
            return self.as_tuple() == (<RecordMetadata>other).as_tuple()
        if isinstance(other, tuple):
            return self.as_tuple() == other
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self):
        return hash(self.as_tuple())

    def __repr__(self):
        return (f"RecordMetadata(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
                f"timestamp={self.timestamp}, serialized_key_size={self.serialized_key_size}, "
                f"serialized_value_size={self.serialized_value_size})")

    def __reduce__(self):
        return RecordMetadata, self.as_tuple()

    def _asdict(self):
        return dict(zip(_FIELDS, self.as_tuple()))

    def _replace(self, **changes):
        values = self._asdict()
        for name in changes:
            if name not in values:
                raise ValueError(f"RecordMetadata has no field {name!r}")
        values.update(changes)
        return RecordMetadata(**values)


cdef inline void _fill(RecordMetadata m, str topic, int partition, int64_t offset, int64_t timestamp, int key_size,
                       int value_size) noexcept:
    m.topic = topic
    m.partition = partition
    m.offset = offset
    m.timestamp = timestamp
    m.serialized_key_size = key_size
    m.serialized_value_size = value_size


cdef RecordMetadata make_metadata(str topic, int partition, int64_t offset, int64_t timestamp, int key_size,
                                  int value_size):
    cdef RecordMetadata m = RecordMetadata.__new__(RecordMetadata)
    _fill(m, topic, partition, offset, timestamp, key_size, value_size)
    return m


_Sequence.register(RecordMetadata)
