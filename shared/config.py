"""The one validated settings object; the only module that reads the environment."""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import ConfigError

# Values that mean "nobody set this": refused outside local mode.
# Until its PaymentIntent is recorded a charge makes two Stripe calls (a list of recent intents, a create); a lease
# lasting four of them leaves room for a slow database in between.
STRIPE_CALLS_PER_CHARGE = 4
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "placeholder", "xxx", "todo", "replace-me"}

# Secrets that production must have, and the local file that holds the generated ones.
_LOCAL_SECRETS_FILE = "secrets.json"
_GENERATED_SECRETS = (
    "approval_jwt_secret",
    "session_secret",
    "qstash_current_signing_key",
    "qstash_next_signing_key",
)


class Settings(BaseModel):
    """Each setting from its argument, else its environment variable (named as the field or its alias, in any case),
    else its default. A plain model rather than pydantic-settings' BaseSettings: that library (with the sources it
    loads: CLI, dotenv, JSON, cloud) cost every cold start about 10 ms, to read a dozen variables."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    agentpay_env: Literal["local", "production"] = "local"
    agentpay_home: Path = Field(default_factory=lambda: Path.cwd() / ".agentpay")
    agentpay_port: int = 8000
    agentpay_host: str = "127.0.0.1"
    public_base_url: str | None = None  # where approval links point; defaults to the local server
    key_mode: Literal["test", "live"] = Field(default="test", alias="agentpay_key_mode")
    in_lambda: bool = Field(default=False, alias="aws_lambda_function_name")

    database_url: str | None = None
    redis_url: str | None = None
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: str | None = None
    qstash_token: str | None = None
    qstash_url: str | None = None
    charge_worker_url: str | None = None  # production: the charge worker's function URL
    email_worker_url: str | None = None  # production: the email and webhook worker's function URL
    qstash_current_signing_key: str | None = None
    qstash_next_signing_key: str | None = None
    stripe_secret_key: str | None = None
    stripe_api_base: str | None = None
    resend_api_key: str | None = None
    email_from: str = "AgentPay <approvals@agentpay.local>"
    sentry_dsn: str | None = None
    approval_jwt_secret: str | None = None
    session_secret: str | None = None
    signup_token: str | None = None
    agentpay_secrets_arn: str | None = None

    db_pool_max_size: int = 10
    # The event loop's pool, which payment requests write through: more connections let more commits wait on the
    # WAL flush together (32 clients in `make bench`: 16 per worker gave ~18 % more decisions/s than 10).
    db_async_pool_max_size: int = 16
    db_connect_timeout: float = 3.0
    approval_ttl_seconds: int = 24 * 3600
    charge_lease_seconds: int = 60  # another delivery of a charge job waits this long for the first one
    # Each Stripe call gives up after this. A charge's lease must outlast its calls until its PaymentIntent is
    # recorded: a lease that ran out under a live create lets a second worker create a second PaymentIntent (Stripe's
    # idempotency key would hand back the first; a Stripe-compatible server without one would not).
    stripe_timeout_seconds: float = 10.0
    charge_redrive_seconds: int = 180  # an approved transaction with no charge result after this is charged again
    # A job still unpublished after this is published again by the sweep: its publisher died (a Lambda cut short, a
    # local server whose dispatcher queue went with its process) or the transport failed.
    job_republish_seconds: float = Field(default=60.0, gt=0)
    sweep_interval_seconds: float = 30.0  # the local server's sweep; production runs it every 5 minutes
    # Failed authentications a client address, and a key prefix, may make in a minute; past that they are answered
    # 429 (shared.http.throttle). Valid keys are never counted or slowed.
    auth_failures_per_address: int = Field(default=20, ge=1)
    auth_failures_per_key: int = Field(default=10, ge=1)
    # Organizations one client address may sign up in an hour outside local mode.
    signups_per_address_per_hour: int = Field(default=5, ge=1)
    # Fault injection for the local dispatcher: deliver every job this many times, in parallel.
    duplicate_deliveries: int = Field(default=1, alias="agentpay_duplicate_deliveries")

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(), **_by_alias(values)})

    @model_validator(mode="before")
    @classmethod
    def _lambda_flag(cls, data: Any) -> Any:
        # AWS sets AWS_LAMBDA_FUNCTION_NAME to the function's name; we only care whether it is there.
        if isinstance(data, dict) and data.get("aws_lambda_function_name"):
            data = {**data, "aws_lambda_function_name": True}
        return data

    @model_validator(mode="after")
    def _lease_outlasts_stripe_calls(self) -> Settings:
        if self.charge_lease_seconds <= STRIPE_CALLS_PER_CHARGE * self.stripe_timeout_seconds:
            raise ValueError(
                f"CHARGE_LEASE_SECONDS ({self.charge_lease_seconds}) must be longer than {STRIPE_CALLS_PER_CHARGE}"
                f" x STRIPE_TIMEOUT_SECONDS ({self.stripe_timeout_seconds}): a charge's lease must outlast its"
                " Stripe calls"
            )
        return self

    @property
    def is_local(self) -> bool:
        return self.agentpay_env == "local"

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.agentpay_host}:{self.agentpay_port}").rstrip("/")

    @property
    def outbox_dir(self) -> Path:
        return self.agentpay_home / "outbox"

    def require(self, name: str) -> str:
        """The value of a setting that must be present at this point, or a ConfigError naming it."""
        value = getattr(self, name)
        if value is None or str(value).strip().lower() in _PLACEHOLDERS:
            raise ConfigError(f"{name.upper()} is not set")
        return str(value)


def _names(field_name: str) -> list[str]:
    """The names that set a field, the preferred first: its alias (an environment variable's name), then its own."""
    alias = Settings.model_fields[field_name].alias
    return [alias, field_name] if alias else [field_name]


def _from_environment() -> dict[str, str]:
    """The environment's values of the settings, by the name each was found under; names match in any case."""
    environment = {name.lower(): value for name, value in os.environ.items()}
    found: dict[str, str] = {}
    for field_name in Settings.model_fields:
        name = next((name for name in _names(field_name) if name in environment), None)
        if name is not None:
            found[name] = environment[name]
    return found


def _by_alias(values: dict[str, Any]) -> dict[str, Any]:
    """Arguments under the preferred name of their field (so that they win over the environment), matched in any
    case; arguments that name no field are left out, as the environment's other variables are."""
    given = {name.lower(): value for name, value in values.items()}
    named: dict[str, Any] = {}
    for field_name in Settings.model_fields:
        names = _names(field_name)
        name = next((name for name in names if name in given), None)
        if name is not None:
            named[names[0]] = given[name]
    return named


def _load_local_secrets(home: Path) -> dict[str, str]:
    """Generate the local secrets once into .agentpay/secrets.json and read them back on later runs."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / _LOCAL_SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [name for name in _GENERATED_SECRETS if not stored.get(name)]
    if missing:
        for name in missing:
            if name.startswith("qstash_"):
                # QStash signing keys are opaque strings; theirs look like "sig_..." base64.
                stored[name] = "sig_" + base64.b64encode(secrets.token_bytes(24)).decode()
            else:
                stored[name] = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return stored


def _running_local_stack(home: Path) -> dict[str, str]:
    """The service URLs of a running `agentpay dev` (from .agentpay/dev.json), so other commands find them."""
    path = home / "dev.json"
    if not path.exists():
        return {}
    try:
        dev = json.loads(path.read_text())
    except ValueError:
        return {}
    found = {"database_url": dev.get("database_url"), "redis_url": dev.get("redis_url")}
    if dev.get("stripe_api_base"):
        found["stripe_api_base"] = dev["stripe_api_base"]
    return {k: v for k, v in found.items() if v}


def _load_aws_secrets(arn: str) -> dict[str, str]:
    """Read a JSON secret from AWS Secrets Manager (once per container, via get_settings' cache)."""
    import boto3

    client = boto3.client("secretsmanager")
    raw = client.get_secret_value(SecretId=arn)["SecretString"]
    values = json.loads(raw)
    if not isinstance(values, dict):
        raise ConfigError("the secret at AGENTPAY_SECRETS_ARN must be a JSON object")
    return {str(k).lower(): str(v) for k, v in values.items()}


_PRODUCTION_REQUIRED = (
    "database_url",
    "upstash_redis_rest_url",
    "upstash_redis_rest_token",
    "qstash_token",
    "qstash_current_signing_key",
    "qstash_next_signing_key",
    "stripe_secret_key",
    "resend_api_key",
    "approval_jwt_secret",
    "session_secret",
    "signup_token",
    "public_base_url",
)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings: env vars, then Secrets Manager, then local generated secrets."""
    settings = Settings(**overrides)
    if settings.agentpay_secrets_arn:
        from_aws = _load_aws_secrets(settings.agentpay_secrets_arn)
        fields = set(Settings.model_fields)
        merged = {k: v for k, v in from_aws.items() if k in fields}
        settings = settings.model_copy(update={k: v for k, v in merged.items() if not getattr(settings, k)})
    if settings.is_local:
        generated = _load_local_secrets(settings.agentpay_home)
        generated.update(_running_local_stack(settings.agentpay_home))
        settings = settings.model_copy(update={k: v for k, v in generated.items() if not getattr(settings, k, None)})
        return settings
    problems = []
    for name in _PRODUCTION_REQUIRED:
        try:
            settings.require(name)
        except ConfigError as exc:
            problems.append(str(exc))
    for name in ("approval_jwt_secret", "session_secret"):
        value = getattr(settings, name) or ""
        if value and len(value) < 32:
            problems.append(f"{name.upper()} must be at least 32 characters")
    if problems:
        raise ConfigError("refusing to start outside local mode: " + "; ".join(problems))
    return settings


@functools.cache
def get_settings() -> Settings:
    """The container's settings, built once."""
    return load_settings()
