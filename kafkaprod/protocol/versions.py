"""Version negotiation: which version of each API to speak with a broker, from its ApiVersions answer."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafkaprod.errors import ErrorCode, UnsupportedVersionError
from kafkaprod.protocol.messages import API_VERSIONS, APIS, api_for


def negotiate_version(api_key: int, broker_min: int, broker_max: int) -> int:
    """The highest version of ``api_key`` that both kafkaprod and the broker speak.

    Raises :class:`~kafkaprod.errors.UnsupportedVersionError` when the two ranges do not overlap.
    """
    api = api_for(api_key)
    low = max(api.min_version, broker_min)
    high = min(api.max_version, broker_max)
    if low > high:
        raise UnsupportedVersionError(
            f"{api.name} (api_key {api_key}): the broker speaks v{broker_min}-v{broker_max}, "
            f"kafkaprod v{api.min_version}-v{api.max_version}; no version in common"
        )
    return high


def negotiate_versions(api_versions_response: Mapping[str, Any]) -> dict[int, int]:
    """The version to use for every API kafkaprod speaks that the broker lists, keyed by api_key.

    APIs the broker lists but kafkaprod does not speak are left out, and so are APIs the broker does not list;
    an API listed by both whose ranges do not overlap raises :class:`~kafkaprod.errors.UnsupportedVersionError`.
    """
    chosen: dict[int, int] = {}
    for entry in api_versions_response["api_keys"]:
        key = entry["api_key"]
        if key in APIS:
            chosen[key] = negotiate_version(key, entry["min_version"], entry["max_version"])
    return chosen


def api_versions_fallback(api_versions_response: Mapping[str, Any], tried_version: int) -> int | None:
    """After an ApiVersions request of ``tried_version``: the version to retry with, or None if no retry is due.

    A broker that does not speak the version asked answers UNSUPPORTED_VERSION, listing (since KIP-511) the
    ApiVersions versions it does speak; retry with the highest one both sides speak, else with v0, which every
    broker answers. Raises :class:`~kafkaprod.errors.UnsupportedVersionError` if even v0 was refused.
    """
    if api_versions_response["error_code"] != ErrorCode.UNSUPPORTED_VERSION:
        return None
    if tried_version <= API_VERSIONS.min_version:
        raise UnsupportedVersionError("the broker refused ApiVersions v0: it does not speak Kafka's protocol")
    for entry in api_versions_response["api_keys"]:
        if entry["api_key"] == API_VERSIONS.key:
            high: int = min(entry["max_version"], API_VERSIONS.max_version, tried_version - 1)
            if high >= max(entry["min_version"], API_VERSIONS.min_version):
                return high
            break
    return API_VERSIONS.min_version
