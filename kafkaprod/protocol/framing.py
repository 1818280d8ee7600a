"""Frames on the wire: a 4-byte big-endian size, a request or response header, and a body.

Requests are encoded into a list of buffers for ``socket.sendmsg``: the first chunk starts with the size
prefix, and every record batch handed in is one of the chunks itself, never copied. Responses are decoded from
one complete frame (without its size prefix), as :class:`FrameSplitter` yields them from the byte stream.

Produce, sent and answered once per request for every broker, goes through a compiled codec
(:mod:`kafkaprod._native.produce_codec`); every other API, and every Produce body that codec leaves alone, through
the schema codec, which :func:`schema_encode_request` and :func:`schema_decode_response` run on their own.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from kafkaprod._native import produce_codec
from kafkaprod.errors import ErrorCode, ProtocolError
from kafkaprod.protocol import types as t
from kafkaprod.protocol.messages import PRODUCE, REQUEST_HEADER, RESPONSE_HEADER, ApiKey, api_for
from kafkaprod.protocol.schema import Api, Sink, StructCodec, encode_struct

log = logging.getLogger("kafkaprod")

#: Frames larger than this are refused by default: a bigger size prefix is far more likely a desynchronised
#: stream (or not Kafka at all) than a real response, and honouring it would mean buffering that much.
DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024

# An ApiVersions v0 body saying only UNSUPPORTED_VERSION: error code 35 and no API ranges.
_UNSUPPORTED_V0_BODY = b"\x00\x23\x00\x00\x00\x00"
_MAX_FRAME = 0x7FFFFFFF

# Produce, the request the Sender sends all the time, has a compiled codec (kafkaprod._native.produce_codec) for
# the versions both it and the schema describe; the schema codec stays the reference it is tested against, and
# encodes what the compiled encoder leaves to it (it returns None) so that a bad body gets the schema's error.
# Imported directly, as every compiled module is: kafkaprod/__init__.py refuses to load without them (it lists
# this one in _NATIVE_MODULES), so there is no install in which this import fails and the package loads.
_PRODUCE_KEY = int(ApiKey.PRODUCE)
_PRODUCE_COMPILED = range(max(PRODUCE.min_version, produce_codec.MIN_VERSION),
                          min(PRODUCE.max_version, produce_codec.MAX_VERSION) + 1)


class DecodedRequest(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: dict[str, Any]


def _view(frame: Any) -> memoryview:
    mv = frame if isinstance(frame, memoryview) else memoryview(frame)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def _finish(sink: Sink) -> list[Any]:
    size = sink.size() - 4
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds the int32 size limit")
    chunks = sink.finish()
    # The first chunk is the bytearray that began with the 4 placeholder bytes.
    t.INT32.pack_into(chunks[0], 0, size)
    return chunks


def _request_header_codec(api: Api, api_version: int) -> StructCodec:
    hv = api.request_header_version(api_version)
    return REQUEST_HEADER.codec(hv, False, hv >= 2)


def _response_header_codec(api: Api, api_version: int) -> StructCodec:
    hv = api.response_header_version(api_version)
    return RESPONSE_HEADER.codec(hv, False, hv >= 1)


def encode_request(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Mapping[str, Any]
) -> list[Any]:
    """Encode a request frame as a list of buffers, the size prefix at the start of the first.

    ``body`` is a dict keyed by field name; fields the version lacks are ignored, fields with defaults may be
    omitted. ``records`` values (bytes-like, or a list of them) become chunks of the result as they are.
    Raises :class:`~kafkaprod.errors.UnsupportedVersionError` for a version kafkaprod does not speak and
    ``ValueError``/``TypeError`` naming the field for a bad body.
    """
    if api_key == _PRODUCE_KEY and api_version in _PRODUCE_COMPILED:
        chunks = produce_codec.encode_produce_request(api_version, correlation_id, client_id, body)
        if chunks is not None:
            return chunks
    return schema_encode_request(api_key, api_version, correlation_id, client_id, body)


def schema_encode_request(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Mapping[str, Any]
) -> list[Any]:
    """:func:`encode_request` by the schema codec alone, for every API: what it falls back to, and the reference
    that compiled codecs are tested against."""
    api = api_for(api_key)
    codec = api.request_codec(api_version)
    sink = Sink(b"\0\0\0\0")
    header = {"api_key": api_key, "api_version": api_version, "correlation_id": correlation_id,
              "client_id": client_id}
    encode_struct(_request_header_codec(api, api_version), sink, header, "request header")
    encode_struct(codec, sink, body, f"{api.name}Request v{api_version}")
    return _finish(sink)


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Mapping[str, Any]) -> list[Any]:
    """Encode a response frame (what a broker sends); used by tests and test peers."""
    api = api_for(api_key)
    codec = api.response_codec(api_version)
    sink = Sink(b"\0\0\0\0")
    encode_struct(_response_header_codec(api, api_version), sink, {"correlation_id": correlation_id},
                  "response header")
    encode_struct(codec, sink, body, f"{api.name}Response v{api_version}")
    return _finish(sink)


def expects_response(api_key: int, body: Mapping[str, Any]) -> bool:
    """Whether the broker answers this request: it sends nothing back for a Produce request with acks=0."""
    return not (api_key == ApiKey.PRODUCE and body.get("acks") == 0)


def read_correlation_id(frame: Any) -> int:
    """The correlation id of a response frame: its first four bytes, whatever the header version."""
    mv = _view(frame)
    return t.read_int32(mv, 0)[0]


def decode_response_header(api_key: int, api_version: int, frame: Any) -> tuple[int, int]:
    """Decode the response header: ``(correlation_id, offset of the body)``."""
    api = api_for(api_key)
    api.check_version(api_version)
    header, pos = _response_header_codec(api, api_version).decode(_view(frame), 0)
    return header["correlation_id"], pos


def _check_end(mv: memoryview, pos: int, what: str, allow_trailing: bool) -> None:
    if pos == len(mv):
        return
    if not allow_trailing:
        raise ProtocolError(f"{len(mv) - pos} unexpected bytes after the end of {what} ({len(mv)}-byte frame)")
    log.debug("ignoring %d bytes after the end of %s", len(mv) - pos, what)


def decode_response(api_key: int, api_version: int, frame: Any, *, allow_trailing: bool = False) -> dict[str, Any]:
    """Decode a whole response frame (header and body, no size prefix) into the body dict.

    Bytes left over after the body mean the frame was not what the version says -- most likely a response to a
    different request -- so they raise :class:`~kafkaprod.errors.ProtocolError` unless ``allow_trailing``.
    ApiVersions is special: a broker that does not speak the requested version answers UNSUPPORTED_VERSION in a
    v0-shaped body (see :func:`kafkaprod.protocol.versions.api_versions_fallback`), which is decoded as such.
    """
    if api_key == _PRODUCE_KEY and api_version in _PRODUCE_COMPILED:
        return produce_codec.decode_produce_response(api_version, frame, allow_trailing)
    return schema_decode_response(api_key, api_version, frame, allow_trailing=allow_trailing)


def schema_decode_response(api_key: int, api_version: int, frame: Any, *,
                           allow_trailing: bool = False) -> dict[str, Any]:
    """:func:`decode_response` by the schema codec alone, for every API: the reference that compiled codecs are
    tested against."""
    api = api_for(api_key)
    api.check_version(api_version)
    mv = _view(frame)
    _, pos = _response_header_codec(api, api_version).decode(mv, 0)
    what = f"{api.name}Response v{api_version}"
    if api_key == ApiKey.API_VERSIONS and api_version > 0:
        return _decode_api_versions(api, api_version, mv, pos, allow_trailing)
    body, end = api.response_codec(api_version).decode(mv, pos)
    _check_end(mv, end, what, allow_trailing)
    return body


def _decode_api_versions(api: Api, api_version: int, mv: memoryview, pos: int,
                         allow_trailing: bool) -> dict[str, Any]:
    # The error code leads the body in every version, so it can be read before choosing the shape.
    error_code = t.read_int16(mv, pos)[0]
    if error_code == ErrorCode.UNSUPPORTED_VERSION:
        try:
            body, end = api.response_codec(0).decode(mv, pos)
            _check_end(mv, end, "ApiVersionsResponse v0", allow_trailing)
            return body
        except ProtocolError as exc:
            # Not every peer answers in v0 as KIP-511 says: librdkafka's mock cluster (2.x) writes a one-byte
            # array count and no tag sections. The error code is what matters: with no versions listed,
            # api_versions_fallback retries with v0, which every broker answers (librdkafka's own client does the
            # same). Refusing the frame instead would drop the connection and meet the same answer on reconnect.
            log.debug("ApiVersions v%d refused with a body that is not v0 (%s); retrying with v0 is due",
                      api_version, exc)
            return api.response_codec(0).decode(memoryview(_UNSUPPORTED_V0_BODY), 0)[0]
    try:
        body, end = api.response_codec(api_version).decode(mv, pos)
        _check_end(mv, end, f"ApiVersionsResponse v{api_version}", allow_trailing)
        return body
    except ProtocolError as first:
        # Like the Java client: a body that does not parse as the version asked may be an older broker's v0.
        try:
            body, end = api.response_codec(0).decode(mv, pos)
            _check_end(mv, end, "ApiVersionsResponse v0", allow_trailing)
        except ProtocolError:
            raise first from None
        log.debug("ApiVersionsResponse v%d did not parse (%s); read it as v0", api_version, first)
        return body


def decode_request(frame: Any) -> DecodedRequest:
    """Decode a whole request frame (no size prefix); what a broker does, used by tests and test peers."""
    mv = _view(frame)
    api_key, pos = t.read_int16(mv, 0)
    api_version = t.read_int16(mv, pos)[0]
    try:
        api = api_for(api_key)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    api.check_version(api_version)
    header, pos = _request_header_codec(api, api_version).decode(mv, 0)
    body, end = api.request_codec(api_version).decode(mv, pos)
    _check_end(mv, end, f"{api.name}Request v{api_version}", False)
    return DecodedRequest(api_key, api_version, header["correlation_id"], header["client_id"], body)


class FrameSplitter:
    """Cuts a byte stream into frames: feed it what ``recv`` returned, get back the frames now complete.

    A size prefix below 0 or above ``max_frame_size`` raises :class:`~kafkaprod.errors.ProtocolError` at once
    (before anything is buffered for it); the stream cannot be trusted afterwards.
    """

    __slots__ = ("max_frame_size", "_buf", "_need")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError(f"max_frame_size must be >= 0, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._need = 4  # bytes the buffer must hold before the next frame can be cut

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data: Any) -> list[bytes]:
        buf = self._buf
        buf += data
        if len(buf) < self._need:
            return []
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        with memoryview(buf) as mv:
            while n - pos >= 4:
                size = t.INT32.unpack_from(mv, pos)[0]
                if size < 0 or size > self.max_frame_size:
                    raise ProtocolError(
                        f"frame size prefix {size} is outside 0..{self.max_frame_size} "
                        f"(max_frame_size); the stream is corrupt or not Kafka"
                    )
                end = pos + 4 + size
                if end > n:
                    break
                frames.append(bytes(mv[pos + 4:end]))
                pos = end
        if pos:
            del buf[:pos]
        self._need = 4 if len(buf) < 4 else 4 + t.INT32.unpack_from(buf, 0)[0]
        return frames
