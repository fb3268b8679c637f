"""Smoke check of the SASL_SSL broker (`make secure-up`) with aiokafka, the app's client.

Usage: .venv/bin/python broker/check_secure.py [DATA_DIR]   (default broker/secure)

Reads DATA_DIR/client.env and client-mtls.env as a harness would and checks that
  - SASL_SSL + SCRAM-SHA-512 with the voix user produces and reads back, also via "localhost";
  - a wrong password, a wrong CA, PLAINTEXT (client port and controller port) all fail;
  - mutual TLS works with client-cert.pem, and fails without a certificate or with one
    signed by the wrong CA.
Prints one line per check; exit 0 if all passed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

FAIL_TIMEOUT = 15.0  # seconds a client that must fail gets before we call it "no access"


class LastError(logging.Handler):
    """aiokafka only logs why it could not connect (its exception says "Unable to bootstrap")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


LAST_ERROR = LastError()


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as the broker writes them (no quotes, no comments)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line)
    return dict(pairs)


def sasl_settings(env: dict[str, str], **override: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap_servers": env["KAFKA_BOOTSTRAP"],
        "security_protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "sasl_mechanism": env["KAFKA_SASL_MECHANISM"],
        "sasl_plain_username": env["KAFKA_SASL_USERNAME"],
        "sasl_plain_password": Path(env["KAFKA_SASL_PASSWORD_FILE"]).read_text().strip(),
        "ssl_context": create_ssl_context(cafile=env["KAFKA_SSL_CAFILE"]),
    }
    settings.update(override)
    return settings


def mtls_settings(env: dict[str, str], certfile: str | None = None,
                  keyfile: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": env["KAFKA_BOOTSTRAP"],
        "security_protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "ssl_context": create_ssl_context(cafile=env["KAFKA_SSL_CAFILE"],
                                          certfile=certfile, keyfile=keyfile),
    }


async def round_trip(settings: dict[str, Any]) -> str:
    """Produce 3 records with acks=all to a new topic and read them back."""
    topic = f"check-secure-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=10000, **settings)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"record {i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", group_id=None, **settings)
    await consumer.start()
    try:
        got: list[bytes] = []
        while len(got) < 3:
            batches = await consumer.getmany(timeout_ms=10000)
            if not batches:
                raise RuntimeError(f"read back only {len(got)} of 3 records")
            got += [r.value for records in batches.values() for r in records if r.value]
    finally:
        await consumer.stop()
    return f"produced and read back 3 records on {topic}"


async def must_fail(settings: dict[str, Any]) -> str:
    """A producer that must not get in: the error (or the timeout) it met."""
    producer = AIOKafkaProducer(request_timeout_ms=5000, metadata_max_age_ms=5000, **settings)
    LAST_ERROR.message = ""
    try:
        await asyncio.wait_for(producer.start(), FAIL_TIMEOUT)
        await asyncio.wait_for(producer.send_and_wait("check-secure-denied", b"x"), FAIL_TIMEOUT)
    except Exception as e:  # any refusal (asyncio.TimeoutError too) counts: we print which
        return f"refused ({type(e).__name__}): {LAST_ERROR.message or e}"[:240]
    finally:
        await producer.stop()
    raise RuntimeError("got in and produced: it should not have")


async def main(data: Path) -> int:
    logging.getLogger("aiokafka").addHandler(LAST_ERROR)
    logging.getLogger("aiokafka").propagate = False  # no tracebacks: the cause is printed
    env = read_env(data / "client.env")
    mtls = read_env(data / "client-mtls.env")
    tls = data / "tls"
    host, port = env["KAFKA_BOOTSTRAP"].rsplit(":", 1)
    controller_port = int(port) + 1000  # kafka.sh's default KAFKA_CONTROLLER_PORT
    checks = {
        "SASL_SSL round trip": round_trip(sasl_settings(env)),
        "SASL_SSL via localhost (DNS SAN)": round_trip(
            sasl_settings(env, bootstrap_servers=f"localhost:{port}")),
        "wrong password": must_fail(sasl_settings(env, sasl_plain_password="wrong")),
        "unknown user": must_fail(sasl_settings(env, sasl_plain_username="mallory")),
        "wrong CA": must_fail(sasl_settings(
            env, ssl_context=create_ssl_context(cafile=str(tls / "wrong-ca.pem")))),
        "PLAINTEXT on the client port": must_fail(
            {"bootstrap_servers": env["KAFKA_BOOTSTRAP"], "security_protocol": "PLAINTEXT"}),
        "PLAINTEXT on the controller port": must_fail(
            {"bootstrap_servers": f"{host}:{controller_port}", "security_protocol": "PLAINTEXT"}),
        "SASL_SSL as voix on the controller port": must_fail(
            sasl_settings(env, bootstrap_servers=f"{host}:{controller_port}")),
        "mTLS round trip": round_trip(mtls_settings(
            mtls, mtls["KAFKA_SSL_CERTFILE"], mtls["KAFKA_SSL_KEYFILE"])),
        "mTLS without a client certificate": must_fail(mtls_settings(mtls)),
        "mTLS with a wrong-CA client certificate": must_fail(mtls_settings(
            mtls, str(tls / "wrong-client-cert.pem"), str(tls / "wrong-client-key.pem"))),
    }
    failed = 0
    for name, check in checks.items():
        try:
            print(f"PASS {name}: {await check}", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "broker/secure"))))
