"""The typed errors of AgentPay's domain and their mapping to the API's error shape."""

from __future__ import annotations

from typing import Any

from shared.rendering import format_money


class AgentPayError(Exception):
    """Base of every error the API answers with its error shape."""

    http_status = 500
    type = "api_error"
    code = "internal_error"
    message = "Something went wrong on our side."
    headers: dict[str, str] = {}

    def __init__(self, message: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code is not None:
            self.code = code
        self.extra = extra

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        }
        error.update(self.extra)
        return {"error": error}


# 400 ---------------------------------------------------------------------------------------------------------------
class InvalidToken(AgentPayError):
    """An approval link whose token is forged, tampered with or for the other action."""

    http_status = 400
    type = "invalid_request"
    code = "invalid_token"
    message = "This approval link is not valid."


class ForgedToken(InvalidToken):
    """The token's signature does not verify: forged or tampered with."""

    http_status = 401
    type = "authentication"


# 401 ---------------------------------------------------------------------------------------------------------------
class AuthenticationFailed(AgentPayError):
    """The request did not prove who sent it."""

    http_status = 401
    type = "authentication"
    code = "invalid_api_key"
    message = "The API key is not valid."


class MissingApiKey(AuthenticationFailed):
    """No bearer key was sent."""

    code = "missing_api_key"
    message = "No API key was sent. Use 'Authorization: Bearer <key>'."


class InvalidSignature(AuthenticationFailed):
    """The AgentPay-Signature header is missing or does not match the request."""

    code = "invalid_signature"
    message = "The request signature does not match the request."


class TimestampOutOfRange(AuthenticationFailed):
    """The AgentPay-Timestamp header is missing, malformed or more than 300 s off."""

    code = "timestamp_out_of_range"
    message = "AgentPay-Timestamp is missing or more than 300 seconds from the server's clock."


class InvalidJobSignature(AuthenticationFailed):
    """A job delivery without a valid Upstash-Signature."""

    code = "invalid_signature"
    message = "The job signature is not valid."


# 402 ---------------------------------------------------------------------------------------------------------------
class BudgetExceededError(AgentPayError):
    """The request would break a limit; the body is the declined transaction with this error added."""

    http_status = 402
    type = "budget"
    code = "daily_limit_exceeded"

    @classmethod
    def for_decision(cls, decision: Any, *, amount_cents: int) -> BudgetExceededError:
        """The refusal in dollars for people; `limit`, `spent` and `requested` stay cents for programs. "Spent or
        held": pending approvals hold their amount against the day too."""
        limits = decision.limits
        if decision.outcome == "per_transaction_limit_exceeded":
            return cls(
                f"Per-transaction limit of {format_money(limits.per_tx_limit_cents)} would be exceeded"
                f" ({format_money(amount_cents)} requested).",
                code="per_transaction_limit_exceeded",
                limit=limits.per_tx_limit_cents,
                requested=amount_cents,
            )
        return cls(
            f"Daily limit of {format_money(limits.daily_limit_cents)} would be exceeded"
            f" ({format_money(decision.spent_before_cents)} already spent or held,"
            f" {format_money(amount_cents)} requested).",
            code="daily_limit_exceeded",
            limit=limits.daily_limit_cents,
            spent=decision.spent_before_cents,
            requested=amount_cents,
        )


# 403 ---------------------------------------------------------------------------------------------------------------
class PermissionDenied(AgentPayError):
    """The caller is known but may not do this."""

    http_status = 403
    type = "permission"
    code = "permission_denied"
    message = "You may not do this."


class AgentDisabled(PermissionDenied):
    """The agent was disabled by an admin."""

    code = "agent_disabled"
    message = "This agent has been disabled by its organization's admin."


UNBLOCK_HOW = (
    "an admin must unblock it in the dashboard (Agents, then Unblock) or with POST /v1/dashboard/agents/{}/unblock"
)


class AgentBlocked(PermissionDenied):
    """The circuit breaker blocked the agent; an admin must unblock it."""

    code = "agent_blocked"
    message = "This agent is blocked by the circuit breaker until an admin unblocks it."

    @classmethod
    def for_agent(cls, agent_id: Any) -> AgentBlocked:
        return cls(f"This agent is blocked by the circuit breaker: {UNBLOCK_HOW.format(agent_id)}.")


class SignupTokenRequired(PermissionDenied):
    """Outside local mode, sign-up needs the configured AgentPay-Signup-Token."""

    code = "signup_token_required"
    message = "Sign-up requires a valid AgentPay-Signup-Token header."


class OrganizationNotVerified(PermissionDenied):
    """The organization's admin email is not verified yet: none of its agents may spend."""

    code = "organization_not_verified"
    message = "This organization's admin email is not verified yet; no payment is approved until it is."


# 404 ---------------------------------------------------------------------------------------------------------------
class NotFound(AgentPayError):
    """The object does not exist or belongs to someone else."""

    http_status = 404
    type = "not_found"
    code = "not_found"
    message = "No such object."


# 409 ---------------------------------------------------------------------------------------------------------------
class Conflict(AgentPayError):
    """The request conflicts with the object's current state."""

    http_status = 409
    type = "conflict"
    code = "conflict"


class IdempotencyKeyReused(Conflict):
    """The same idempotency key came with different parameters."""

    code = "idempotency_key_reused"
    message = "This idempotency key was already used with different parameters."


class RequestInProgress(Conflict):
    """A request with the same idempotency key is still being decided."""

    code = "request_in_progress"
    message = "A request with this idempotency key is still in progress; retry shortly."


class AlreadyDecided(Conflict):
    """The transaction was already decided the other way."""

    code = "already_decided"
    message = "This transaction has already been decided."


# 410 ---------------------------------------------------------------------------------------------------------------
class LinkExpired(AgentPayError):
    """The approval link's token has expired."""

    http_status = 410
    type = "gone"
    code = "link_expired"
    message = "This approval link has expired."


# 413 ---------------------------------------------------------------------------------------------------------------
class PayloadTooLarge(AgentPayError):
    """The request body is larger than 64 KiB."""

    http_status = 413
    type = "invalid_request"
    code = "payload_too_large"
    message = "The request body is larger than 64 KiB."


# 422 ---------------------------------------------------------------------------------------------------------------
class ValidationFailed(AgentPayError):
    """One or more fields are invalid; `errors` lists each."""

    http_status = 422
    type = "invalid_request"
    code = "validation_error"
    message = "The request is not valid."

    def __init__(self, errors: list[dict[str, str]], message: str | None = None) -> None:
        if message is None:
            message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or self.message
        super().__init__(message, errors=errors)
        self.errors = errors


class CallbackUrlRefused(ValidationFailed):
    """The callback_url may not be called: not https, not a host, or a private or internal destination (SSRF)."""

    def __init__(self, reason: str) -> None:
        super().__init__([{"field": "callback_url", "message": reason}])
        self.reason = reason


class UnsupportedCurrency(AgentPayError):
    """A currency other than usd."""

    http_status = 422
    type = "invalid_request"
    code = "unsupported_currency"
    message = "Only 'usd' is supported."


# 429 ---------------------------------------------------------------------------------------------------------------
class RateLimited(AgentPayError):
    """The circuit breaker tripped on this request."""

    http_status = 429
    type = "rate_limit"
    code = "rate_limited"
    message = "Too many payment requests; this agent is now blocked until an admin unblocks it."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        # Only where waiting helps: a tripped breaker needs an admin, and a client that honours Retry-After would
        # retry into 403 agent_blocked.
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}

    @classmethod
    def breaker_tripped(cls, *, agent_id: Any, limit: int) -> RateLimited:
        return cls(
            f"This agent sent more than {limit} payment requests in 60 s, so the circuit breaker blocked it."
            f" Retrying will not help: {UNBLOCK_HOW.format(agent_id)}."
        )


class AuthenticationThrottled(RateLimited):
    """Too many failed authentications from this address, or against this key, within a minute."""

    message = "Too many failed authentications from this address or for this key; try again later."


class SignupThrottled(RateLimited):
    """Too many sign-ups from this address within an hour (outside local mode)."""

    message = "Too many sign-ups from this address; try again later."


# 431 ---------------------------------------------------------------------------------------------------------------
class HeadersTooLarge(AgentPayError):
    """The request's headers together are larger than the server reads (16 KiB)."""

    http_status = 431
    type = "invalid_request"
    code = "headers_too_large"
    message = "The request headers are larger than 16 KiB in all."


# 503 ---------------------------------------------------------------------------------------------------------------
class ServiceUnavailable(AgentPayError):
    """A dependency did not answer; nothing was approved."""

    http_status = 503
    type = "unavailable"
    code = "service_unavailable"
    message = "A service AgentPay depends on is unavailable; nothing was approved. Retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class BudgetUnavailable(ServiceUnavailable):
    """The budget store (Redis) or the database could not answer a budget decision."""

    code = "budget_unavailable"
    message = "The budget service is unavailable; the payment was not approved. Retry later."


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL could not be reached."""

    code = "database_unavailable"
    message = "The database is unavailable. Retry later."


class StripeUnavailable(ServiceUnavailable):
    """Stripe could not be reached or answered with a server error."""

    code = "stripe_unavailable"
    message = "Stripe is unavailable. Retry later."


class EmailDeliveryFailed(ServiceUnavailable):
    """Resend did not accept the email; `retryable` says whether sending it again can help."""

    code = "email_delivery_failed"
    message = "The email could not be delivered to the email service. Retry later."

    def __init__(self, message: str | None = None, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class WebhookDeliveryFailed(ServiceUnavailable):
    """The receiver did not answer 2xx; the job layer retries with backoff."""

    code = "webhook_delivery_failed"
    message = "The webhook receiver did not accept the event."


class WebhookRefused(WebhookDeliveryFailed):
    """The callback URL points into a private network: never delivered, not retried."""

    http_status = 422
    type = "invalid_request"
    code = "callback_url_refused"


# What a dashboard page does instead of answering the error shape ----------------------------------------------------
class LoginRequired(Exception):
    """No valid session: the page sends the browser to the login page."""


class CsrfRejected(Exception):
    """A form came without the token of this session."""


# Errors for the operator, never answered to a client as they are -------------------------------------------------
class ConfigError(RuntimeError):
    """The configuration is incomplete or unsafe for the mode it runs in."""


class CommandError(Exception):
    """Redis refused a command (wrong type, bad syntax): a bug to fix, not an outage."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ScriptError(CommandError):
    """A Lua script raised an error or ran a command Redis refused."""

    def __init__(self, message: str, *, code: str, script: str) -> None:
        super().__init__(message, code=code)
        self.script = script
