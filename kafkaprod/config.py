"""Producer configuration: every option in one table, with its default, unit and meaning side by side.

Options are given as snake_case keyword arguments (``linger_ms=5``) or under their Java property names
(``{"linger.ms": 5}``); defaults follow the Java 4.x producer. :func:`resolve` validates everything at once and
raises ``ValueError``/``TypeError`` naming the option and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from kafkaprod.compression import COMPRESSION_TYPES

_INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    unit: str
    doc: str
    check: Callable[[str, Any], Any]


def _int(lo: int, hi: int = 2**63 - 1) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"option {name!r} must be an int, got {type(value).__name__} {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"option {name!r} must be in [{lo}, {hi}], got {value}")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeError(f"option {name!r} must be a bool, got {type(value).__name__} {value!r}")


def _acks(name: str, value: Any) -> int:
    if value == "all" or value == "-1":
        return -1
    if isinstance(value, str) and value in ("0", "1"):
        return int(value)
    if not isinstance(value, bool) and isinstance(value, int) and value in (-1, 0, 1):
        return value
    raise ValueError(f"option {name!r} must be one of 'all', -1, 0, 1; got {value!r}")


def _codec(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and value.lower() in COMPRESSION_TYPES:
        return value.lower()
    raise ValueError(f"option {name!r} must be one of {', '.join(COMPRESSION_TYPES)}; got {value!r}")


def _servers(name: str, value: Any) -> tuple[tuple[str, int], ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise TypeError(f"option {name!r} must be a 'host:port[,host:port]' string or a list of them, got {value!r}")
    if not items:
        raise ValueError(f"option {name!r} names no broker; give at least one 'host:port'")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"option {name!r}: each entry must be a 'host:port' string, got {item!r}")
        host, sep, port = item.strip().rpartition(":")
        host = host.strip("[]")  # IPv6 literals are written [::1]:9092
        if not sep or not host or any(ch.isspace() for ch in host) or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise ValueError(f"option {name!r}: {item!r} is not a valid 'host:port' (port 1-65535)")
        out.append((host, int(port)))
    return tuple(out)


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"option {name!r} must be a str, got {type(value).__name__} {value!r}")
    return value


def _optional_str(name: str, value: Any) -> str | None:
    return None if value is None else _str(name, value)


def _optional_nonempty_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = _str(name, value)
    if not text:
        raise ValueError(f"option {name!r} must be a non-empty string or None")
    return text


def _serializer(name: str, value: Any) -> Any:
    if value is None or callable(value) or callable(getattr(value, "serialize", None)):
        return value
    raise TypeError(f"option {name!r} must be a callable or an object with serialize(topic, data), got {value!r}")


def _partitioner(name: str, value: Any) -> Any:
    if value is None or callable(value):
        return value
    raise TypeError(f"option {name!r} must be a callable (topic, key_bytes, value_bytes, cluster) -> int, got {value!r}")


def _interceptors(name: str, value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        for method in ("on_send", "on_acknowledgement", "close"):
            if not callable(getattr(item, method, None)):
                raise TypeError(f"option {name!r}: interceptor {item!r} has no {method}() method")
    return items


def _security_protocol(name: str, value: Any) -> str:
    from kafkaprod.security import PROTOCOLS

    if isinstance(value, str) and value.upper() in PROTOCOLS:
        return value.upper()
    raise ValueError(f"option {name!r} must be one of {', '.join(PROTOCOLS)}; got {value!r}")


def _sasl_mechanism(name: str, value: Any) -> str:
    from kafkaprod.security import MECHANISMS

    if isinstance(value, str) and value.upper() in MECHANISMS:
        return value.upper()
    raise ValueError(f"option {name!r} must be one of {', '.join(MECHANISMS)}; got {value!r}")


def _optional_file(name: str, value: Any) -> str | None:
    if value is None:
        return None
    import os

    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"option {name!r} must be a file path, got {type(value).__name__} {value!r}")
    path = os.fspath(value)
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"option {name!r}: no such file: {path!r}")
    return path


def _ssl_context(name: str, value: Any) -> Any:
    import ssl

    if value is None or isinstance(value, ssl.SSLContext):
        return value
    raise TypeError(f"option {name!r} must be an ssl.SSLContext, got {type(value).__name__} {value!r}")


def _token_provider(name: str, value: Any) -> Any:
    if value is None or callable(getattr(value, "token", None)):
        return value
    raise TypeError(f"option {name!r} must be an object with a token() method returning the bearer token, "
                    f"got {value!r}")


OPTIONS: tuple[Option, ...] = (
    Option("bootstrap_servers", "localhost:9092", "host:port list", "Brokers to fetch the first metadata from; any one suffices.", _servers),
    Option("client_id", None, "string", "Sent with every request; shows in broker logs and quotas. Default: kafkaprod-producer-N.", _optional_str),
    Option("acks", "all", "0, 1, -1/'all'", "Replicas that must have the batch before the broker answers; 0 does not wait for an answer.", _acks),
    Option("enable_idempotence", True, "bool", "Producer id and per-partition sequences so retries never duplicate or reorder; needs acks=all.", _bool),
    Option("fail_on_broker_data_loss", False, "bool", "With idempotence: when a broker refuses the sequence right after the last one it acknowledged (it lost acknowledged records, e.g. a crash ahead of its storage), stop the producer with BrokerDataLossError, as librdkafka does, instead of logging it at ERROR, counting it and going on, as Java does.", _bool),
    Option("linger_ms", 5, "ms", "How long a batch that is not full waits for more records before it is sent.", _int(0, _INT32_MAX)),
    Option("batch_size", 16384, "bytes", "Uncompressed bytes of records per partition batch at most; a bigger single record gets a batch of its own. A batch's buffer starts near what its partition's last batch held and grows to this.", _int(1, _INT32_MAX)),
    Option("buffer_memory", 33554432, "bytes", "Memory for batches waiting to be sent or in flight, counted by the buffers they hold; send() blocks when it is used up.", _int(1)),
    Option("max_block_ms", 60000, "ms", "How long send() may block for metadata or buffer memory before it raises.", _int(0)),
    Option("max_request_size", 1048576, "bytes", "Largest produce request, and so the largest record.", _int(1, _INT32_MAX)),
    Option("request_timeout_ms", 30000, "ms", "How long to wait for a broker's answer before the request is failed and retried.", _int(1, _INT32_MAX)),
    Option("delivery_timeout_ms", 120000, "ms", "Upper bound on the time from send() to success or failure, retries included.", _int(1, _INT32_MAX)),
    Option("retries", _INT32_MAX, "count", "How often a batch is retried on retriable errors (within delivery_timeout_ms).", _int(0, _INT32_MAX)),
    Option("retry_backoff_ms", 100, "ms", "First wait before retrying a failed request; doubles up to retry_backoff_max_ms.", _int(0, _INT32_MAX)),
    Option("retry_backoff_max_ms", 1000, "ms", "Longest wait between retries.", _int(0, _INT32_MAX)),
    Option("reconnect_backoff_ms", 50, "ms", "First wait before reconnecting to a broker; doubles up to reconnect_backoff_max_ms.", _int(0, _INT32_MAX)),
    Option("reconnect_backoff_max_ms", 1000, "ms", "Longest wait between reconnect attempts.", _int(0, _INT32_MAX)),
    Option("max_in_flight_requests_per_connection", 5, "count", "Unanswered requests per broker connection; at most 5 with idempotence.", _int(1, _INT32_MAX)),
    Option("compression_type", "none", "codec", "Codec for batches: none, gzip, snappy, lz4, zstd.", _codec),
    Option("metadata_max_age_ms", 300000, "ms", "Metadata is refreshed at least this often even without errors.", _int(0)),
    Option("key_serializer", None, "callable", "Turns keys into bytes: f(data) or obj.serialize(topic, data); bytes pass through.", _serializer),
    Option("value_serializer", None, "callable", "Turns values into bytes, as key_serializer.", _serializer),
    Option("partitioner", None, "callable", "f(topic, key_bytes, value_bytes, cluster) -> partition; default murmur2 for keys, uniform sticky without.", _partitioner),
    Option("interceptors", None, "list", "Objects with on_send(record), on_acknowledgement(metadata, exc), close().", _interceptors),
    # Transactions: a transactional id implies idempotence and acks=all (see resolve()).
    Option("transactional_id", None, "string", "Makes the producer transactional (init_transactions(), begin/commit/abort_transaction()); unique per producer instance, stable across restarts.", _optional_nonempty_str),
    Option("transaction_timeout_ms", 60000, "ms", "How long the transaction coordinator lets a transaction stay open before it aborts it.", _int(1, _INT32_MAX)),
    Option("security_protocol", "PLAINTEXT", "name", "How connections are secured: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (SASL without TLS), SASL_SSL (SASL over TLS).", _security_protocol),
    Option("ssl_cafile", None, "file path", "PEM file of the CA certificates that brokers' certificates must chain to; default: the system's trusted CAs.", _optional_file),
    Option("ssl_certfile", None, "file path", "PEM client certificate (chain) for mutual TLS; may hold the private key too.", _optional_file),
    Option("ssl_keyfile", None, "file path", "PEM private key of ssl_certfile, when it is not in that file.", _optional_file),
    Option("ssl_password", None, "string", "Password of an encrypted ssl_keyfile (or of the key in ssl_certfile).", _optional_str),
    Option("ssl_check_hostname", True, "bool", "Whether a broker's certificate must name the host connected to (its advertised host).", _bool),
    Option("ssl_context", None, "ssl.SSLContext", "A ready client SSLContext; replaces every other ssl_* option.", _ssl_context),
    Option("sasl_mechanism", "PLAIN", "name", "SASL mechanism with SASL_PLAINTEXT/SASL_SSL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER.", _sasl_mechanism),
    Option("sasl_plain_username", None, "string", "User name for PLAIN and SCRAM-SHA-256/512.", _optional_str),
    Option("sasl_plain_password", None, "string", "Password for PLAIN and SCRAM-SHA-256/512.", _optional_str),
    Option("sasl_oauth_token_provider", None, "object", "For OAUTHBEARER: an object whose token() returns the bearer token; called at every connection and again to re-authenticate before the session expires (on the I/O thread: keep it quick).", _token_provider),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}
# Java property names: dots for underscores ("linger.ms"); the plural list is "interceptor.classes" in Java.
_JAVA_NAMES = {opt.name.replace("_", "."): opt.name for opt in OPTIONS}
_JAVA_NAMES["interceptor.classes"] = "interceptors"
_JAVA_NAMES["partitioner.class"] = "partitioner"
_JAVA_NAMES["key.serializer"] = "key_serializer"
_JAVA_NAMES["value.serializer"] = "value_serializer"
#: The security options and librdkafka's names for them (which the Java client shares where it has them): taken
#: as option names here, and given to confluent-kafka by the tools (kafkaprod.tools.broker.librdkafka_security).
LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}
_JAVA_NAMES.update({dotted: name for name, dotted in LIBRDKAFKA_NAMES.items()})
_JAVA_NAMES["sasl.mechanisms"] = "sasl_mechanism"  # librdkafka's older, plural spelling


def canonical_name(name: str) -> str:
    """The snake_case option a name stands for: Java/librdkafka names ("ssl.ca.location") are translated, dotted
    forms of snake_case names ("linger.ms") too; unknown names come back as given."""
    return _JAVA_NAMES.get(name, name)


@dataclasses.dataclass(frozen=True)
class ProducerConfig:
    """The validated configuration; attribute names are the snake_case option names."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(config: Mapping[str, Any] | None = None, **options: Any) -> ProducerConfig:
    """Validate options given as a dict (snake_case or Java names) and/or keywords; keywords win."""
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of option names to values, got {type(config).__name__} {config!r}")
    given: dict[str, Any] = {}
    for source in (config or {}, options):
        for key, value in source.items():
            name = _JAVA_NAMES.get(key, key)
            if name not in _BY_NAME:
                close = difflib.get_close_matches(name, list(_BY_NAME) + list(_JAVA_NAMES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown producer option {key!r}{hint} (known: {', '.join(sorted(_BY_NAME))})")
            given[name] = value
    values = {opt.name: opt.check(opt.name, given.get(opt.name, opt.default)) for opt in OPTIONS}
    if values["transactional_id"] is not None:
        _check_transactional(values, given)
    if values["enable_idempotence"]:
        if values["acks"] != -1:
            if "enable_idempotence" in given:
                raise ValueError("option 'enable_idempotence' requires acks='all' (-1); got acks=%r" % given.get("acks"))
            values["enable_idempotence"] = False  # As Java: idempotence on by default only when acks allows it.
        elif values["max_in_flight_requests_per_connection"] > 5:
            if "enable_idempotence" in given:
                raise ValueError("option 'max_in_flight_requests_per_connection' must be at most 5 with idempotence")
            values["enable_idempotence"] = False
    if values["retry_backoff_max_ms"] < values["retry_backoff_ms"]:
        values["retry_backoff_max_ms"] = values["retry_backoff_ms"]
    if values["reconnect_backoff_max_ms"] < values["reconnect_backoff_ms"]:
        values["reconnect_backoff_max_ms"] = values["reconnect_backoff_ms"]
    if values["delivery_timeout_ms"] < values["linger_ms"] + values["request_timeout_ms"]:
        raise ValueError(
            "option 'delivery_timeout_ms' (%d) must be at least linger_ms + request_timeout_ms (%d)"
            % (values["delivery_timeout_ms"], values["linger_ms"] + values["request_timeout_ms"])
        )
    _check_security(values, given)
    return ProducerConfig(values)


def _check_transactional(values: dict[str, Any], given: Mapping[str, Any]) -> None:
    # As the Java client: a transactional id needs idempotence, and so acks=all and at most 5 requests in flight;
    # options given against that are refused, naming both sides.
    if not values["enable_idempotence"]:
        raise ValueError("option 'transactional_id' requires idempotence; got enable_idempotence=False (leave it "
                         "out or set it to True)")
    if values["acks"] != -1:
        raise ValueError(f"option 'transactional_id' requires acks='all' (-1); got acks={given.get('acks')!r}")
    if values["max_in_flight_requests_per_connection"] > 5:
        raise ValueError("option 'transactional_id' requires max_in_flight_requests_per_connection <= 5 (for "
                         f"idempotence); got {values['max_in_flight_requests_per_connection']}")
def _check_security(values: dict[str, Any], given: Mapping[str, Any]) -> None:
    """Security options that contradict each other are refused here, naming the option."""
    from kafkaprod.security import PROTOCOLS

    protocol = values["security_protocol"]
    use_tls, use_sasl = PROTOCOLS[protocol]
    if not use_tls:
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_context"):
            if values[name] is not None:
                raise ValueError(f"option {name!r} is set but security_protocol is {protocol}, which does not use "
                                 f"TLS; use SSL or SASL_SSL")
    if not use_sasl:
        for name in ("sasl_plain_username", "sasl_plain_password", "sasl_oauth_token_provider"):
            if values[name] is not None:
                raise ValueError(f"option {name!r} is set but security_protocol is {protocol}, which does not use "
                                 f"SASL; use SASL_PLAINTEXT or SASL_SSL")
    if use_tls and values["ssl_context"] is None:
        if values["ssl_keyfile"] is not None and values["ssl_certfile"] is None:
            raise ValueError("option 'ssl_keyfile' is set without 'ssl_certfile', the certificate it is the key of")
        if values["ssl_certfile"] is not None and values["ssl_keyfile"] is None:
            with open(values["ssl_certfile"], "rb") as f:
                if b"PRIVATE KEY-----" not in f.read():
                    raise ValueError("option 'ssl_certfile' is set without a private key: give 'ssl_keyfile', or "
                                     "put the key in the certificate file")
    if use_sasl:
        mechanism = values["sasl_mechanism"]
        if mechanism == "OAUTHBEARER":
            if values["sasl_oauth_token_provider"] is None:
                raise ValueError("option 'sasl_oauth_token_provider' is required with sasl_mechanism OAUTHBEARER: "
                                 "an object whose token() returns the bearer token")
        else:
            for name in ("sasl_plain_username", "sasl_plain_password"):
                if not values[name]:
                    raise ValueError(f"option {name!r} is required with sasl_mechanism {mechanism}")


def describe() -> str:
    """The options as a table: name, default, unit, meaning (for docs and --help)."""
    return "\n".join(f"{o.name:40} {o.default!s:>12} {o.unit:16} {o.doc}" for o in OPTIONS)
