"""ProduceRequest encoding and ProduceResponse decoding in C, for the Sender's I/O thread; the schema codec in
kafkaprod.protocol stays the reference these are tested against (see produce_codec.pyx)."""
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_VERSION", "MIN_VERSION", "decode_produce_response", "encode_produce_request"]

MIN_VERSION: int
MAX_VERSION: int

def encode_produce_request(
    api_version: int, correlation_id: int, client_id: str | None, body: Mapping[str, Any]
) -> list[Any] | None: ...
def decode_produce_response(
    api_version: int, frame: bytes | bytearray | memoryview, allow_trailing: bool
) -> dict[str, Any]: ...
