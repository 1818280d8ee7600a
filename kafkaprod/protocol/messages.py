"""The messages a producer speaks, described as data for :mod:`kafkaprod.protocol.schema`.

The field lists per version are facts transcribed from Kafka's message definitions
(``clients/src/main/resources/common/message/*.json`` in apache/kafka): which versions carry a field, which
may be null, defaults and tags. Each :class:`Api` also states the version range kafkaprod speaks, which is what
version negotiation picks from.
"""
from __future__ import annotations

from enum import IntEnum

from kafkaprod import __version__
from kafkaprod.protocol.schema import Api, Array, Field, Struct
from kafkaprod.protocol.types import ZERO_UUID


class ApiKey(IntEnum):
    PRODUCE = 0
    METADATA = 3
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    INIT_PRODUCER_ID = 22
    # Transactions (the TransactionManager's requests).
    FIND_COORDINATOR = 10
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    SASL_AUTHENTICATE = 36


# An int32 with only the top bit set: Kafka's "authorized operations were not requested".
_OPS_UNKNOWN = -2147483648

# The request header's client_id keeps its int16 length even in flexible (v2) headers, so a broker can read the
# header of any ApiVersions request; the header structs are therefore compiled with compact=False.
REQUEST_HEADER = Struct("RequestHeader", [
    Field("api_key", "int16", "0+"),
    Field("api_version", "int16", "0+"),
    Field("correlation_id", "int32", "0+"),
    Field("client_id", "string", "1+", nullable="1+", default=None),
])

RESPONSE_HEADER = Struct("ResponseHeader", [
    Field("correlation_id", "int32", "0+"),
])


API_VERSIONS = Api(
    "ApiVersions", ApiKey.API_VERSIONS, versions=(0, 3), flexible_from=3,
    # Clients read this response before they know what the broker speaks, so its header never grows tags.
    response_header_always_v0=True,
    request=[
        # Brokers refuse an empty software name (INVALID_REQUEST), so these default to kafkaprod's own.
        Field("client_software_name", "string", "3+", default="kafkaprod"),
        Field("client_software_version", "string", "3+", default=__version__),
    ],
    response=[
        Field("error_code", "int16", "0+"),
        Field("api_keys", Array(Struct("ApiVersion", [
            Field("api_key", "int16", "0+"),
            Field("min_version", "int16", "0+"),
            Field("max_version", "int16", "0+"),
        ])), "0+"),
        Field("throttle_time_ms", "int32", "1+", default=0),
        Field("supported_features", Array(Struct("SupportedFeatureKey", [
            Field("name", "string", "3+"),
            Field("min_version", "int16", "3+"),
            Field("max_version", "int16", "3+"),
        ])), "3+", tag=0, default=[]),
        Field("finalized_features_epoch", "int64", "3+", tag=1, default=-1),
        Field("finalized_features", Array(Struct("FinalizedFeatureKey", [
            Field("name", "string", "3+"),
            Field("max_version_level", "int16", "3+"),
            Field("min_version_level", "int16", "3+"),
        ])), "3+", tag=2, default=[]),
        Field("zk_migration_ready", "bool", "3+", tag=3, default=False),
    ],
)


_BROKER_FIELDS = [
    Field("node_id", "int32", "0+"),
    Field("host", "string", "0+"),
    Field("port", "int32", "0+"),
]

METADATA = Api(
    "Metadata", ApiKey.METADATA, versions=(1, 12), flexible_from=9,
    request=[
        # null = all topics (v1+); an empty list = no topics. No default: asking for every topic by accident
        # can be expensive.
        Field("topics", Array(Struct("MetadataRequestTopic", [
            Field("topic_id", "uuid", "10+", default=ZERO_UUID),
            Field("name", "string", "0+", nullable="10+"),
        ])), "0+", nullable="1+"),
        Field("allow_auto_topic_creation", "bool", "4+", default=True),
        Field("include_cluster_authorized_operations", "bool", "8-10", default=False),
        Field("include_topic_authorized_operations", "bool", "8+", default=False),
    ],
    response=[
        Field("throttle_time_ms", "int32", "3+", default=0),
        Field("brokers", Array(Struct("MetadataResponseBroker", [
            *_BROKER_FIELDS,
            Field("rack", "string", "1+", nullable="1+", default=None),
        ])), "0+"),
        Field("cluster_id", "string", "2+", nullable="2+", default=None),
        Field("controller_id", "int32", "1+", default=-1),
        Field("topics", Array(Struct("MetadataResponseTopic", [
            Field("error_code", "int16", "0+"),
            Field("name", "string", "0+", nullable="12+"),
            Field("topic_id", "uuid", "10+", default=ZERO_UUID),
            Field("is_internal", "bool", "1+", default=False),
            Field("partitions", Array(Struct("MetadataResponsePartition", [
                Field("error_code", "int16", "0+"),
                Field("partition_index", "int32", "0+"),
                Field("leader_id", "int32", "0+"),
                Field("leader_epoch", "int32", "7+", default=-1),
                Field("replica_nodes", Array("int32"), "0+"),
                Field("isr_nodes", Array("int32"), "0+"),
                Field("offline_replicas", Array("int32"), "5+", default=[]),
            ])), "0+"),
            Field("topic_authorized_operations", "int32", "8+", default=_OPS_UNKNOWN),
        ])), "0+"),
        Field("cluster_authorized_operations", "int32", "8-10", default=_OPS_UNKNOWN),
    ],
)


PRODUCE = Api(
    # v3 is the first version that carries record batches of magic v2, the only format kafkaprod writes.
    "Produce", ApiKey.PRODUCE, versions=(3, 11), flexible_from=9,
    request=[
        Field("transactional_id", "string", "3+", nullable="3+", default=None),
        Field("acks", "int16", "0+"),
        Field("timeout_ms", "int32", "0+"),
        Field("topic_data", Array(Struct("TopicProduceData", [
            Field("name", "string", "0+"),
            Field("partition_data", Array(Struct("PartitionProduceData", [
                Field("index", "int32", "0+"),
                Field("records", "records", "0+", nullable="0+"),
            ])), "0+"),
        ])), "0+"),
    ],
    response=[
        Field("responses", Array(Struct("TopicProduceResponse", [
            Field("name", "string", "0+"),
            Field("partition_responses", Array(Struct("PartitionProduceResponse", [
                Field("index", "int32", "0+"),
                Field("error_code", "int16", "0+"),
                Field("base_offset", "int64", "0+"),
                Field("log_append_time_ms", "int64", "2+", default=-1),
                Field("log_start_offset", "int64", "5+", default=-1),
                Field("record_errors", Array(Struct("BatchIndexAndErrorMessage", [
                    Field("batch_index", "int32", "8+"),
                    Field("batch_index_error_message", "string", "8+", nullable="8+", default=None),
                ])), "8+", default=[]),
                Field("error_message", "string", "8+", nullable="8+", default=None),
                # KIP-951: where a NOT_LEADER_OR_FOLLOWER partition's leader moved; None when not sent.
                Field("current_leader", Struct("LeaderIdAndEpoch", [
                    Field("leader_id", "int32", "10+", default=-1),
                    Field("leader_epoch", "int32", "10+", default=-1),
                ]), "10+", tag=0, default=None),
            ])), "0+"),
        ])), "0+"),
        Field("throttle_time_ms", "int32", "1+", default=0),
        Field("node_endpoints", Array(Struct("NodeEndpoint", [
            *_BROKER_FIELDS,
            Field("rack", "string", "0+", nullable="0+", default=None),
        ])), "10+", tag=0, default=[]),
    ],
)


INIT_PRODUCER_ID = Api(
    "InitProducerId", ApiKey.INIT_PRODUCER_ID, versions=(0, 4), flexible_from=2,
    request=[
        Field("transactional_id", "string", "0+", nullable="0+", default=None),
        Field("transaction_timeout_ms", "int32", "0+"),
        Field("producer_id", "int64", "3+", default=-1),
        Field("producer_epoch", "int16", "3+", default=-1),
    ],
    response=[
        Field("throttle_time_ms", "int32", "0+", default=0),
        Field("error_code", "int16", "0+"),
        Field("producer_id", "int64", "0+", default=-1),
        Field("producer_epoch", "int16", "0+"),
    ],
)


# ---- transactions ------------------------------------------------------------------------------------------------
# The version ranges are those every reference broker answers: librdkafka's mock cluster speaks FindCoordinator
# v0-3, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v0-1 and TxnOffsetCommit v0-3; Tansu and noida-db speak more.
# Newer versions than described here change shape (FindCoordinator v4 batches keys, AddPartitionsToTxn v4+ is the
# brokers' own batched form) or only add error codes (TRANSACTION_ABORTABLE, KIP-890) that a client must then
# handle, so the descriptions stop at the last version before those.

# FindCoordinator key_type values.
COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1

FIND_COORDINATOR = Api(
    # v0 (deprecated, no key_type) is left out: kafkaprod always says which kind of coordinator it wants.
    "FindCoordinator", ApiKey.FIND_COORDINATOR, versions=(1, 3), flexible_from=3,
    request=[
        Field("key", "string", "0-3"),
        Field("key_type", "int8", "1+", default=COORDINATOR_GROUP),
    ],
    response=[
        Field("throttle_time_ms", "int32", "1+", default=0),
        Field("error_code", "int16", "0-3"),
        Field("error_message", "string", "1-3", nullable="1-3", default=None),
        Field("node_id", "int32", "0-3", default=-1),
        # Not nullable in Kafka's schema, but librdkafka's mock answers an error with a null host: decoded as None.
        Field("host", "string", "0-3", nullable="0-3", default=""),
        Field("port", "int32", "0-3", default=-1),
    ],
)

_TXN_TOPIC_PARTITIONS = Struct("AddPartitionsToTxnTopic", [
    Field("name", "string", "0+"),
    Field("partitions", Array("int32"), "0+"),
])

ADD_PARTITIONS_TO_TXN = Api(
    # v3 and below are the client's form; v4+ batches several transactions and is sent by brokers.
    "AddPartitionsToTxn", ApiKey.ADD_PARTITIONS_TO_TXN, versions=(0, 3), flexible_from=3,
    # Kafka's own field names: v4+ moved these into a per-transaction array.
    request=[
        Field("v3_and_below_transactional_id", "string", "0-3"),
        Field("v3_and_below_producer_id", "int64", "0-3"),
        Field("v3_and_below_producer_epoch", "int16", "0-3"),
        Field("v3_and_below_topics", Array(_TXN_TOPIC_PARTITIONS), "0-3"),
    ],
    response=[
        Field("throttle_time_ms", "int32", "0+", default=0),
        Field("results_by_topic_v3_and_below", Array(Struct("AddPartitionsToTxnTopicResult", [
            Field("name", "string", "0+"),
            Field("results_by_partition", Array(Struct("AddPartitionsToTxnPartitionResult", [
                Field("partition_index", "int32", "0+"),
                Field("partition_error_code", "int16", "0+"),
            ])), "0+"),
        ])), "0-3"),
    ],
)

ADD_OFFSETS_TO_TXN = Api(
    "AddOffsetsToTxn", ApiKey.ADD_OFFSETS_TO_TXN, versions=(0, 3), flexible_from=3,
    request=[
        Field("transactional_id", "string", "0+"),
        Field("producer_id", "int64", "0+"),
        Field("producer_epoch", "int16", "0+"),
        Field("group_id", "string", "0+"),
    ],
    response=[
        Field("throttle_time_ms", "int32", "0+", default=0),
        Field("error_code", "int16", "0+"),
    ],
)

END_TXN = Api(
    # v5 (KIP-890 part 2) bumps the epoch on every transaction and answers the new one; not spoken.
    "EndTxn", ApiKey.END_TXN, versions=(0, 3), flexible_from=3,
    request=[
        Field("transactional_id", "string", "0+"),
        Field("producer_id", "int64", "0+"),
        Field("producer_epoch", "int16", "0+"),
        Field("committed", "bool", "0+"),
    ],
    response=[
        Field("throttle_time_ms", "int32", "0+", default=0),
        Field("error_code", "int16", "0+"),
    ],
)

TXN_OFFSET_COMMIT = Api(
    "TxnOffsetCommit", ApiKey.TXN_OFFSET_COMMIT, versions=(0, 3), flexible_from=3,
    request=[
        Field("transactional_id", "string", "0+"),
        Field("group_id", "string", "0+"),
        Field("producer_id", "int64", "0+"),
        Field("producer_epoch", "int16", "0+"),
        # KIP-447: the consumer's generation and member, so the group coordinator can fence a zombie consumer;
        # -1 and "" skip that check.
        Field("generation_id", "int32", "3+", default=-1),
        Field("member_id", "string", "3+", default=""),
        Field("group_instance_id", "string", "3+", nullable="3+", default=None),
        Field("topics", Array(Struct("TxnOffsetCommitRequestTopic", [
            Field("name", "string", "0+"),
            Field("partitions", Array(Struct("TxnOffsetCommitRequestPartition", [
                Field("partition_index", "int32", "0+"),
                Field("committed_offset", "int64", "0+"),
                Field("committed_leader_epoch", "int32", "2+", default=-1),
                Field("committed_metadata", "string", "0+", nullable="0+", default=None),
            ])), "0+"),
        ])), "0+"),
    ],
    response=[
        Field("throttle_time_ms", "int32", "0+", default=0),
        Field("topics", Array(Struct("TxnOffsetCommitResponseTopic", [
            Field("name", "string", "0+"),
            Field("partitions", Array(Struct("TxnOffsetCommitResponsePartition", [
                Field("partition_index", "int32", "0+"),
                Field("error_code", "int16", "0+"),
            ])), "0+"),
        ])), "0+"),
    ],
)

#: The APIs of transactions, spoken to the transaction coordinator (and TxnOffsetCommit to the group's).
TRANSACTION_APIS = (FIND_COORDINATOR, ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT)


SASL_HANDSHAKE = Api(
    # v0 is followed by raw SASL tokens outside Kafka's framing; kafkaprod speaks only v1, after which every
    # token travels in a SaslAuthenticate request (brokers since Kafka 1.0).
    # No version of it is flexible (2 is past the last).
    "SaslHandshake", ApiKey.SASL_HANDSHAKE, versions=(1, 1), flexible_from=2,
    request=[
        Field("mechanism", "string", "0+"),
    ],
    response=[
        Field("error_code", "int16", "0+"),
        Field("mechanisms", Array("string"), "0+"),
    ],
)


SASL_AUTHENTICATE = Api(
    # v1 adds session_lifetime_ms: how long the broker accepts the session before the client must
    # re-authenticate on the same connection (KIP-368).
    "SaslAuthenticate", ApiKey.SASL_AUTHENTICATE, versions=(0, 2), flexible_from=2,
    request=[
        Field("auth_bytes", "bytes", "0+"),
    ],
    response=[
        Field("error_code", "int16", "0+"),
        Field("error_message", "string", "0+", nullable="0+", default=None),
        Field("auth_bytes", "bytes", "0+"),
        Field("session_lifetime_ms", "int64", "1+", default=0),
    ],
)


#: Every API kafkaprod speaks, by key.
APIS: dict[int, Api] = {api.key: api for api in (API_VERSIONS, METADATA, PRODUCE, INIT_PRODUCER_ID,
                                                  SASL_HANDSHAKE, SASL_AUTHENTICATE, *TRANSACTION_APIS)}

#: The version range kafkaprod speaks per API key, for negotiation.
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = {k: (a.min_version, a.max_version) for k, a in APIS.items()}


def api_for(api_key: int) -> Api:
    """The :class:`Api` of a key; ``ValueError`` for keys kafkaprod does not speak."""
    api = APIS.get(api_key)
    if api is None:
        raise ValueError(f"api_key {api_key} is not one kafkaprod speaks (it speaks {sorted(APIS)})")
    return api
