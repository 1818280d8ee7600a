"""Kafka's wire protocol for the producer: schemas as data, one codec, framing and version negotiation.

Bodies are plain dicts keyed by snake_case field names. The modules: :mod:`.types` (primitives),
:mod:`.schema` (the description language and its codec), :mod:`.messages` (the APIs a producer speaks),
:mod:`.framing` (size prefix, headers, stream splitting), :mod:`.versions` (negotiation).
"""
from __future__ import annotations

from kafkaprod.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    DecodedRequest,
    FrameSplitter,
    decode_request,
    decode_response,
    decode_response_header,
    encode_request,
    encode_response,
    expects_response,
    read_correlation_id,
)
from kafkaprod.protocol.messages import APIS, SUPPORTED_VERSIONS, ApiKey, api_for
from kafkaprod.protocol.versions import api_versions_fallback, negotiate_version, negotiate_versions

__all__ = [
    "APIS",
    "DEFAULT_MAX_FRAME_SIZE",
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "DecodedRequest",
    "FrameSplitter",
    "api_for",
    "api_versions_fallback",
    "decode_request",
    "decode_response",
    "decode_response_header",
    "encode_request",
    "encode_response",
    "expects_response",
    "negotiate_version",
    "negotiate_versions",
    "read_correlation_id",
]
