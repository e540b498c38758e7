"""Settings: local secrets generated once, production refuses to start unsafe, Secrets Manager read when asked."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from shared.config import load_settings
from shared.errors import ConfigError

PRODUCTION = {
    "agentpay_env": "production",
    "database_url": "postgresql://u:p@db.example/agentpay",
    "upstash_redis_rest_url": "https://example.upstash.io",
    "upstash_redis_rest_token": "tok-" + "x" * 40,
    "qstash_token": "qs-" + "x" * 40,
    "qstash_current_signing_key": "sig_current_" + "x" * 20,
    "qstash_next_signing_key": "sig_next_" + "x" * 20,
    "stripe_secret_key": "sk_test_" + "x" * 24,
    "resend_api_key": "re_" + "x" * 24,
    "approval_jwt_secret": "j" * 48,
    "session_secret": "s" * 48,
    "signup_token": "signup-" + "x" * 24,
    "public_base_url": "https://pay.example.com",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [*PRODUCTION, "agentpay_secrets_arn", "redis_url", "stripe_api_base", "sentry_dsn"]:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("AGENTPAY_HOME", str(tmp_path))


def test_local_mode_generates_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    first = load_settings(agentpay_env="local")
    second = load_settings(agentpay_env="local")
    assert first.approval_jwt_secret and len(first.approval_jwt_secret) >= 32
    assert first.approval_jwt_secret == second.approval_jwt_secret
    assert first.qstash_current_signing_key == second.qstash_current_signing_key
    assert first.qstash_current_signing_key != first.qstash_next_signing_key
    stored = tmp_path / "secrets.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text())["session_secret"] == first.session_secret


def test_production_with_everything_set_starts() -> None:
    settings = load_settings(**PRODUCTION)
    assert not settings.is_local


@pytest.mark.parametrize("missing", ["approval_jwt_secret", "stripe_secret_key", "database_url", "signup_token"])
def test_production_refuses_to_start_without_a_secret(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing.upper()):
        load_settings(**{**PRODUCTION, missing: None})


@pytest.mark.parametrize("placeholder", ["changeme", "", "placeholder"])
def test_production_refuses_placeholder_secrets(placeholder: str) -> None:
    with pytest.raises(ConfigError, match="APPROVAL_JWT_SECRET"):
        load_settings(**{**PRODUCTION, "approval_jwt_secret": placeholder})


def test_production_refuses_a_short_jwt_secret() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings(**{**PRODUCTION, "approval_jwt_secret": "short-but-not-a-placeholder"})


def test_production_reads_secrets_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    secret_values = {k.upper(): v for k, v in PRODUCTION.items() if k not in ("agentpay_env", "public_base_url")}
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="agentpay/prod", SecretString=json.dumps(secret_values)
        )["ARN"]
        settings = load_settings(
            agentpay_env="production", agentpay_secrets_arn=arn, public_base_url="https://pay.example.com"
        )
    assert settings.stripe_secret_key == PRODUCTION["stripe_secret_key"]
    assert settings.approval_jwt_secret == PRODUCTION["approval_jwt_secret"]


def test_an_environment_variable_wins_over_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_from_env_" + "y" * 10)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="agentpay/prod2", SecretString=json.dumps({k.upper(): v for k, v in PRODUCTION.items()})
        )["ARN"]
        settings = load_settings(agentpay_secrets_arn=arn)
    assert settings.stripe_secret_key == "sk_test_from_env_" + "y" * 10


def test_settings_come_from_environment_variables_named_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example/agentpay")
    monkeypatch.setenv("redis_url", "redis://cache.example:6379/0")
    monkeypatch.setenv("Db_Pool_Max_Size", "3")
    settings = load_settings()
    assert settings.database_url == "postgresql://u:p@db.example/agentpay"
    assert settings.redis_url == "redis://cache.example:6379/0"
    assert settings.db_pool_max_size == 3


def test_settings_with_another_variable_name_read_that_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPAY_KEY_MODE", "live")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "agentpay-PaymentRequestFunction-1A2B3C")
    monkeypatch.setenv("AGENTPAY_DUPLICATE_DELIVERIES", "3")
    settings = load_settings()
    assert (settings.key_mode, settings.in_lambda, settings.duplicate_deliveries) == ("live", True, 3)


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/agentpay")
    monkeypatch.setenv("AGENTPAY_KEY_MODE", "live")
    assert load_settings(database_url="postgresql://from-argument/agentpay").database_url.endswith("argument/agentpay")
    assert load_settings(key_mode="test").key_mode == "test"
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(**{**PRODUCTION, "database_url": None})


def test_a_malformed_environment_variable_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_MAX_SIZE", "ten")
    with pytest.raises(ValidationError, match="db_pool_max_size"):
        load_settings()


def test_a_charge_lease_shorter_than_its_stripe_calls_is_refused_at_start() -> None:
    """A lease that can run out under a live Stripe call lets a second worker create a second PaymentIntent."""
    with pytest.raises(ValueError, match="CHARGE_LEASE_SECONDS .* STRIPE_TIMEOUT_SECONDS"):
        load_settings(**PRODUCTION, charge_lease_seconds=30, stripe_timeout_seconds=10)
    assert load_settings(**PRODUCTION, charge_lease_seconds=60, stripe_timeout_seconds=10).charge_lease_seconds == 60


def test_a_stripe_that_never_answers_is_given_up_on_after_the_configured_timeout() -> None:
    import socket
    import threading
    import time

    import stripe

    from shared.vendors.stripe import create_client

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    client = create_client("sk_test_x", f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_seconds=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(stripe.APIConnectionError):
            client.v1.customers.list()
        assert time.monotonic() - started < 10, "Stripe's own default would wait 80 s, past a charge's lease"
    finally:
        listener.close()
        for conn in held:
            conn.close()
