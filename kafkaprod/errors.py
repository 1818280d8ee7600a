"""Errors raised by kafkaprod.

Every error says whether retrying can help (``retriable``), so the Sender and users decide the same way the Java
client does. Broker error codes map to one class each through :func:`for_code`.
"""
from __future__ import annotations


class KafkaError(Exception):
    """Base of every kafkaprod error."""

    retriable: bool = False
    #: Kafka protocol error code, for errors that come from a broker; None otherwise.
    errno: int | None = None


class KafkaTimeoutError(KafkaError):
    """Something did not happen within its time limit (metadata, buffer memory, delivery, flush)."""

    retriable = True


class BufferExhaustedError(KafkaTimeoutError):
    """``buffer_memory`` stayed exhausted for ``max_block_ms``: the producer could not get memory for a batch."""


class ProducerClosedError(KafkaError):
    """The producer (or its buffer pool) was closed; nothing more can be sent through it."""


class ProtocolError(KafkaError):
    """A frame from a broker could not be decoded: truncated, oversized or malformed.

    The connection that carried it can no longer be trusted; closing it and retrying elsewhere may help.
    """

    retriable = True


class UnsupportedVersionError(KafkaError):
    """No version of an API is supported by both this client and the broker."""


class RecordTooLargeError(KafkaError):
    """A record is larger than ``max_request_size`` or ``buffer_memory`` allows."""


class BatchSendError(KafkaError):
    """Some, not all, records of one ``send_batch()`` call failed.

    ``failed`` of ``total`` records failed; ``first_error`` is the error of the lowest-indexed failed record
    (``first_failed_index``), and also this error's ``__cause__``. ``BatchFuture.failed_indices()`` lists them all.
    When every record of the call failed, ``get()`` raises the first record's error itself instead.
    """

    def __init__(self, failed: int, total: int, first_error: BaseException, first_failed_index: int) -> None:
        super().__init__(f"{failed} of {total} records failed; the first (index {first_failed_index}) with "
                         f"{type(first_error).__name__}: {first_error}")
        self.failed = failed
        self.total = total
        self.first_error = first_error
        self.first_failed_index = first_failed_index
        self.retriable = bool(getattr(first_error, "retriable", False))


class BrokerResponseError(KafkaError):
    """An error code returned by a broker. Subclasses exist per code; see :func:`for_code`."""

    errno = -1
    message = "UNKNOWN_SERVER_ERROR"
    description = "An unexpected server error."

    def __str__(self) -> str:
        detail = super().__str__()
        base = f"[Error {self.errno}] {self.message}: {self.description}"
        return f"{base} ({detail})" if detail else base


# (code, name, retriable, description): the broker error codes a producer meets. The flag follows the Java
# client's RetriableException hierarchy. Source of the facts: Kafka's protocol guide, "Error Codes".
_BROKER_ERRORS: tuple[tuple[int, str, bool, str], ...] = (
    (-1, "UNKNOWN_SERVER_ERROR", False, "The server experienced an unexpected error when processing the request."),
    (1, "OFFSET_OUT_OF_RANGE", False, "The requested offset is not within the range of offsets maintained by the server."),
    (2, "CORRUPT_MESSAGE", True, "The message contents do not match the message CRC or the message is otherwise corrupt."),
    (3, "UNKNOWN_TOPIC_OR_PARTITION", True, "This server does not host this topic-partition."),
    (4, "INVALID_FETCH_SIZE", False, "The requested fetch size is invalid."),
    (5, "LEADER_NOT_AVAILABLE", True, "There is no leader for this topic-partition as we are in the middle of a leadership election."),
    (6, "NOT_LEADER_OR_FOLLOWER", True, "This server is not the leader or a follower for that topic-partition."),
    (7, "REQUEST_TIMED_OUT", True, "The request timed out."),
    (8, "BROKER_NOT_AVAILABLE", False, "The broker is not available."),
    (9, "REPLICA_NOT_AVAILABLE", True, "The replica is not available for the requested topic-partition."),
    (10, "MESSAGE_TOO_LARGE", False, "The request included a message larger than the max message size the server will accept."),
    (13, "NETWORK_EXCEPTION", True, "The server disconnected before a response was received."),
    (14, "COORDINATOR_LOAD_IN_PROGRESS", True, "The coordinator is loading and hence can't process requests."),
    (15, "COORDINATOR_NOT_AVAILABLE", True, "The coordinator is not available."),
    (16, "NOT_COORDINATOR", True, "This is not the correct coordinator."),
    (17, "INVALID_TOPIC_EXCEPTION", False, "The request attempted to perform an operation on an invalid topic."),
    (18, "RECORD_LIST_TOO_LARGE", False, "The request included message batch larger than the configured segment size on the server."),
    (19, "NOT_ENOUGH_REPLICAS", True, "Messages are rejected since there are fewer in-sync replicas than required."),
    (20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", True, "Messages are written to the log, but to fewer in-sync replicas than required."),
    (21, "INVALID_REQUIRED_ACKS", False, "Produce request specified an invalid value for required acks."),
    (22, "ILLEGAL_GENERATION", False, "Specified group generation id is not valid."),
    (29, "TOPIC_AUTHORIZATION_FAILED", False, "Topic authorization failed."),
    (31, "CLUSTER_AUTHORIZATION_FAILED", False, "Cluster authorization failed."),
    (32, "INVALID_TIMESTAMP", False, "The timestamp of the message is out of acceptable range."),
    (33, "UNSUPPORTED_SASL_MECHANISM", False, "The broker does not support the requested SASL mechanism."),
    (35, "UNSUPPORTED_VERSION", False, "The version of API is not supported."),
    (36, "TOPIC_ALREADY_EXISTS", False, "Topic with this name already exists."),
    (37, "INVALID_PARTITIONS", False, "Number of partitions is below 1."),
    (38, "INVALID_REPLICATION_FACTOR", False, "Replication factor is below 1 or larger than the number of available brokers."),
    (41, "NOT_CONTROLLER", True, "This is not the correct controller for this cluster."),
    (42, "INVALID_REQUEST", False, "This most likely occurs because of a request being malformed by the client library."),
    (43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", False, "The message format version on the broker does not support the request."),
    (44, "POLICY_VIOLATION", False, "Request parameters do not satisfy the configured policy."),
    (45, "OUT_OF_ORDER_SEQUENCE_NUMBER", False, "The broker received an out of order sequence number."),
    (46, "DUPLICATE_SEQUENCE_NUMBER", False, "The broker received a duplicate sequence number."),
    (47, "INVALID_PRODUCER_EPOCH", False, "Producer attempted to produce with an old epoch."),
    (48, "INVALID_TXN_STATE", False, "The producer attempted a transactional operation in an invalid state."),
    (49, "INVALID_PRODUCER_ID_MAPPING", False, "The producer attempted to use a producer id which is not currently assigned to its transactional id."),
    (51, "CONCURRENT_TRANSACTIONS", True, "The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing."),
    (53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", False, "Transactional Id authorization failed."),
    (56, "KAFKA_STORAGE_ERROR", True, "Disk error when trying to access log file on the disk."),
    (59, "UNKNOWN_PRODUCER_ID", False, "The broker could not locate the producer metadata associated with the producer id."),
    (74, "FENCED_LEADER_EPOCH", True, "The leader epoch in the request is older than the epoch on the broker."),
    (75, "UNKNOWN_LEADER_EPOCH", True, "The leader epoch in the request is newer than the epoch on the broker."),
    (76, "UNSUPPORTED_COMPRESSION_TYPE", False, "The requesting client does not support the compression type of given partition."),
    (87, "INVALID_RECORD", False, "This record has failed the validation on broker and hence will be rejected."),
    (89, "THROTTLING_QUOTA_EXCEEDED", True, "The throttling quota has been exceeded."),
    (90, "PRODUCER_FENCED", False, "There is a newer producer with the same transactionalId which fences the current one."),
    (100, "UNKNOWN_TOPIC_ID", True, "This server does not host this topic ID."),
)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Error"


_BY_CODE: dict[int, type[BrokerResponseError]] = {}
for _code, _name, _retriable, _desc in _BROKER_ERRORS:
    _cls = type(
        _class_name(_name),
        (BrokerResponseError,),
        {"errno": _code, "message": _name, "description": _desc, "retriable": _retriable, "__module__": __name__},
    )
    globals()[_cls.__name__] = _cls
    _BY_CODE[_code] = _cls
del _code, _name, _retriable, _desc, _cls


def for_code(code: int) -> type[BrokerResponseError]:
    """The error class for a broker error code (codes this module does not know map to a generic class)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    return type(
        "BrokerError%d" % code,
        (BrokerResponseError,),
        {"errno": code, "message": "UNKNOWN_CODE_%d" % code, "description": "An error code this client does not know."},
    )
