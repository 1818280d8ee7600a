"""Messages described as data, and the one encoder/decoder that walks the description.

A message is a :class:`Struct` of :class:`Field` s; each field says in which versions it exists, in which it may
be null, its default, and (for tagged fields) its tag. :meth:`Struct.codec` compiles the description for one
version into a :class:`StructCodec` -- a flat list of small read/write steps, with runs of fixed-width fields
packed by a single :mod:`struct` call -- and caches it, so the description is walked once per version, not
once per request.

Values are plain dicts keyed by field name; arrays are lists. Decoded dicts carry every field the schema knows:
fields the version does not have hold their default, so callers need not care which version was spoken.
Records (``records`` type) are encoded without copying: the buffer, or each buffer of a list, becomes its own
chunk of the output.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from kafkaprod.errors import ProtocolError, UnsupportedVersionError
from kafkaprod.protocol import types as t

#: Marks a field that has no default: encoding a body without it is an error.
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

_MAX_VERSION = 0x7FFF


def parse_versions(spec: str) -> tuple[int, int] | None:
    """``"3+"`` -> (3, max), ``"8-10"`` -> (8, 10), ``"5"`` -> (5, 5), ``"none"`` -> None."""
    spec = spec.strip()
    if spec == "none":
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), _MAX_VERSION
    if "-" in spec:
        lo, hi = spec.split("-")
        return int(lo), int(hi)
    return int(spec), int(spec)


def _in(span: tuple[int, int] | None, version: int) -> bool:
    return span is not None and span[0] <= version <= span[1]


class Array:
    """An array of ``item`` (a primitive type name or a :class:`Struct`)."""

    __slots__ = ("item",)

    def __init__(self, item: str | Struct) -> None:
        self.item = item

    def __repr__(self) -> str:
        return f"Array({self.item!r})"


class Field:
    """One field of a struct.

    ``type`` is a primitive name (``"int32"``, ``"string"``, ``"records"``, ...), an :class:`Array` or a
    :class:`Struct`. ``versions``/``nullable`` use Kafka's notation (``"3+"``, ``"8-10"``, ``"none"``). A field
    with a ``tag`` is a tagged field in every flexible version it exists in.
    """

    __slots__ = ("name", "type", "versions", "nullable", "default", "tag")

    def __init__(
        self,
        name: str,
        type: str | Array | Struct,  # noqa: A002 - mirrors the schema vocabulary
        versions: str,
        *,
        nullable: str = "none",
        default: Any = REQUIRED,
        tag: int | None = None,
    ) -> None:
        if isinstance(type, str) and type not in _PRIMITIVES:
            raise ValueError(f"field {name!r}: unknown type {type!r}")
        self.name = name
        self.type = type
        self.versions = parse_versions(versions)
        self.nullable = parse_versions(nullable)
        self.default = default
        self.tag = tag

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r})"

    def exists_in(self, version: int) -> bool:
        return _in(self.versions, version)

    def nullable_in(self, version: int) -> bool:
        return _in(self.nullable, version)

    def fill_value(self) -> Any:
        """The value a decoded dict holds when the wire did not carry this field."""
        if self.default is not REQUIRED:
            return self.default
        return _implicit_default(self.type)


def _implicit_default(ftype: str | Array | Struct) -> Any:
    # Kafka's generated code gives every field a zero value; these are its Python spellings.
    if isinstance(ftype, Array):
        return []
    if isinstance(ftype, Struct):
        return None
    return _ZERO[ftype]


_ZERO: dict[str, Any] = {
    "bool": False, "int8": 0, "int16": 0, "uint16": 0, "int32": 0, "uint32": 0, "int64": 0,
    "float64": 0.0, "string": "", "bytes": b"", "records": None, "uuid": t.ZERO_UUID,
}
_PRIMITIVES = frozenset(_ZERO)


class Struct:
    """A named, ordered list of fields; compiles itself per (version, compact, tagged)."""

    def __init__(self, name: str, fields: list[Field]) -> None:
        seen: set[str] = set()
        for f in fields:
            if f.name in seen:
                raise ValueError(f"{name}: duplicate field {f.name!r}")
            seen.add(f.name)
        self.name = name
        self.fields = tuple(fields)
        self._codecs: dict[tuple[int, bool, bool], StructCodec] = {}

    def __repr__(self) -> str:
        return f"Struct({self.name!r})"

    def codec(self, version: int, compact: bool, tagged: bool) -> StructCodec:
        """The compiled codec of this struct for one version (``compact``: compact lengths; ``tagged``: a
        tagged-field section ends the struct -- both are true for flexible message versions)."""
        key = (version, compact, tagged)
        c = self._codecs.get(key)
        if c is None:
            c = self._codecs[key] = StructCodec(self, version, compact, tagged)
        return c


# ---- encoding output -------------------------------------------------------------------------------------------

class Sink:
    """Where encoders write: a list of chunks whose last one is the growing bytearray ``buf``.

    Large payloads (record batches) are attached as their own chunks instead of being copied into ``buf``.
    """

    __slots__ = ("chunks", "buf", "_done")

    def __init__(self, prefix: bytes = b"") -> None:
        self.chunks: list[Any] = []  # bytearrays, and attached buffers as given
        self.buf = bytearray(prefix)
        self._done = 0  # bytes in self.chunks

    def attach(self, data: Any, size: int) -> None:
        if self.buf:
            self.chunks.append(self.buf)
            self._done += len(self.buf)
            self.buf = bytearray()
        self.chunks.append(data)
        self._done += size

    def size(self) -> int:
        return self._done + len(self.buf)

    def finish(self) -> list[Any]:
        """The chunks, for ``socket.sendmsg``; the sink must not be used afterwards."""
        if self.buf or not self.chunks:
            self.chunks.append(self.buf)
        return self.chunks

    def joined(self) -> bytes:
        return b"".join(self.chunks) + self.buf


class _EncodeFailure(ValueError):
    """Carries the path of the bad field up through nested structs; turned into a plain ValueError on top."""

    def __init__(self, path: list[str], reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _fail(name: str, exc: Exception) -> _EncodeFailure:
    if isinstance(exc, _EncodeFailure):
        exc.path.append(name)
        return exc
    return _EncodeFailure([name], f"{exc}")


# ---- type codecs ------------------------------------------------------------------------------------------------
# A type codec is (read, write, min_size, fixed_format). read(buf, pos) -> (value, pos); write(sink, value).
# fixed_format is set for fixed-width primitives so the struct codec can merge runs of them. The closures are
# specialised per version at compile time so that the per-request work is as few Python calls as possible.

_Reader = Callable[[memoryview, int], tuple[Any, int]]
_Writer = Callable[[Sink, Any], None]
_TypeCodec = tuple[_Reader, _Writer, int, "str | None"]
_ENCODE_ERRORS = (ValueError, TypeError, OverflowError, struct.error)  # _EncodeFailure is a ValueError


def _buf_writer(fn: Callable[[bytearray, Any], None]) -> _Writer:
    def write(sink: Sink, value: Any) -> None:
        fn(sink.buf, value)
    return write


def _fixed_writer(st: struct.Struct) -> _Writer:
    pack = st.pack

    def write(sink: Sink, value: Any) -> None:
        sink.buf += pack(value)
    return write


_FIXED_READERS = {
    "bool": t.read_bool, "int8": t.read_int8, "int16": t.read_int16, "uint16": t.read_uint16,
    "int32": t.read_int32, "uint32": t.read_uint32, "int64": t.read_int64, "float64": t.read_float64,
}
_FIXED_STRUCTS = {name: struct.Struct(">" + fmt) for name, fmt in t.FIXED_FORMATS.items()}

# (compact, nullable) -> reader / writer
_STRING_READERS = {
    (False, False): t.read_string, (False, True): t.read_nullable_string,
    (True, False): t.read_compact_string, (True, True): t.read_compact_nullable_string,
}
_STRING_WRITERS = {
    (False, False): t.write_string, (False, True): t.write_nullable_string,
    (True, False): t.write_compact_string, (True, True): t.write_compact_nullable_string,
}
_BYTES_READERS = {
    (False, False): t.read_bytes, (False, True): t.read_nullable_bytes,
    (True, False): t.read_compact_bytes, (True, True): t.read_compact_nullable_bytes,
}
_BYTES_WRITERS = {
    (False, False): t.write_bytes, (False, True): t.write_nullable_bytes,
    (True, False): t.write_compact_bytes, (True, True): t.write_compact_nullable_bytes,
}
_BYTES_TYPES = (bytes, bytearray)


def _records_writer(compact: bool, nullable: bool) -> _Writer:
    pack_i32 = t.INT32.pack
    null = b"\x00" if compact else b"\xff\xff\xff\xff"

    def write_length(sink: Sink, total: int) -> None:
        if total > 0x7FFFFFFE:
            raise ValueError(f"records of {total} bytes exceed the int32 limit")
        if compact:
            t.write_uvarint(sink.buf, total + 1)
        else:
            sink.buf += pack_i32(total)

    def write(sink: Sink, value: Any) -> None:
        if value is None:
            if not nullable:
                raise ValueError("null given for non-nullable records")
            sink.buf += null
            return
        if not isinstance(value, (list, tuple)):
            size = len(value) if type(value) in _BYTES_TYPES else memoryview(value).nbytes
            write_length(sink, size)
            if size:
                sink.attach(value, size)
            return
        sizes = [t.buffer_size(p) for p in value]
        write_length(sink, sum(sizes))
        for part, size in zip(value, sizes):
            if size:
                sink.attach(part, size)
    return write


def _primitive_codec(name: str, compact: bool, nullable: bool) -> _TypeCodec:
    if name in t.FIXED_FORMATS:
        st = _FIXED_STRUCTS[name]
        return _FIXED_READERS[name], _fixed_writer(st), st.size, t.FIXED_FORMATS[name]
    if name == "string":
        return (_STRING_READERS[compact, nullable], _buf_writer(_STRING_WRITERS[compact, nullable]),
                1 if compact else 2, None)
    if name == "bytes":
        return (_BYTES_READERS[compact, nullable], _buf_writer(_BYTES_WRITERS[compact, nullable]),
                1 if compact else 4, None)
    if name == "records":
        # Decoded like (nullable) bytes; encoded by reference.
        return _BYTES_READERS[compact, nullable], _records_writer(compact, nullable), 1 if compact else 4, None
    if name == "uuid":
        return t.read_uuid, _buf_writer(t.write_uuid), 16, None
    raise AssertionError(name)  # Field() already refused unknown names


# Arrays of fixed-width items (replica lists) are short: unpack them with one precompiled struct per count.
_SMALL_ARRAY = 16


def _array_codec(item: str | Struct, version: int, compact: bool, tagged: bool, nullable: bool) -> _TypeCodec:
    item_read: _Reader
    item_write: _Writer
    fmt: str | None
    if isinstance(item, Struct):
        sc = item.codec(version, compact, tagged)
        item_read, item_write, item_min, fmt = sc.decode, sc.encode, sc.min_size, None
    else:
        item_read, item_write, item_min, fmt = _primitive_codec(item, compact, False)
    # An element always takes at least one byte on the wire; with a zero here a count could not be bounded.
    item_min = max(1, item_min)
    read_count = t.read_array_count

    def null_or_fail(pos: int, start: int) -> tuple[None, int]:
        if not nullable:
            raise ProtocolError(f"null in a non-nullable array at offset {start}")
        return None, pos

    if fmt is not None:
        st = struct.Struct(">" + fmt)
        iter_unpack = st.iter_unpack
        small = [struct.Struct(f">{n}{fmt}").unpack_from for n in range(_SMALL_ARRAY + 1)]

        def read(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
            start = pos
            count, pos = read_count(buf, pos, compact, item_min)
            if count < 0:
                return null_or_fail(pos, start)
            end = pos + count * item_min
            if count <= _SMALL_ARRAY:
                return list(small[count](buf, pos)), end
            return [v for (v,) in iter_unpack(buf[pos:end])], end
    else:
        def read(buf: memoryview, pos: int) -> tuple[list[Any] | None, int]:
            start = pos
            count, pos = read_count(buf, pos, compact, item_min)
            if count < 0:
                return null_or_fail(pos, start)
            items: list[Any] = []
            append = items.append
            for _ in range(count):
                v, pos = item_read(buf, pos)
                append(v)
            return items, pos

    null = b"\x00" if compact else b"\xff\xff\xff\xff"
    pack_i32 = t.INT32.pack

    def write(sink: Sink, value: Any) -> None:
        if value is None:
            if not nullable:
                raise ValueError("null given for a non-nullable array")
            sink.buf += null
            return
        if isinstance(value, (str, bytes, Mapping)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        n = len(value)
        if compact:
            t.write_uvarint(sink.buf, n + 1)
        else:
            sink.buf += pack_i32(n)
        if fmt is not None:
            sink.buf += struct.pack(f">{n}{fmt}", *value)
            return
        for i, item in enumerate(value):
            try:
                item_write(sink, item)
            except _ENCODE_ERRORS as exc:
                raise _fail(f"[{i}]", exc) from None

    return read, write, 1 if compact else 4, None


def _type_codec(ftype: str | Array | Struct, version: int, compact: bool, tagged: bool, nullable: bool) -> _TypeCodec:
    if isinstance(ftype, Array):
        return _array_codec(ftype.item, version, compact, tagged, nullable)
    if isinstance(ftype, Struct):
        sc = ftype.codec(version, compact, tagged)

        def write(sink: Sink, value: Any) -> None:
            if value is None:
                raise ValueError("null given for a struct")
            sc.encode(sink, value)
        return sc.decode, write, sc.min_size, None
    return _primitive_codec(ftype, compact, nullable)


# ---- struct codec -----------------------------------------------------------------------------------------------

# A step of a StructCodec: one field -- (name, reader or writer, default, None) -- or a run of fixed-width fields
# packed by one struct call -- (names, struct.Struct, defaults, the fields).
_Step = tuple[Any, Any, Any, "tuple[Field, ...] | None"]


def _fixed_type(f: Field) -> str:
    """The primitive type name of a fixed-width field, the only kind packed into runs."""
    if not isinstance(f.type, str):
        raise TypeError(f"field {f.name!r} of type {f.type!r} is not a fixed-width primitive")
    return f.type


class StructCodec:
    """One struct compiled for one version: ``decode(buf, pos) -> (dict, pos)`` and ``encode(sink, dict)``.

    Both walk a flat list of steps. A step is either one field -- ``(name, reader_or_writer, default, None)`` --
    or a run of consecutive fixed-width fields packed by one struct call -- ``(names, struct, defaults, fields)``.
    """

    def __init__(self, struct_: Struct, version: int, compact: bool, tagged: bool) -> None:
        self.name = struct_.name
        self.version = version
        self.fields = [f for f in struct_.fields if f.exists_in(version)]
        self._tagged = tagged
        self.min_size = 1 if tagged else 0

        # Values every decoded dict starts from: defaults of fields absent from this version and of tagged
        # fields (the wire carries those only when they differ from the default). Lists must be fresh each time.
        self._fill_const: dict[str, Any] = {}
        self._fill_lists: list[str] = []
        for f in struct_.fields:
            if f in self.fields and not (tagged and f.tag is not None):
                continue
            value = f.fill_value()
            if isinstance(value, list):
                self._fill_lists.append(f.name)
            else:
                self._fill_const[f.name] = value

        self._dec_steps: list[_Step] = []
        self._enc_steps: list[_Step] = []
        self._tag_readers: dict[int, tuple[str, _Reader]] = {}
        self._tag_writers: list[tuple[int, str, Any, _Writer]] = []

        run: list[Field] = []  # consecutive fixed-width fields, merged into one struct call
        for f in self.fields:
            if f.tag is not None and not tagged:
                raise ValueError(f"{self.name} v{version}: tagged field {f.name!r} in a version without tags")
            read, write, min_size, fmt = _type_codec(f.type, version, compact, tagged, f.nullable_in(version))
            if f.tag is not None:
                self._tag_readers[f.tag] = (f.name, read)
                self._tag_writers.append((f.tag, f.name, f.fill_value(), write))
                continue
            self.min_size += min_size
            if fmt is not None:
                run.append(f)
                continue
            self._flush_run(run)
            run = []
            self._dec_steps.append((f.name, read, None, None))
            self._enc_steps.append((f.name, write, f.default, None))
        self._flush_run(run)
        self._tag_writers.sort(key=lambda w: w[0])

    def _flush_run(self, run: list[Field]) -> None:
        if not run:
            return
        if len(run) == 1:
            f = run[0]
            self._dec_steps.append((f.name, _FIXED_READERS[_fixed_type(f)], None, None))
            self._enc_steps.append((f.name, _fixed_writer(_FIXED_STRUCTS[_fixed_type(f)]), f.default, None))
            return
        st = struct.Struct(">" + "".join(t.FIXED_FORMATS[_fixed_type(f)] for f in run))
        names = tuple(f.name for f in run)
        self._dec_steps.append((names, st, None, tuple(run)))
        self._enc_steps.append((names, st, tuple(f.default for f in run), tuple(run)))

    def decode(self, buf: memoryview, pos: int) -> tuple[dict[str, Any], int]:
        d = dict(self._fill_const) if self._fill_const else {}
        for name in self._fill_lists:
            d[name] = []
        n = len(buf)
        for name, read, _, run in self._dec_steps:
            if run is None:
                d[name], pos = read(buf, pos)
            else:
                end = pos + read.size
                if end > n:
                    raise t.truncated("fields " + ", ".join(name), pos, read.size, buf)
                d.update(zip(name, read.unpack_from(buf, pos)))
                pos = end
        if self._tagged:
            if pos < n and buf[pos] == 0:  # an empty tag section, by far the common case
                pos += 1
            else:
                pos = self._decode_tags(buf, pos, d)
        return d, pos

    def _decode_tags(self, buf: memoryview, pos: int, d: dict[str, Any]) -> int:
        start = pos
        count, pos = t.read_uvarint(buf, pos)
        if count == 0:
            return pos
        # Each tagged field takes at least two bytes (tag and size).
        if count * 2 > len(buf) - pos:
            raise ProtocolError(f"tagged field count {count} at offset {start} cannot fit in the frame")
        readers = self._tag_readers
        for _ in range(count):
            tag, pos = t.read_uvarint(buf, pos)
            size, pos = t.read_uvarint(buf, pos)
            end = pos + size
            if end > len(buf):
                raise ProtocolError(f"tagged field {tag} of {size} bytes at offset {pos} runs past the frame end")
            entry = readers.get(tag)
            if entry is not None:
                name, read = entry
                # Read within the declared size only, so a bad field cannot consume what follows it.
                value, used = read(buf[:end], pos)
                if used != end:
                    raise ProtocolError(
                        f"tagged field {name!r} (tag {tag}) at offset {pos} declared {size} bytes "
                        f"but its value took {used - pos}"
                    )
                d[name] = value
            pos = end  # unknown tags: skipped, as Kafka's forward compatibility requires
        return pos

    def encode(self, sink: Sink, value: Mapping[str, Any]) -> None:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise TypeError(f"{self.name} must be a dict, got {type(value).__name__}")
        get = value.get
        for name, write, default, run in self._enc_steps:
            if run is None:
                v = get(name, default)
                if v is REQUIRED:
                    raise _EncodeFailure([name], "required but missing")
                try:
                    write(sink, v)
                except _ENCODE_ERRORS as exc:
                    raise _fail(name, exc) from None
            else:
                vals = [get(n, dflt) for n, dflt in zip(name, default)]
                try:
                    if REQUIRED in vals:
                        raise ValueError
                    sink.buf += write.pack(*vals)
                except (ValueError, TypeError, OverflowError, struct.error):
                    raise _run_failure(run, vals) from None
        if self._tagged:
            self._encode_tags(sink, value)

    def _encode_tags(self, sink: Sink, value: Mapping[str, Any]) -> None:
        if not self._tag_writers:
            sink.buf.append(0)
            return
        present = []
        for tag, name, default, write in self._tag_writers:
            v = value.get(name, default)
            if v is None or v == default:
                continue  # Kafka writes a tagged field only when it differs from its default
            sub = Sink()
            try:
                write(sub, v)
            except _ENCODE_ERRORS as exc:
                raise _fail(name, exc) from None
            present.append((tag, sub.joined()))
        t.write_uvarint(sink.buf, len(present))
        for tag, data in present:
            t.write_uvarint(sink.buf, tag)
            t.write_uvarint(sink.buf, len(data))
            sink.buf += data


def _run_failure(run: tuple[Field, ...], vals: list[Any]) -> _EncodeFailure:
    """Name the field of a packed run that could not be encoded (error path only)."""
    for f, v in zip(run, vals):
        if v is REQUIRED:
            return _EncodeFailure([f.name], "required but missing")
        try:
            _FIXED_STRUCTS[_fixed_type(f)].pack(v)
        except (struct.error, TypeError, OverflowError) as exc:
            return _fail(f.name, exc)
    return _EncodeFailure([run[0].name], "could not be encoded")


# ---- messages ----------------------------------------------------------------------------------------------------

class Api:
    """One Kafka API: its key, the versions kafkaprod speaks, where flexible versions start, and the request and
    response schemas."""

    def __init__(
        self,
        name: str,
        key: int,
        versions: tuple[int, int],
        flexible_from: int,
        request: list[Field],
        response: list[Field],
        *,
        response_header_always_v0: bool = False,
    ) -> None:
        self.name = name
        self.key = key
        self.min_version, self.max_version = versions
        self.flexible_from = flexible_from
        self.request = Struct(name + "Request", request)
        self.response = Struct(name + "Response", response)
        self.response_header_always_v0 = response_header_always_v0

    def __repr__(self) -> str:
        return f"Api({self.name}, key={self.key}, versions={self.min_version}-{self.max_version})"

    def check_version(self, version: int) -> None:
        if not self.min_version <= version <= self.max_version:
            raise UnsupportedVersionError(
                f"{self.name} v{version} is not supported by kafkaprod "
                f"(it speaks v{self.min_version}-v{self.max_version})"
            )

    def is_flexible(self, version: int) -> bool:
        return version >= self.flexible_from

    def request_header_version(self, version: int) -> int:
        return 2 if self.is_flexible(version) else 1

    def response_header_version(self, version: int) -> int:
        if self.response_header_always_v0:
            return 0
        return 1 if self.is_flexible(version) else 0

    def request_codec(self, version: int) -> StructCodec:
        self.check_version(version)
        flexible = self.is_flexible(version)
        return self.request.codec(version, flexible, flexible)

    def response_codec(self, version: int) -> StructCodec:
        self.check_version(version)
        flexible = self.is_flexible(version)
        return self.response.codec(version, flexible, flexible)


def encode_struct(codec: StructCodec, sink: Sink, value: Mapping[str, Any], what: str) -> None:
    """Encode ``value`` with ``codec``, turning a bad field anywhere inside into a ValueError that names it."""
    try:
        codec.encode(sink, value)
    except _EncodeFailure as exc:
        path = ".".join(reversed(exc.path)).replace(".[", "[")
        raise ValueError(f"{what}: field {path}: {exc.reason}") from None
