"""Batch compression: the codec table, and each codec's compressor and decompressor, in one place.

A codec compresses the records section of a RecordBatch v2 (everything after the 61-byte header) and is named
by its id in bits 0-2 of the batch attributes. This is plain Python: a batch is compressed once, when it is
closed, and each codec library releases the GIL while it works, so the caller threads keep running.
"""
from __future__ import annotations

import gzip
import operator
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from enum import IntEnum
from types import ModuleType
from typing import Any

from kafkaprod.errors import ProtocolError

# The codec libraries: each one None when it is not installed (check_available() names the package to install).
# python-snappy and lz4 have no type information (mypy's ignore_missing_imports): those names are Any already.
_cramjam: ModuleType | None
_zstd: ModuleType | None
try:
    import cramjam as _cramjam
except ImportError:  # pragma: no cover - python-snappy < 0.7 does not bring cramjam
    _cramjam = None
try:
    import snappy as _snappy
except ImportError:  # pragma: no cover
    _snappy = None
try:
    import lz4.frame as _lz4_frame
except ImportError:  # pragma: no cover
    _lz4_frame = None
try:
    import zstandard as _zstd
except ImportError:  # pragma: no cover
    _zstd = None


class Codec(IntEnum):
    """The codecs: id as carried in bits 0-2 of the batch attributes, and the PyPI package each one needs.

    The lower-case member name is the ``compression_type`` setting.
    """

    package: str | None

    NONE = 0, None
    GZIP = 1, None  # zlib, in the standard library
    SNAPPY = 2, "python-snappy"  # which brings cramjam (since 0.7); either one will do
    LZ4 = 3, "lz4"
    ZSTD = 4, "zstandard"

    # package has a default only for the type checker: Codec(codec_id) -- a lookup by value, which does not call
    # this __new__ -- is then a valid call to it; every member above gives its package.
    def __new__(cls, codec_id: int, package: str | None = None) -> Codec:
        member = int.__new__(cls, codec_id)
        member._value_ = codec_id
        member.package = package
        return member


#: ``compression_type`` setting names to codec ids, in id order.
COMPRESSION_TYPES: dict[str, int] = {codec.name.lower(): codec.value for codec in Codec}
#: Codec ids to setting names (the inverse of COMPRESSION_TYPES).
CODEC_NAMES: dict[int, str] = {v: k for k, v in COMPRESSION_TYPES.items()}
# The ids as plain ints for the once-per-batch path, where reading an enum member (Codec.LZ4) costs more than
# the compare.
_NONE, _SNAPPY, _LZ4, _ZSTD = Codec.NONE.value, Codec.SNAPPY.value, Codec.LZ4.value, Codec.ZSTD.value


def parse_compression_type(value: Any) -> int:
    """The codec id of a ``compression_type`` setting: a name ("none", "gzip", "snappy", "lz4", "zstd"),
    None (no compression) or an id 0-4. Raises ValueError naming the bad value."""
    if value is None:
        return _NONE
    if isinstance(value, str):
        codec = COMPRESSION_TYPES.get(value.strip().lower())
        if codec is None:
            raise ValueError(
                f"unknown compression_type {value!r}; expected one of {', '.join(COMPRESSION_TYPES)}")
        return codec
    if isinstance(value, int) and not isinstance(value, bool) and value in CODEC_NAMES:
        return int(value)
    raise ValueError(
        f"unknown compression_type {value!r}; expected one of {', '.join(COMPRESSION_TYPES)} (or ids 0-4)")


def compression_name(codec: int) -> str:
    """The setting name of a codec id (the inverse of parse_compression_type)."""
    codec = operator.index(codec)
    try:
        return CODEC_NAMES[codec]
    except KeyError:
        raise ValueError(f"unknown compression codec id {codec}") from None


def check_available(codec: int) -> None:
    """Raises ImportError naming the package a codec needs when it is not installed."""
    if codec == _SNAPPY:
        available = _cramjam is not None or _snappy is not None
    elif codec == _LZ4:
        available = _lz4_frame is not None
    elif codec == _ZSTD:
        available = _zstd is not None
    else:
        return
    if not available:
        raise _missing(codec)


def _missing(codec: int) -> ImportError:
    return ImportError(f"compression_type {CODEC_NAMES[codec]!r} needs the {Codec(codec).package} package, "
                       "which is not installed")


def _library(module: ModuleType | None, codec: int) -> ModuleType:
    """A typed codec library that may be None, as a module: compress() and decompress() call check_available()
    first, so the ImportError here is only for a library that is missing all the same."""
    if module is None:
        raise _missing(codec)
    return module


# ---------------------------------------------------------------------------------------------------------
# Compressors. Each takes the records section (any contiguous buffer) and returns a bytes-like object.

def _byte_view(data: Any) -> memoryview:
    view = data if type(data) is memoryview else memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


_GZIP_WBITS = 31  # zlib's "gzip container" mode


def _gzip(level: int, src: Any) -> Any:
    if level < 0:
        level = 6  # java.util.zip's default level, which Kafka's gzip uses unless configured
    # zlib.compress() takes wbits since Python 3.11 (spelled out here, not kept in a flag, for the type checker).
    if sys.version_info >= (3, 11):
        return zlib.compress(src, level, _GZIP_WBITS)
    c = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)  # pragma: no cover - Python 3.10
    return c.compress(src) + c.flush()  # pragma: no cover


# xerial framing: a 16-byte header, then (int32 length, snappy block) chunks. Java's producer writes 32 KiB
# chunks, but every reader (snappy-java's SnappyInputStream, librdkafka, kafka-python) takes a chunk of any
# length. Each chunk is one call into the compressor, and each call costs the Sender a GIL round trip -- up to a
# switch interval (5 ms) when a caller thread is busy -- so a batch is compressed in chunks of up to 1 MiB.
_XERIAL_HEADER = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
_XERIAL_MAGIC = _XERIAL_HEADER[:8]
_SNAPPY_CHUNK = 1 << 20
_CHUNK_LENGTH = struct.Struct(">i")


def _snappy_xerial(level: int, src: Any) -> Any:
    """xerial-framed snappy, the framing Java's producer writes and every Kafka reader (Java, librdkafka,
    kafka-python) accepts; the official snappy framing format (python-snappy's StreamCompressor) is not.
    Snappy has no levels."""
    src = _byte_view(src)
    n = len(src)
    chunks = -(-n // _SNAPPY_CHUNK)
    # Snappy's worst case is 32 + n + n / 6 bytes per block.
    out = bytearray(16 + chunks * 4 + n + n // 6 + 32 * chunks)
    out_view = memoryview(out)
    out_view[:16] = _XERIAL_HEADER
    pos = 16
    for start in range(0, n, _SNAPPY_CHUNK):
        block = src[start:start + _SNAPPY_CHUNK]
        if _cramjam is not None:
            clen = _cramjam.snappy.compress_raw_into(block, out_view[pos + 4:])
        else:
            compressed = _snappy.compress(bytes(block))
            clen = len(compressed)
            out_view[pos + 4:pos + 4 + clen] = compressed
        _CHUNK_LENGTH.pack_into(out, pos, clen)
        pos += 4 + clen
    return out_view[:pos]


def _lz4(level: int, src: Any) -> Any:
    # Java's reader decodes each block on its own and rejects linked blocks ("Dependent block stream is
    # unsupported"); it also allows only 64 KiB-4 MiB block sizes. 64 KiB blocks are what Java writes.
    return _lz4_frame.compress(
        src, compression_level=level if level >= 0 else 0, block_size=_lz4_frame.BLOCKSIZE_MAX64KB,
        block_linked=False, content_checksum=False, store_size=False)


_zstd_local = threading.local()


def _zstd_compress(level: int, src: Any) -> Any:
    if level < 0:
        level = 3  # zstd's own default, which Kafka uses unless configured
    # Compressor objects keep their working memory between calls but must not be shared between threads.
    cache = getattr(_zstd_local, "compressors", None)
    if cache is None:
        cache = _zstd_local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = _library(_zstd, _ZSTD).ZstdCompressor(level=level)
    return c.compress(src)


_COMPRESSORS: dict[int, Callable[[int, Any], Any]] = {Codec.GZIP.value: _gzip, Codec.SNAPPY.value: _snappy_xerial,
                                                      Codec.LZ4.value: _lz4, Codec.ZSTD.value: _zstd_compress}


def compress(codec: int, level: int, data: Any) -> Any:
    """The records section compressed with codec, in the format Kafka's readers expect (gzip container,
    xerial-framed snappy, lz4 frame of independent 64 KiB blocks, zstd frame); level -1 is the codec's default.

    Returns a bytes-like object (bytes, or a memoryview of a bytearray); data itself for codec none.
    """
    compressor = _COMPRESSORS.get(codec)
    if compressor is None:
        if codec == _NONE:
            return data
        raise ValueError(f"unknown compression codec id {codec}")
    check_available(codec)
    return compressor(level, data)


# ---------------------------------------------------------------------------------------------------------
# Decompressors: the rare path (a batch split after MESSAGE_TOO_LARGE), and what tests read batches back with.

def _snappy_block(block: Any) -> Any:
    if _cramjam is not None:
        return _cramjam.snappy.decompress_raw(block)
    return _snappy.uncompress(bytes(block))


def _snappy_decompress(data: memoryview) -> bytes:
    if data[:8] != _XERIAL_MAGIC:  # a bare snappy block
        return bytes(_snappy_block(data))
    out, pos = bytearray(), 16
    while pos < len(data):
        (size,) = _CHUNK_LENGTH.unpack_from(data, pos)
        out += _snappy_block(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return bytes(out)


_DECOMPRESSORS: dict[int, Callable[[memoryview], bytes]] = {
    Codec.NONE.value: bytes,
    Codec.GZIP.value: gzip.decompress,
    Codec.SNAPPY.value: _snappy_decompress,
    Codec.LZ4.value: lambda data: _lz4_frame.decompress(data),
    # A stream decompressor: a frame written without its content size (as streaming compressors write) reads too.
    Codec.ZSTD.value: lambda data: _library(_zstd, _ZSTD).ZstdDecompressor().decompressobj().decompress(data),
}


def decompress(codec: int, data: Any) -> bytes:
    """The records section of a batch compressed with codec (either snappy framing: xerial or a bare block).

    Raises ProtocolError for a codec id no batch may carry, ImportError when the codec's package is missing.
    """
    decompressor = _DECOMPRESSORS.get(codec)
    if decompressor is None:
        raise ProtocolError(f"unknown compression codec {codec} in a record batch")
    check_available(codec)
    return decompressor(_byte_view(data))
