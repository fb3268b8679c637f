"""Settings: declared once, read from the environment once, validated, frozen."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import (
    PROJECT_ROOT,
    Settings,
    SettingsError,
    declared,
    help_lines,
    markdown_table,
    unknown_variables,
)


def test_defaults_when_unset_or_empty() -> None:
    assert Settings.from_env({}) == Settings()
    # `make` exports empty variables; empty means default, not "connect to ''".
    assert Settings.from_env({"KAFKA_BOOTSTRAP": "", "VOIX_WORKER_ID": " "}) == Settings()


def test_values_are_read_and_topics_prefixed() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "k:1,k:2", "VOIX_TOPIC_PREFIX": "t.",
                           "VOIX_PARTITIONS": "3", "VOIX_WORKER_DATA_DIR": "/x/w",
                           "VOIX_PRODUCE_TIMEOUT_S": "0.5", "VOIX_LOG_LEVEL": "debug",
                           "VOIX_WORKER_URLS": "http://a:1/, http://b:2"})
    assert s.bootstrap_servers == ["k:1", "k:2"] and s.partitions == 3
    assert s.topics.submissions == "t.calls.submissions" and s.topics.jobs == "t.transcription.jobs"
    assert s.topics.keys == "t.voix.api-keys"
    assert s.worker_data_dir == Path("/x/w") and s.produce_timeout_s == 0.5
    assert s.log_level == "DEBUG" and s.worker_urls == ("http://a:1", "http://b:2")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("VOIX_PARTITIONS", "0", "at least 1"), ("VOIX_PARTITIONS", "x", "whole number"),
    ("VOIX_PRODUCE_TIMEOUT_S", "-1", "at least"), ("VOIX_EDGE_PORT", "99999", "at most 65535"),
    ("VOIX_PROCESSING_GUARANTEE", "maybe", "one of"), ("VOIX_LOG_LEVEL", "verbose", "one of"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "one of"), ("VOIX_WORKER_URLS", "worker:6066", "http"),
    ("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "KAFKA_SECURITY_PROTOCOL"),
])
def test_bad_values_are_rejected_by_name(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=name) as raised:
        Settings.from_env({name: value})
    assert says in str(raised.value)


def test_sasl_needs_mechanism_user_and_password(tmp_path: Path) -> None:
    base = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    with pytest.raises(SettingsError, match="KAFKA_SASL_MECHANISM is required"):
        Settings.from_env(base)
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME"):
        Settings.from_env({**base, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})
    password = tmp_path / "password"
    password.write_text("s3cret-value\n")
    s = Settings.from_env({**base, "KAFKA_SASL_MECHANISM": "scram-sha-512",
                           "KAFKA_SASL_USERNAME": "voix",
                           "KAFKA_SASL_PASSWORD_FILE": str(password)})
    assert s.kafka_sasl_password == "s3cret-value" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    with pytest.raises(SettingsError, match="both"):
        Settings.from_env({**base, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
                           "KAFKA_SASL_PASSWORD": "p", "KAFKA_SASL_PASSWORD_FILE": str(password)})
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.from_env({**base, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
                           "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})


def test_mutual_tls_needs_certificate_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="go together"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": str(cert)})


def test_secrets_never_show() -> None:
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "voix",
                           "KAFKA_SASL_PASSWORD": "hunter2-very-secret"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.redacted()["KAFKA_SASL_PASSWORD"] == "***"
    assert "hunter2" not in "\n".join(help_lines())


def test_every_setting_has_a_variable_and_help() -> None:
    names = [spec.env for _, spec, _ in declared()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"(VOIX|KAFKA)_[A-Z0-9_]+", n) for n in names)
    assert all(spec.help for _, spec, _ in declared())


def test_readme_table_is_generated_from_the_declaration() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    assert start in readme and end in readme, "README lost its settings table markers"
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table(), (
        "README's configuration table is out of date: paste the output of "
        "`python -m app settings --markdown` between the markers")


def test_unknown_variables_are_reported() -> None:
    env = {"VOIX_TOPIC_PREFXI": "x", "KAFKA_BOOTSTRAP": "k:1", "KAFKA_PORT": "9092",
           "HOME": "/root"}
    assert unknown_variables(env) == ["VOIX_TOPIC_PREFXI"]


def test_the_broker_scripts_variables_are_not_called_misspelt() -> None:
    import re

    from app.settings import PROJECT_ROOT

    scripts = "".join(p.read_text() for p in (PROJECT_ROOT / "broker").glob("*.sh"))
    read = set(re.findall(r"\$\{?(KAFKA_[A-Z_]+)", scripts))
    assert {"KAFKA_PORT", "KAFKA_MTLS_PORT", "KAFKA_CLUSTER_HEAP_OPTS"} <= read
    assert unknown_variables(dict.fromkeys(read, "1")) == []


def test_cli_says_what_is_wrong_in_one_line_and_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "app", "settings"], capture_output=True,
                            text=True, env={"VOIX_LOG_LEVEL": "verbose", "PATH": "/usr/bin"},
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: VOIX_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'verbose'"]


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().edge_port = 1  # type: ignore[misc]


def test_every_command_and_argument_has_help() -> None:
    import argparse

    from app.__main__ import _parser

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        assert parser.description, f"{path}: no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, f"{path}: {action.dest} has no help"

    walk(_parser(), "python -m app")
