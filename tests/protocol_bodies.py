"""Helpers for the protocol tests: hypothesis strategies that build message bodies from our schemas, the dict a
decode is expected to return for a body, and converters from our dicts to kafka-python's protocol objects
(both its JSON-driven classes and its older hand-written ones), which serve as the independent encoder."""
from __future__ import annotations

import warnings
from typing import Any

from hypothesis import strategies as st

from kafkaprod.protocol.messages import APIS
from kafkaprod.protocol.schema import REQUIRED, Array, Field, Struct

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}

#: (api_key, version) for every version of every API kafkaprod speaks.
ALL_VERSIONS = [(key, v) for key, api in sorted(APIS.items()) for v in range(api.min_version, api.max_version + 1)]


def version_id(param: tuple[int, int]) -> str:
    key, version = param
    return f"{APIS[key].name}-v{version}"


def _primitive(name: str) -> st.SearchStrategy:
    if name == "bool":
        return st.booleans()
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        return st.integers(lo, hi)
    if name == "float64":
        return st.floats(allow_nan=False)
    if name == "string":
        return st.text(max_size=12)
    if name in ("bytes", "records"):
        return st.binary(max_size=40)
    if name == "uuid":
        return st.uuids()
    raise AssertionError(name)


def _type(ftype, version: int, nullable: bool) -> st.SearchStrategy:
    if isinstance(ftype, Array):
        s = st.lists(_type(ftype.item, version, False), max_size=3)
    elif isinstance(ftype, Struct):
        s = struct_body(ftype, version)
    else:
        s = _primitive(ftype)
    return st.none() | s if nullable else s


def struct_body(struct: Struct, version: int) -> st.SearchStrategy:
    """Bodies of ``struct`` at ``version``: every field of the version, tagged ones sometimes left out."""
    required: dict[str, st.SearchStrategy] = {}
    optional: dict[str, st.SearchStrategy] = {}
    for f in struct.fields:
        if not f.exists_in(version):
            continue
        s = _type(f.type, version, f.nullable_in(version))
        (optional if f.tag is not None else required)[f.name] = s
    return st.fixed_dictionaries(required, optional=optional)


def message_body(api_key: int, version: int, request: bool) -> st.SearchStrategy:
    api = APIS[api_key]
    return struct_body(api.request if request else api.response, version)


def expected_decode(struct: Struct, version: int, body: dict, flexible: bool) -> dict:
    """What decoding the encoding of ``body`` must give: every schema field, defaults where the version (or a
    tagged field left out) does not carry one."""
    out: dict[str, Any] = {}
    for f in struct.fields:
        present = f.exists_in(version) and (f.tag is None or flexible)
        if present and f.name in body:
            out[f.name] = _expected_value(f.type, version, body[f.name], flexible)
        else:
            out[f.name] = f.fill_value()
    return out


def _expected_value(ftype, version: int, value, flexible: bool):
    if value is None:
        return None
    if isinstance(ftype, Array):
        return [_expected_value(ftype.item, version, v, flexible) for v in value]
    if isinstance(ftype, Struct):
        return expected_decode(ftype, version, value, flexible)
    if ftype in ("bytes", "records"):
        return bytes(value)
    return value


# ---- kafka-python, JSON-driven classes (kafka.protocol.{metadata,producer}) ---------------------------------------

def kp_new_class(api_key: int, request: bool):
    with warnings.catch_warnings():
        # kafka-python 3.0.12 loads its schemas with a deprecated importlib.resources call
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse
        from kafka.protocol.metadata.metadata import MetadataRequest, MetadataResponse
        from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
        from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
        from kafka.protocol.producer.transaction import (
            AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
            EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, TxnOffsetCommitRequest,
            TxnOffsetCommitResponse,
        )
        from kafka.protocol.sasl import (SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
                                         SaslHandshakeResponse)

    table = {
        17: (SaslHandshakeRequest, SaslHandshakeResponse),
        36: (SaslAuthenticateRequest, SaslAuthenticateResponse),
        18: (ApiVersionsRequest, ApiVersionsResponse),
        3: (MetadataRequest, MetadataResponse),
        0: (ProduceRequest, ProduceResponse),
        22: (InitProducerIdRequest, InitProducerIdResponse),
        10: (FindCoordinatorRequest, FindCoordinatorResponse),
        24: (AddPartitionsToTxnRequest, AddPartitionsToTxnResponse),
        25: (AddOffsetsToTxnRequest, AddOffsetsToTxnResponse),
        26: (EndTxnRequest, EndTxnResponse),
        28: (TxnOffsetCommitRequest, TxnOffsetCommitResponse),
    }
    return table[api_key][0 if request else 1]


def _bit_set(value: int) -> set[int] | None:
    bits = {b for b in range(32) if value & (1 << b)}
    return None if bits == {31} else bits  # kafka-python's spelling of "not requested"


# kafka-python renames Metadata's authorized-operations fields and holds them as sets of bit positions.
_KP_RENAMES = {
    ("MetadataResponse", "cluster_authorized_operations"): "authorized_operations",
    ("MetadataResponseTopic", "topic_authorized_operations"): "authorized_operations",
}


def to_kp_new(cls, struct: Struct, body: dict, version: int | None = None):
    """Our body dict -> an instance of kafka-python's generated data class ``cls``."""
    kwargs = {}
    fields = cls.fields
    for f in struct.fields:
        if f.name not in body:
            continue
        value = body[f.name]
        their_name = _KP_RENAMES.get((struct.name, f.name))
        if their_name is not None:
            kwargs[their_name] = _bit_set(value)
            continue
        if f.name not in fields:
            raise AssertionError(f"kafka-python's {cls.__name__} has no field {f.name!r}")
        if f.tag is not None and (value is None or value == f.fill_value()):
            continue  # tagged fields at their default are not written, by either side
        kfield = fields[f.name]
        if value is not None and isinstance(f.type, Array) and isinstance(f.type.item, Struct):
            value = [to_kp_new(kfield.data_class, f.type.item, v) for v in value]
        elif value is not None and isinstance(f.type, Struct):
            value = to_kp_new(kfield.data_class, f.type, value)
        kwargs[f.name] = value
    if version is not None:
        return cls[version](**kwargs)
    return cls(**kwargs)


# ---- kafka-python, hand-written classes (kafka.protocol.old) -----------------------------------------------------

def kp_old_class(api_key: int, version: int, request: bool):
    """kafka-python's hand-written class for this message version, or None where it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.protocol.old import (
            add_offsets_to_txn, add_partitions_to_txn, api_versions, end_txn, find_coordinator, init_producer_id,
            metadata, produce, sasl_authenticate, sasl_handshake, txn_offset_commit,
        )

    module = {18: api_versions, 3: metadata, 0: produce, 22: init_producer_id, 17: sasl_handshake,
              36: sasl_authenticate, 10: find_coordinator, 24: add_partitions_to_txn, 25: add_offsets_to_txn,
              26: end_txn, 28: txn_offset_commit}[api_key]
    name = {18: "ApiVersions", 3: "Metadata", 0: "Produce", 22: "InitProducerId", 17: "SaslHandshake",
            36: "SaslAuthenticate", 10: "FindCoordinator", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn",
            26: "EndTxn", 28: "TxnOffsetCommit"}[api_key]
    return getattr(module, f"{name}{'Request' if request else 'Response'}_v{version}", None)


def to_kp_old_values(schema, struct: Struct, body: dict, version: int) -> tuple:
    """Our body dict -> the positional tuple kafka-python's old ``Schema`` encodes (matched by position, as
    its field names differ from Kafka's in places)."""
    from kafka.protocol.old.types import Schema

    ours = [f for f in struct.fields if f.exists_in(version) and f.tag is None]
    theirs = [(n, ty) for n, ty in zip(schema.names, schema.fields) if n != "tags"]
    assert len(ours) == len(theirs), (struct.name, [f.name for f in ours], [n for n, _ in theirs])
    it = iter(ours)
    values = []
    for name, ty in zip(schema.names, schema.fields):
        if name == "tags":
            values.append({})
            continue
        f: Field = next(it)
        values.append(_to_old(ty, f.type, body.get(f.name, f.default), version, Schema))
    return tuple(values)


def _to_old(their_type, our_type, value, version: int, schema_cls):
    assert value is not REQUIRED
    if value is None:
        return None
    if isinstance(our_type, Array):
        item = our_type.item
        their_item = their_type.array_of
        if isinstance(item, Struct) and not isinstance(their_item, schema_cls):
            # kafka-python flattens a one-field struct into its field (Metadata request topics).
            (only,) = [f for f in item.fields if f.exists_in(version)]
            return [_to_old(their_item, only.type, v.get(only.name), version, schema_cls) for v in value]
        return [_to_old(their_item, item, v, version, schema_cls) for v in value]
    if isinstance(our_type, Struct):
        return to_kp_old_values(their_type, our_type, value, version)
    if getattr(their_type, "__name__", "") == "BitField":
        return _bit_set(value)
    return value
