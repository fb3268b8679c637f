"""How every Kafka client of the project connects: servers, TLS and SASL from the settings.

The edge's producers, the Faust worker (its consumer, producer, changelog and admin), topic
admin, replay, tail, the key store and the bench's baselines all take their connection
arguments from here, so a secured cluster is configured once, with the KAFKA_* settings.

`diagnose` answers the question aiokafka leaves open: its "Unable to bootstrap" hides whether
the password, the CA, the mechanism or the network is wrong. It connects once to each
bootstrap server and names the cause in one sentence (never the password).
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from app.settings import Settings


@cache
def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (the system's CAs unless KAFKA_SSL_CAFILE)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka's security arguments (for producers, consumers and the admin client)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        kwargs.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    return kwargs


def client_kwargs(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Everything an aiokafka client needs to reach the cluster, plus `extra`."""
    return {"bootstrap_servers": settings.bootstrap_servers, **security_kwargs(settings),
            **extra}


def env_client_kwargs(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """client_kwargs for `bootstrap` with the security settings of the environment (the KAFKA_*
    variables): for tools that are given a broker address (the bench's baseline loops)."""
    return client_kwargs(Settings.from_env().with_overrides(kafka_bootstrap=bootstrap), **extra)


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """The Faust app's `broker` and `broker_credentials` for the same cluster."""
    import faust

    credentials: Any = None
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context(settings))
    elif protocol == "SSL":
        credentials = faust.SSLCredentials(ssl_context(settings))
    return {"broker": [f"kafka://{server}" for server in settings.bootstrap_servers],
            "broker_credentials": credentials}


def describe(settings: Settings) -> str:
    """The cluster as a log line may name it (no secrets)."""
    who = (f" as {settings.kafka_sasl_username} ({settings.kafka_sasl_mechanism})"
           if settings.kafka_security_protocol.startswith("SASL_") else "")
    return f"{settings.kafka_bootstrap} over {settings.kafka_security_protocol}{who}"


@dataclass(frozen=True, slots=True, order=True)
class KafkaProblem:
    """Why we cannot use the cluster. `permanent`: retrying with the same settings will not
    help (credentials, CA, mechanism), as opposed to a broker that is down or starting."""

    rank: int  # how specific the cause is; the most specific of several servers is reported
    message: str
    permanent: bool = False


class KafkaUnusable(Exception):
    """The cluster cannot be used with these settings; the message names the cause."""


async def diagnose(settings: Settings, timeout_s: float = 5.0) -> KafkaProblem | None:
    """Connect once to each bootstrap server; None if one of them lets us in, else the most
    specific reason why none did."""
    problems: list[KafkaProblem] = []
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(
                host.strip("[]"), int(port), client_id="voix-diagnose",
                request_timeout_ms=int(timeout_s * 1000), **security_kwargs(settings)),
                timeout_s)
        except (OSError, KafkaError, TimeoutError, ValueError) as exc:
            problems.append(_problem(settings, server, exc))
            continue
        conn.close()
        return None
    if not problems:
        return KafkaProblem(9, f"KAFKA_BOOTSTRAP names no server ({settings.kafka_bootstrap!r})",
                            permanent=True)
    return max(problems)


# The cause this process last logged, whichever client logged it: the edge's producer and its
# key directory meet the same wrong password at the same moment, and one line is enough.
_said: dict[str, str] = {}


def first_time_said(cause: str) -> bool:
    """True the first time this process is about to log `cause` (until `said_recovered`):
    every component that retries against Kafka logs a cause only if this says so."""
    if _said.get("cause") == cause:
        return False
    _said["cause"] = cause
    return True


def said_recovered() -> None:
    """We reached Kafka again: the next problem is worth a line, even the same one."""
    _said.pop("cause", None)


async def cause_of(settings: Settings, exc: BaseException) -> str:
    """Why a client could not use the cluster, in one sentence: what `diagnose` finds for a
    failed connection (aiokafka only says "Unable to bootstrap"), else the error itself."""
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, KafkaConnectionError | OSError):
        problem = await diagnose(settings)
        if problem is not None:
            return problem.message
    text = str(exc)  # aiokafka's errors already start with their class name
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


async def wait_until_usable(settings: Settings, wait_s: float) -> None:
    """Return once the cluster lets us in; raise KafkaUnusable at once for a problem that
    waiting cannot fix, or after `wait_s` for one that it might have."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        problem = await diagnose(settings)
        if problem is None:
            return
        if problem.permanent or loop.time() >= deadline:
            raise KafkaUnusable(problem.message)
        await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))


def _problem(settings: Settings, server: str, exc: BaseException) -> KafkaProblem:
    protocol = settings.kafka_security_protocol
    if isinstance(exc, SaslAuthenticationFailed):
        return KafkaProblem(9, (
            f"Kafka at {server} refused our credentials: SASL authentication as "
            f"{settings.kafka_sasl_username!r} with {settings.kafka_sasl_mechanism} failed "
            "(check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"), True)
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaProblem(9, (
            f"Kafka at {server} does not offer SASL mechanism {settings.kafka_sasl_mechanism} "
            f"(KAFKA_SASL_MECHANISM): {exc}"), True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = settings.kafka_ssl_cafile or "the system trust store"
        return KafkaProblem(8, (
            f"TLS to Kafka at {server} failed: the broker's certificate is not trusted by {ca} "
            f"(KAFKA_SSL_CAFILE): {exc.verify_message}"), True)
    if isinstance(exc, ssl.SSLError):
        return KafkaProblem(7, (
            f"TLS to Kafka at {server} failed ({exc.reason or exc}): is the listener {protocol}? "
            "With mutual TLS check KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"), True)
    if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
        return KafkaProblem(2, f"Kafka is not reachable at {server}: connection refused")
    if isinstance(exc, TimeoutError):
        return KafkaProblem(3, (
            f"Kafka at {server} did not answer over {protocol} in time: the broker is down or "
            "busy, or KAFKA_SECURITY_PROTOCOL is not the listener's protocol"))
    if isinstance(exc, KafkaError):
        return KafkaProblem(4, (
            f"Kafka at {server} closed the connection over {protocol} ({exc!r}): is "
            "KAFKA_SECURITY_PROTOCOL the listener's protocol?"))
    return KafkaProblem(1, f"Kafka is not reachable at {server}: {exc}")
