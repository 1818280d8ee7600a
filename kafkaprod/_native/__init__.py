"""Compiled kernels of the send path: murmur2, crc32c, varint, records (MemoryRecordsBuilder), buffer_pool."""
