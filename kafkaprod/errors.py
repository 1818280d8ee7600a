"""Errors raised by kafkaprod.

Every error says whether retrying can help (``retriable``), so the Sender and users decide the same way the Java
client does (its ``RetriableException`` hierarchy). Broker error codes are named once, in :class:`ErrorCode`, and
each code a producer meets has its own class below; :func:`broker_error` makes the error for a code.
"""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Kafka protocol error codes a producer meets (Kafka's protocol guide, "Error Codes")."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    TOPIC_AUTHORIZATION_FAILED = 29
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    KAFKA_STORAGE_ERROR = 56
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    INVALID_RECORD = 87
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    UNKNOWN_TOPIC_ID = 100
    # Transactions and the consumer-group offsets they commit (the TransactionManager's requests).
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    GROUP_AUTHORIZATION_FAILED = 30
    INVALID_TRANSACTION_TIMEOUT = 50
    TRANSACTION_COORDINATOR_FENCED = 52
    OPERATION_NOT_ATTEMPTED = 55
    FENCED_INSTANCE_ID = 82
    TRANSACTION_ABORTABLE = 120


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


class BrokerDataLossError(KafkaError):
    """A broker lost records it had acknowledged: it refused, as out of order, the sequence right after the last one
    it acknowledged for a partition (it came back from a crash without what it had written, for one). Raised as the
    producer's fatal error with ``fail_on_broker_data_loss=True``; otherwise the producer logs it at ERROR, counts it
    in ``metrics()`` and goes on. Retrying does not bring the records back: send them again if they matter."""


class ProducerForkedError(ProducerClosedError):
    """A producer made before ``os.fork()`` was used in the child process.

    Its I/O thread and connections stay in the parent, so nothing sent in the child could ever be delivered.
    Retrying does not help: create the producer in the child, after the fork (gunicorn's ``post_fork`` hook,
    celery's ``worker_process_init`` signal, a ``multiprocessing`` pool's ``initializer``, or the ``spawn`` start
    method).
    """


class ProtocolError(KafkaError):
    """A frame from a broker could not be decoded: truncated, oversized or malformed.

    The connection that carried it can no longer be trusted; closing it and retrying elsewhere may help.
    """

    retriable = True


class RecordTooLargeError(KafkaError):
    """A record is larger than ``max_request_size`` or ``buffer_memory`` allows."""


class AuthenticationError(KafkaError):
    """The client could not prove who it is to a broker, or the broker to it (Java's AuthenticationException).

    Not retriable: the same credentials or certificates fail the same way. The producer fails its pending
    records and makes ``send()`` raise the error while the condition lasts; it keeps reconnecting in the
    background (reconnect backoff), and the first connection that authenticates lets sends through again.
    """


class SslAuthenticationError(AuthenticationError):
    """The TLS handshake with a broker failed: its certificate was not trusted (unknown CA), did not name the
    host connected to, or the broker refused the client's certificate (or its absence)."""


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
    """An error code returned by a broker: one subclass per code below, :class:`UnknownBrokerError` for others."""

    errno: int = ErrorCode.UNKNOWN_SERVER_ERROR

    @property
    def description(self) -> str:
        """What the code means: the class docstring, which is Kafka's own description of the code."""
        return " ".join((type(self).__doc__ or "").split())

    @property
    def message(self) -> str:
        """The code's protocol name, e.g. ``NOT_LEADER_OR_FOLLOWER``."""
        try:
            return ErrorCode(self.errno).name
        except ValueError:
            return f"UNKNOWN_CODE_{self.errno}"

    def __str__(self) -> str:
        detail = super().__str__()
        base = f"[Error {self.errno}] {self.message}: {self.description}"
        return f"{base} ({detail})" if detail else base


class RetriableBrokerError(BrokerResponseError):
    """A broker error that a retry may get past (leader moving, replicas catching up, timeouts)."""

    retriable = True


class UnknownBrokerError(BrokerResponseError):
    # errno is the code the broker sent; not retried, as the Java client's UnknownServerException.
    """An error code this client does not know."""

    def __init__(self, errno: int, *args: object) -> None:
        super().__init__(*args)
        self.errno = errno


# One class per code; the retriable flag follows the Java client's RetriableException hierarchy.

class UnknownServerError(BrokerResponseError):
    """The server experienced an unexpected error when processing the request."""

    errno = ErrorCode.UNKNOWN_SERVER_ERROR


class OffsetOutOfRangeError(BrokerResponseError):
    """The requested offset is not within the range of offsets maintained by the server."""

    errno = ErrorCode.OFFSET_OUT_OF_RANGE


class CorruptMessageError(RetriableBrokerError):
    """The message contents do not match the message CRC or the message is otherwise corrupt."""

    errno = ErrorCode.CORRUPT_MESSAGE


class UnknownTopicOrPartitionError(RetriableBrokerError):
    """This server does not host this topic-partition."""

    errno = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class InvalidFetchSizeError(BrokerResponseError):
    """The requested fetch size is invalid."""

    errno = ErrorCode.INVALID_FETCH_SIZE


class LeaderNotAvailableError(RetriableBrokerError):
    """There is no leader for this topic-partition as we are in the middle of a leadership election."""

    errno = ErrorCode.LEADER_NOT_AVAILABLE


class NotLeaderOrFollowerError(RetriableBrokerError):
    """This server is not the leader or a follower for that topic-partition."""

    errno = ErrorCode.NOT_LEADER_OR_FOLLOWER


class RequestTimedOutError(RetriableBrokerError):
    """The request timed out."""

    errno = ErrorCode.REQUEST_TIMED_OUT


class BrokerNotAvailableError(BrokerResponseError):
    """The broker is not available."""

    errno = ErrorCode.BROKER_NOT_AVAILABLE


class ReplicaNotAvailableError(RetriableBrokerError):
    """The replica is not available for the requested topic-partition."""

    errno = ErrorCode.REPLICA_NOT_AVAILABLE


class MessageTooLargeError(BrokerResponseError):
    """The request included a message larger than the max message size the server will accept."""

    errno = ErrorCode.MESSAGE_TOO_LARGE


class NetworkExceptionError(RetriableBrokerError):
    """The server disconnected before a response was received."""

    errno = ErrorCode.NETWORK_EXCEPTION


class CoordinatorLoadInProgressError(RetriableBrokerError):
    """The coordinator is loading and hence can't process requests."""

    errno = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS


class CoordinatorNotAvailableError(RetriableBrokerError):
    """The coordinator is not available."""

    errno = ErrorCode.COORDINATOR_NOT_AVAILABLE


class NotCoordinatorError(RetriableBrokerError):
    """This is not the correct coordinator."""

    errno = ErrorCode.NOT_COORDINATOR


class InvalidTopicError(BrokerResponseError):
    """The request attempted to perform an operation on an invalid topic."""

    errno = ErrorCode.INVALID_TOPIC_EXCEPTION


class RecordListTooLargeError(BrokerResponseError):
    """The request included message batch larger than the configured segment size on the server."""

    errno = ErrorCode.RECORD_LIST_TOO_LARGE


class NotEnoughReplicasError(RetriableBrokerError):
    """Messages are rejected since there are fewer in-sync replicas than required."""

    errno = ErrorCode.NOT_ENOUGH_REPLICAS


class NotEnoughReplicasAfterAppendError(RetriableBrokerError):
    """Messages are written to the log, but to fewer in-sync replicas than required."""

    errno = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND


class InvalidRequiredAcksError(BrokerResponseError):
    """Produce request specified an invalid value for required acks."""

    errno = ErrorCode.INVALID_REQUIRED_ACKS


class IllegalGenerationError(BrokerResponseError):
    """Specified group generation id is not valid."""

    errno = ErrorCode.ILLEGAL_GENERATION


class TopicAuthorizationFailedError(BrokerResponseError):
    """Topic authorization failed."""

    errno = ErrorCode.TOPIC_AUTHORIZATION_FAILED


class ClusterAuthorizationFailedError(BrokerResponseError):
    """Cluster authorization failed."""

    errno = ErrorCode.CLUSTER_AUTHORIZATION_FAILED


class InvalidTimestampError(BrokerResponseError):
    """The timestamp of the message is out of acceptable range."""

    errno = ErrorCode.INVALID_TIMESTAMP


class UnsupportedSaslMechanismError(BrokerResponseError, AuthenticationError):
    """The broker does not support the requested SASL mechanism."""

    errno = ErrorCode.UNSUPPORTED_SASL_MECHANISM


class IllegalSaslStateError(BrokerResponseError, AuthenticationError):
    """Request is not valid given the current SASL state."""

    errno = ErrorCode.ILLEGAL_SASL_STATE


class UnsupportedVersionError(BrokerResponseError):
    """The version of API is not supported."""

    # Also raised by the client itself when no version of an API is supported by both sides.

    errno = ErrorCode.UNSUPPORTED_VERSION


class TopicAlreadyExistsError(BrokerResponseError):
    """Topic with this name already exists."""

    errno = ErrorCode.TOPIC_ALREADY_EXISTS


class InvalidPartitionsError(BrokerResponseError):
    """Number of partitions is below 1."""

    errno = ErrorCode.INVALID_PARTITIONS


class InvalidReplicationFactorError(BrokerResponseError):
    """Replication factor is below 1 or larger than the number of available brokers."""

    errno = ErrorCode.INVALID_REPLICATION_FACTOR


class NotControllerError(RetriableBrokerError):
    """This is not the correct controller for this cluster."""

    errno = ErrorCode.NOT_CONTROLLER


class InvalidRequestError(BrokerResponseError):
    """This most likely occurs because of a request being malformed by the client library."""

    errno = ErrorCode.INVALID_REQUEST


class UnsupportedForMessageFormatError(BrokerResponseError):
    """The message format version on the broker does not support the request."""

    errno = ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


class PolicyViolationError(BrokerResponseError):
    """Request parameters do not satisfy the configured policy."""

    errno = ErrorCode.POLICY_VIOLATION


class OutOfOrderSequenceNumberError(BrokerResponseError):
    """The broker received an out of order sequence number."""

    errno = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class DuplicateSequenceNumberError(BrokerResponseError):
    """The broker received a duplicate sequence number."""

    errno = ErrorCode.DUPLICATE_SEQUENCE_NUMBER


class InvalidProducerEpochError(BrokerResponseError):
    """Producer attempted to produce with an old epoch."""

    errno = ErrorCode.INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(BrokerResponseError):
    """The producer attempted a transactional operation in an invalid state."""

    errno = ErrorCode.INVALID_TXN_STATE


class InvalidProducerIdMappingError(BrokerResponseError):
    """The producer attempted to use a producer id which is not currently assigned to its transactional id."""

    errno = ErrorCode.INVALID_PRODUCER_ID_MAPPING


class ConcurrentTransactionsError(RetriableBrokerError):
    """The producer attempted to update a transaction while another concurrent operation on the same transaction
    was ongoing."""

    errno = ErrorCode.CONCURRENT_TRANSACTIONS


class TransactionalIdAuthorizationFailedError(BrokerResponseError):
    """Transactional Id authorization failed."""

    errno = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


class KafkaStorageErrorError(RetriableBrokerError):
    """Disk error when trying to access log file on the disk."""

    errno = ErrorCode.KAFKA_STORAGE_ERROR


class SaslAuthenticationError(BrokerResponseError, AuthenticationError):
    """SASL Authentication failed."""

    # Also raised by the client itself when the broker's SCRAM proof does not check out.

    errno = ErrorCode.SASL_AUTHENTICATION_FAILED


class UnknownProducerIdError(BrokerResponseError):
    """The broker could not locate the producer metadata associated with the producer id."""

    errno = ErrorCode.UNKNOWN_PRODUCER_ID


class FencedLeaderEpochError(RetriableBrokerError):
    """The leader epoch in the request is older than the epoch on the broker."""

    errno = ErrorCode.FENCED_LEADER_EPOCH


class UnknownLeaderEpochError(RetriableBrokerError):
    """The leader epoch in the request is newer than the epoch on the broker."""

    errno = ErrorCode.UNKNOWN_LEADER_EPOCH


class UnsupportedCompressionTypeError(BrokerResponseError):
    """The requesting client does not support the compression type of given partition."""

    errno = ErrorCode.UNSUPPORTED_COMPRESSION_TYPE


class InvalidRecordError(BrokerResponseError):
    """This record has failed the validation on broker and hence will be rejected."""

    errno = ErrorCode.INVALID_RECORD


class ThrottlingQuotaExceededError(RetriableBrokerError):
    """The throttling quota has been exceeded."""

    errno = ErrorCode.THROTTLING_QUOTA_EXCEEDED


class ProducerFencedError(BrokerResponseError):
    """There is a newer producer with the same transactionalId which fences the current one."""

    errno = ErrorCode.PRODUCER_FENCED


class UnknownTopicIdError(RetriableBrokerError):
    """This server does not host this topic ID."""

    errno = ErrorCode.UNKNOWN_TOPIC_ID


_BY_CODE: dict[int, type[BrokerResponseError]] = {
    cls.errno: cls for cls in (
        UnknownServerError, OffsetOutOfRangeError, CorruptMessageError, UnknownTopicOrPartitionError,
        InvalidFetchSizeError, LeaderNotAvailableError, NotLeaderOrFollowerError, RequestTimedOutError,
        BrokerNotAvailableError, ReplicaNotAvailableError, MessageTooLargeError, NetworkExceptionError,
        CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError, InvalidTopicError,
        RecordListTooLargeError, NotEnoughReplicasError, NotEnoughReplicasAfterAppendError,
        InvalidRequiredAcksError, IllegalGenerationError, TopicAuthorizationFailedError,
        ClusterAuthorizationFailedError, InvalidTimestampError, UnsupportedSaslMechanismError, IllegalSaslStateError,
        UnsupportedVersionError, TopicAlreadyExistsError, InvalidPartitionsError, InvalidReplicationFactorError,
        NotControllerError, InvalidRequestError, UnsupportedForMessageFormatError, PolicyViolationError,
        OutOfOrderSequenceNumberError, DuplicateSequenceNumberError, InvalidProducerEpochError,
        InvalidTxnStateError, InvalidProducerIdMappingError, ConcurrentTransactionsError,
        TransactionalIdAuthorizationFailedError, KafkaStorageErrorError, SaslAuthenticationError, UnknownProducerIdError,
        FencedLeaderEpochError, UnknownLeaderEpochError, UnsupportedCompressionTypeError, InvalidRecordError,
        ThrottlingQuotaExceededError, ProducerFencedError, UnknownTopicIdError,
    )
}


# ---- transactions ------------------------------------------------------------------------------------------------
# The codes the transactional requests meet, and the client-side errors of the transactional API (Java's
# IllegalStateException from its TransactionManager, TransactionAbortedException, and the "abort and go on" state).

class InvalidGroupIdError(BrokerResponseError):
    """The configured groupId is invalid."""

    errno = ErrorCode.INVALID_GROUP_ID


class UnknownMemberIdError(BrokerResponseError):
    """The coordinator is not aware of this member."""

    errno = ErrorCode.UNKNOWN_MEMBER_ID


class RebalanceInProgressError(BrokerResponseError):
    """The group is rebalancing, so a rejoin is needed."""

    errno = ErrorCode.REBALANCE_IN_PROGRESS


class InvalidCommitOffsetSizeError(BrokerResponseError):
    """The committing offset data size is not valid."""

    errno = ErrorCode.INVALID_COMMIT_OFFSET_SIZE


class GroupAuthorizationFailedError(BrokerResponseError):
    """Group authorization failed."""

    errno = ErrorCode.GROUP_AUTHORIZATION_FAILED


class InvalidTransactionTimeoutError(BrokerResponseError):
    """The transaction timeout is larger than the maximum value allowed by the broker (as configured by
    transaction.max.timeout.ms)."""

    errno = ErrorCode.INVALID_TRANSACTION_TIMEOUT


class TransactionCoordinatorFencedError(BrokerResponseError):
    """Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator
    for a given producer."""

    errno = ErrorCode.TRANSACTION_COORDINATOR_FENCED


class OperationNotAttemptedError(BrokerResponseError):
    """The broker did not attempt to execute this operation. This may happen for batched RPCs where some
    operations in the batch failed, causing the broker to respond without trying the rest."""

    errno = ErrorCode.OPERATION_NOT_ATTEMPTED


class FencedInstanceIdError(BrokerResponseError):
    """The broker rejected this static consumer since another consumer with the same group.instance.id has
    registered with a different member.id."""

    errno = ErrorCode.FENCED_INSTANCE_ID


class TransactionAbortableError(BrokerResponseError):
    """The server encountered an error with the transaction. The client can abort the transaction to continue
    using this transactional ID."""

    # Also what the transactional calls raise while the transaction can only be aborted (Java's ABORTABLE_ERROR
    # state): __cause__ is the error that put it there. abort_transaction(), then begin_transaction() again.

    errno = ErrorCode.TRANSACTION_ABORTABLE


_BY_CODE.update({cls.errno: cls for cls in (
    InvalidGroupIdError, UnknownMemberIdError, RebalanceInProgressError, InvalidCommitOffsetSizeError,
    GroupAuthorizationFailedError, InvalidTransactionTimeoutError, TransactionCoordinatorFencedError,
    OperationNotAttemptedError, FencedInstanceIdError, TransactionAbortableError,
)})


class TransactionStateError(KafkaError):
    """A transactional call came out of order (Java's IllegalStateException from its TransactionManager), or on a
    producer without ``transactional_id``. The message names the state and the call that is expected."""


class TransactionAbortedError(KafkaError):
    """The record was still queued when its transaction was aborted, so it was never sent (Java's
    TransactionAbortedException)."""


def error_class(code: int) -> type[BrokerResponseError]:
    """The class of a broker error code (:class:`UnknownBrokerError` for codes not listed in :class:`ErrorCode`)."""
    return _BY_CODE.get(code, UnknownBrokerError)


def broker_error(code: int, detail: str = "") -> BrokerResponseError:
    """The error for a broker error code, with `detail` (which partition, the broker's message) in its text."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return UnknownBrokerError(code, detail) if detail else UnknownBrokerError(code)
    return cls(detail) if detail else cls()
