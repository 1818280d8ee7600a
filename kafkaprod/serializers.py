"""Key and value serializers: a callable f(data) or an object with serialize(topic, data)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def as_serializer(obj: Any) -> Callable[[str, Any], Any] | None:
    """Normalises a configured serializer to f(topic, data) -> bytes | None; None when there is none."""
    if obj is None:
        return None
    serialize: Callable[[str, Any], Any] | None = getattr(obj, "serialize", None)
    if callable(serialize):
        return serialize
    return lambda topic, data: obj(data)
