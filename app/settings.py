"""One frozen settings object, declared once, read from the environment once and passed down.

Every setting is one dataclass field below: its type is the annotation, its default the field
default, and `setting(...)` gives its environment variable, help text and allowed range. From
that one declaration come `Settings.from_env`, the `--help` epilog, `python -m app settings`
and the README's configuration table (a unit test keeps the README in sync).
"""

from __future__ import annotations

import os
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, Union

from app.contracts.topics import TopicNames

# Where the project's own files live (broker/ script, docs); never used for runtime state,
# which defaults to paths relative to the working directory (`var/...`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("auto", "json", "text")
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
WORKER_STORES = ("rocksdb://", "memory://")

# Variables with our prefixes that are not app settings but are read by the broker script and
# the test/bench harnesses; `unknown_variables` does not warn about them.
OTHER_KNOWN_VARIABLES = frozenset({
    "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_DATA_DIR", "KAFKA_HEAP_OPTS", "KAFKA_VERSION",
    "KAFKA_UP_TIMEOUT", "KAFKA_SECURITY", "KAFKA_CLUSTER_DIR", "KAFKA_CLUSTER_PORT",
    "KAFKA_SECURE_PORT", "KAFKA_SECURE_DATA_DIR", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_MTLS_PORT", "KAFKA_CLUSTER_HEAP_OPTS",
    "VOIX_FAULTS_CALLS", "VOIX_FAULTS_RESULTS", "VOIX_LOADGEN_KEYS", "VOIX_BENCH_QUICK",
    "VOIX_TEST_SECURE_ENV",
})


class SettingsError(ValueError):
    """A setting has a value we cannot use. The message names the variable."""


@dataclass(frozen=True, slots=True)
class Spec:
    """What the environment variable behind one field is, and what it may hold."""

    env: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    # How the default reads in --help and the README, when `default` itself would mislead.
    shown_default: str | None = None


def setting(env: str, help: str, *, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] = (),
            secret: bool = False, shown_default: str | None = None) -> dict[str, Spec]:
    return {"spec": Spec(env, help, minimum, maximum, choices, secret, shown_default)}


def _field(default: Any, env: str, help: str, **kw: Any) -> Any:
    spec = setting(env, help, **kw)
    return field(default=default, metadata=spec, repr=not spec["spec"].secret)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the edge, the worker and the CLI need to know about their environment."""

    # ---- Kafka: every client the project creates uses these ----
    kafka_bootstrap: str = _field(
        "127.0.0.1:9092", "KAFKA_BOOTSTRAP",
        "Kafka bootstrap servers, comma-separated host:port; when set, `make run`/`make test` "
        "use it instead of starting the local broker")
    kafka_security_protocol: str = _field(
        "PLAINTEXT", "KAFKA_SECURITY_PROTOCOL", "how clients talk to Kafka",
        choices=SECURITY_PROTOCOLS)
    kafka_sasl_mechanism: str | None = _field(
        None, "KAFKA_SASL_MECHANISM", "SASL mechanism (required with SASL_*)",
        choices=SASL_MECHANISMS)
    kafka_sasl_username: str | None = _field(None, "KAFKA_SASL_USERNAME", "SASL user name")
    kafka_sasl_password: str | None = _field(
        None, "KAFKA_SASL_PASSWORD", "SASL password (never logged; prefer the _FILE form)",
        secret=True)
    kafka_sasl_password_file: Path | None = _field(
        None, "KAFKA_SASL_PASSWORD_FILE", "file holding the SASL password (read at start)")
    kafka_ssl_cafile: Path | None = _field(
        None, "KAFKA_SSL_CAFILE", "PEM CA bundle that signed the brokers' certificates "
        "(default: the system's trust store)")
    kafka_ssl_certfile: Path | None = _field(
        None, "KAFKA_SSL_CERTFILE", "PEM client certificate, for mutual TLS")
    kafka_ssl_keyfile: Path | None = _field(
        None, "KAFKA_SSL_KEYFILE", "PEM private key of KAFKA_SSL_CERTFILE, for mutual TLS")

    # ---- topics ----
    topic_prefix: str = _field("", "VOIX_TOPIC_PREFIX", "prefix added to every topic name")
    topic_submissions: str = _field("calls.submissions", "VOIX_TOPIC_SUBMISSIONS",
                                    "the edge's submissions topic")
    topic_records: str = _field("calls.records", "VOIX_TOPIC_RECORDS",
                                "compacted merged-call topic")
    topic_jobs: str = _field("transcription.jobs", "VOIX_TOPIC_JOBS",
                             "transcription jobs topic")
    topic_deadletter: str = _field("calls.deadletter", "VOIX_TOPIC_DEADLETTER",
                                   "dead-letter topic")
    topic_status: str = _field("transcription.status", "VOIX_TOPIC_STATUS",
                               "the transcriber's status topic")
    topic_commands: str = _field("calls.commands", "VOIX_TOPIC_COMMANDS",
                                 "the workers' control topic (replay, reprocess, expire)")
    topic_keys: str = _field("voix.api-keys", "VOIX_TOPIC_KEYS",
                             "compacted API-key topic every edge and worker follows")
    topic_routed: str = _field("calls.routed", "VOIX_TOPIC_ROUTED",
                               "internal: statuses and commands re-keyed onto their call's "
                               "partition by the workers")
    partitions: int = _field(6, "VOIX_PARTITIONS", "partitions of every topic",
                             minimum=1, maximum=10_000)
    replication_factor: int | None = _field(
        None, "VOIX_REPLICATION_FACTOR",
        "replication factor of created topics, Faust's included", minimum=1, maximum=32,
        shown_default="min(3, brokers)")
    min_insync_replicas: int | None = _field(
        None, "VOIX_MIN_INSYNC_REPLICAS",
        "min.insync.replicas of created topics", minimum=1, maximum=32,
        shown_default="replication factor - 1 (at least 1)")

    # ---- the edge ----
    edge_host: str = _field("127.0.0.1", "VOIX_EDGE_HOST", "edge listen address")
    edge_port: int = _field(8080, "VOIX_EDGE_PORT", "edge listen port",
                            minimum=1, maximum=65535)
    max_body_bytes: int = _field(16 * 1024, "VOIX_MAX_BODY_BYTES",
                                 "largest accepted /submit body (413 above)",
                                 minimum=256, maximum=1024 * 1024)
    produce_timeout_s: float = _field(
        5.0, "VOIX_PRODUCE_TIMEOUT_S", "wait for the broker's ack before answering 503",
        minimum=0.1, maximum=120)
    retry_after_s: int = _field(2, "VOIX_RETRY_AFTER_S", "Retry-After on 503",
                                minimum=1, maximum=3600)
    producer_linger_ms: int = _field(2, "VOIX_PRODUCER_LINGER_MS",
                                     "edge producer linger before a batch is sent",
                                     minimum=0, maximum=1000)
    rate_limit_per_s: float = _field(
        100.0, "VOIX_RATE_LIMIT_PER_S",
        "requests per second per API key and edge process (429 above)",
        minimum=0.001, maximum=1e9)
    rate_limit_burst: int = _field(200, "VOIX_RATE_LIMIT_BURST",
                                   "burst per API key and edge process before 429",
                                   minimum=1, maximum=1_000_000_000)
    client_timeout_s: float = _field(
        15.0, "VOIX_CLIENT_TIMEOUT_S",
        "a body must arrive within it (408); idle connections are closed after it",
        minimum=0.1, maximum=3600)
    edge_max_pending: int = _field(
        4096, "VOIX_EDGE_MAX_PENDING",
        "records waiting for the producer per edge process; when full, requests wait, then 503",
        minimum=1, maximum=1_000_000)
    edge_producers: int = _field(
        1, "VOIX_EDGE_PRODUCERS",
        "Kafka producers per edge process, chosen by key (aiokafka keeps one request in flight "
        "per producer)", minimum=1, maximum=64)
    worker_urls: tuple[str, ...] = _field(
        ("http://127.0.0.1:6066",), "VOIX_WORKER_URLS",
        "comma-separated worker web URLs the edge asks for GET /calls")
    call_status_timeout_s: float = _field(
        3.0, "VOIX_CALL_STATUS_TIMEOUT_S",
        "GET /calls gives up (503) after this long without the owner's answer",
        minimum=0.1, maximum=120)

    # ---- the worker ----
    worker_id: str = _field("voix-worker", "VOIX_WORKER_ID",
                            "Faust app id: consumer group and table topic prefix")
    worker_store: str = _field("rocksdb://", "VOIX_WORKER_STORE", "table store",
                               choices=WORKER_STORES)
    worker_data_dir: Path = _field(Path("var/worker"), "VOIX_WORKER_DATA_DIR",
                                   "worker state directory")
    worker_web_host: str = _field(
        "127.0.0.1", "VOIX_WORKER_WEB_HOST",
        "address the worker's web port (health, metrics, call state) binds to")
    worker_web_port: int = _field(6066, "VOIX_WORKER_WEB_PORT",
                                  "worker web port (health, metrics, call state)",
                                  minimum=1, maximum=65535)
    worker_advertised_url: str | None = _field(
        None, "VOIX_WORKER_ADVERTISED_URL",
        "URL other workers use to reach this worker's web port",
        shown_default="http://<VOIX_WORKER_WEB_HOST or host name>:<port>")
    worker_fetch_wait_ms: int = _field(
        20, "VOIX_WORKER_FETCH_WAIT_MS",
        "longest a worker's fetch waits at the broker (Faust hard-codes 1500 ms)",
        minimum=1, maximum=10_000)
    worker_instance_id: str = _field(
        "", "VOIX_WORKER_INSTANCE_ID",
        "static group member id (KIP-345), unique per worker: a restarted worker takes its "
        "partitions back at once", shown_default="a hash of the host name and the data dir")
    worker_max_deadletters: int = _field(
        1000, "VOIX_WORKER_MAX_DEADLETTERS",
        "more dead letters than this within a minute stop the worker (0: no limit)",
        minimum=0, maximum=1_000_000_000)
    processing_guarantee: str = _field(
        "at_least_once", "VOIX_PROCESSING_GUARANTEE",
        "at_least_once, or exactly_once (not loss-free here: docs/reliability.md)",
        choices=PROCESSING_GUARANTEES)
    state_ttl_s: int = _field(7 * 24 * 60 * 60, "VOIX_STATE_TTL_S",
                              "forget a call this long after its last change",
                              minimum=1, maximum=10 * 365 * 24 * 3600)
    expiry_sweep_s: float = _field(60.0, "VOIX_EXPIRY_SWEEP_S",
                                   "how often each worker looks for expired calls",
                                   minimum=0.01, maximum=86_400)

    # ---- logs ----
    log_level: str = _field("INFO", "VOIX_LOG_LEVEL", "log level", choices=LOG_LEVELS)
    log_format: str = _field(
        "auto", "VOIX_LOG_FORMAT",
        "json (one object a line) or text; auto: text on a terminal, json otherwise",
        choices=LOG_FORMATS)

    # ---- derived, not settings of their own ----

    @property
    def topics(self) -> TopicNames:
        p = self.topic_prefix
        return TopicNames(
            submissions=p + self.topic_submissions, records=p + self.topic_records,
            jobs=p + self.topic_jobs, deadletter=p + self.topic_deadletter,
            status=p + self.topic_status, commands=p + self.topic_commands,
            keys=p + self.topic_keys, routed=p + self.topic_routed)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    @property
    def worker_url(self) -> str:
        """The URL this worker advertises to the others."""
        if self.worker_advertised_url:
            return self.worker_advertised_url.rstrip("/")
        host = self.worker_web_host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}:{self.worker_web_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every declared variable; an empty variable means "the default". Raises
        SettingsError naming the first variable that is wrong, and why."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f, spec, kind in declared():
            raw = env.get(spec.env)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(spec, kind, raw.strip())
        password_file = values.get("kafka_sasl_password_file")
        if password_file is not None:
            if "kafka_sasl_password" in values:
                raise SettingsError("KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both "
                                    "set; set one")
            try:
                values["kafka_sasl_password"] = password_file.read_text().strip()
            except OSError as exc:
                raise SettingsError(f"KAFKA_SASL_PASSWORD_FILE: cannot read {password_file}: "
                                    f"{exc.strerror}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Rules that span several settings."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism is None:
                raise SettingsError(f"KAFKA_SASL_MECHANISM is required with "
                                    f"KAFKA_SECURITY_PROTOCOL={protocol} "
                                    f"(one of {', '.join(SASL_MECHANISMS)})")
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise SettingsError(f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or "
                                    f"KAFKA_SASL_PASSWORD_FILE) are required with "
                                    f"KAFKA_SECURITY_PROTOCOL={protocol}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise SettingsError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together "
                                "(mutual TLS); set both or neither")
        uses_tls = protocol in ("SSL", "SASL_SSL")
        for name, path in (("KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
                           ("KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile),
                           ("KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile)):
            if path is None:
                continue
            if not uses_tls:
                raise SettingsError(f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} "
                                    "does not use TLS (use SSL or SASL_SSL)")
            if not path.is_file():
                raise SettingsError(f"{name}: no such file {path}")
        for url in self.worker_urls:
            if not url.startswith(("http://", "https://")):
                raise SettingsError(f"VOIX_WORKER_URLS: {url!r} is not an http(s) URL")

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by CLI flags and tests), checked again."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            _check_range(_declared_by_name()[name][1], value)
        updated = replace(self, **changes)
        updated.check()
        return updated

    def redacted(self) -> dict[str, str]:
        """Every setting by variable name, with secrets masked: safe to print or log."""
        out = {}
        for f, spec, _ in declared():
            value = getattr(self, f.name)
            out[spec.env] = "***" if spec.secret and value else _show(value)
        return out


# ---- the declaration machinery ---------------------------------------------------------------

@cache
def declared() -> tuple[tuple[Any, Spec, Any], ...]:
    """(field, spec, type) of every setting, in declaration order."""
    hints = typing.get_type_hints(Settings)
    return tuple((f, f.metadata["spec"], hints[f.name]) for f in fields(Settings))


@cache
def _declared_by_name() -> dict[str, tuple[Any, Spec, Any]]:
    return {f.name: (f, spec, kind) for f, spec, kind in declared()}


def _optional_inner(kind: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _parse(spec: Spec, kind: Any, raw: str) -> Any:
    base = _optional_inner(kind)
    value: Any
    if base is int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{spec.env} must be a whole number, got {raw!r}") from None
    elif base is float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{spec.env} must be a number, got {raw!r}") from None
    elif base is Path:
        value = Path(raw)
    elif typing.get_origin(base) is tuple:
        value = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
        if not value:
            raise SettingsError(f"{spec.env} must list at least one value")
    else:
        value = raw
        if spec.choices:
            # Case-insensitive for upper-case vocabularies (log levels, protocols).
            matched = [c for c in spec.choices if c.lower() == raw.lower()]
            if not matched:
                raise SettingsError(f"{spec.env} must be one of {', '.join(spec.choices)}, "
                                    f"got {raw!r}")
            value = matched[0]
    _check_range(spec, value)
    return value


def _check_range(spec: Spec, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if spec.choices and value is not None and value not in spec.choices:
            raise SettingsError(f"{spec.env} must be one of {', '.join(spec.choices)}, "
                                f"got {value!r}")
        return
    if spec.minimum is not None and value < spec.minimum:
        raise SettingsError(f"{spec.env} must be at least {_number(spec.minimum)}, "
                            f"got {_number(value)}")
    if spec.maximum is not None and value > spec.maximum:
        raise SettingsError(f"{spec.env} must be at most {_number(spec.maximum)}, "
                            f"got {_number(value)}")


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _allowed(spec: Spec) -> str:
    if spec.choices:
        return " | ".join(spec.choices)
    if spec.minimum is not None or spec.maximum is not None:
        lo = "" if spec.minimum is None else _number(spec.minimum)
        hi = "" if spec.maximum is None else _number(spec.maximum)
        return f"{lo}..{hi}"
    return ""


def default_text(f: Any, spec: Spec) -> str:
    if spec.shown_default is not None:
        return spec.shown_default
    shown = _show(f.default)
    return shown if shown else "(empty)"


def help_lines() -> Iterator[str]:
    """The environment section of `--help`: variable, default, range, help."""
    for f, spec, _ in declared():
        allowed = _allowed(spec)
        extra = f"; {allowed}" if allowed else ""
        yield f"  {spec.env:28} {spec.help} (default {default_text(f, spec)}{extra})"


def markdown_table() -> str:
    """The README's configuration table, from the same declaration."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for f, spec, _ in declared():
        default = default_text(f, spec)
        default = f"`{default}`" if default != "(empty)" else "empty"
        allowed = _allowed(spec).replace("|", "\\|")
        rows.append(f"| `{spec.env}` | {default} | {allowed} | {spec.help} |")
    return "\n".join(rows)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """VOIX_* and KAFKA_* variables that no setting reads: most likely misspelt."""
    env = os.environ if env is None else env
    known = {spec.env for _, spec, _ in declared()} | OTHER_KNOWN_VARIABLES
    return sorted(name for name in env
                  if name.startswith(("VOIX_", "KAFKA_")) and name not in known)


def warn_unknown_variables(env: Mapping[str, str] | None = None) -> None:
    for name in unknown_variables(env):
        print(f"warning: {name} is not a voix-ingest setting (misspelt?); "
              "`python -m app settings` lists them", file=sys.stderr)
