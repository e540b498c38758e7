/** The SDK's error hierarchy and the mapping from an API error response to it. */

import type { BudgetDeclineReason, ErrorBody, ErrorDetail, FieldError, Transaction } from "./types.js";

export interface AgentPayErrorInit {
  message: string;
  httpStatus?: number | null;
  type?: string | null;
  code?: string | null;
  requestId?: string | null;
  body?: unknown;
  headers?: Headers | null;
  cause?: unknown;
}

/** Base of every error the SDK throws. */
export class AgentPayError extends Error {
  /** The HTTP status of the response, or `null` when there was none (network failure, local checks). */
  readonly httpStatus: number | null;
  /** `error.type` of the API's error body, e.g. `budget`. */
  readonly type: string | null;
  /** `error.code` of the API's error body, e.g. `daily_limit_exceeded`. */
  readonly code: string | null;
  /** `error.request_id`, else the `X-Request-Id` header; quote it to support. */
  readonly requestId: string | null;
  /** The parsed response body (or its text when it was not JSON). */
  readonly body: unknown;
  /** The response headers, when there was a response. */
  readonly headers: Headers | null;

  constructor(init: AgentPayErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.httpStatus = init.httpStatus ?? null;
    this.type = init.type ?? null;
    this.code = init.code ?? null;
    this.requestId = init.requestId ?? null;
    this.body = init.body;
    this.headers = init.headers ?? null;
  }
}

/** 401: the key is missing or wrong, the signature does not match, or the clock is more than 300 s off. */
export class AuthenticationError extends AgentPayError {}

/**
 * 402: the agent's spend policy declined the payment; the declined transaction is attached. `code` names the rule
 * (one of `BUDGET_DECLINE_REASONS`); `isMerchantRule` and `isOrganizationLimit` group them.
 */
export class BudgetExceededError extends AgentPayError {
  /** The rule that declined it, e.g. `weekly_limit_exceeded` or `merchant_blocked`. */
  declare readonly code: BudgetDeclineReason | (string & {}) | null;
  /** The declined transaction (status `declined`), as recorded by the server. */
  readonly transaction: Transaction | null;
  /** The limit that would be exceeded, in cents (in payments for `payment_count_exceeded`); `null` if not stated. */
  readonly limit: number | null;
  /** What the limit's window already held or spent, in cents (payments for the count); `null` if not stated. */
  readonly spent: number | null;
  /** The requested amount in cents. */
  readonly requested: number | null;
  /** The merchant a merchant rule refused, as the server compared it (lower case); `null` otherwise. */
  readonly merchant: string | null;

  /** The figures come from the 402's `error` object; a replay (200) states none, so only `requested` is known. */
  constructor(init: AgentPayErrorInit & { transaction: Transaction | null }) {
    super(init);
    this.transaction = init.transaction;
    const detail = errorDetailOf(init.body);
    this.limit = integerOrNull(detail?.limit);
    this.spent = integerOrNull(detail?.spent);
    this.requested = integerOrNull(detail?.requested) ?? init.transaction?.amount ?? null;
    this.merchant = typeof detail?.merchant === "string" ? detail.merchant : null;
  }

  /** True when a merchant rule declined it: blocked, not on the allow list, or over the merchant's daily cap. */
  get isMerchantRule(): boolean {
    return MERCHANT_RULE_REASONS.includes(this.code ?? "");
  }

  /** True when the organization's ceiling, over all its agents together, declined it. */
  get isOrganizationLimit(): boolean {
    return ORGANIZATION_LIMIT_REASONS.includes(this.code ?? "");
  }
}

const MERCHANT_RULE_REASONS: readonly string[] = [
  "merchant_blocked",
  "merchant_not_allowed",
  "merchant_daily_limit_exceeded",
] satisfies BudgetDeclineReason[];
const ORGANIZATION_LIMIT_REASONS: readonly string[] = [
  "organization_daily_limit_exceeded",
  "organization_monthly_limit_exceeded",
] satisfies BudgetDeclineReason[];

/** 403: the caller is known but may not do this. */
export class PermissionDeniedError extends AgentPayError {}

/** 403 `agent_blocked` (the circuit breaker tripped) or `agent_disabled`: an admin must act (`code` says which). */
export class AgentBlockedError extends PermissionDeniedError {}

/** 409: the request conflicts with the object's current state. */
export class ConflictError extends AgentPayError {}

/** 409 `idempotency_key_reused` (same key, other parameters) or `request_in_progress` (retry shortly). */
export class IdempotencyError extends ConflictError {}

/** 400, 413, 422 and any other 4xx: the request is not valid; `errors` lists the fields of a `validation_error`. */
export class InvalidRequestError extends AgentPayError {
  readonly errors: FieldError[];

  /** `errors` is given by the SDK's own checks; an answer's come from its body. */
  constructor(init: AgentPayErrorInit & { errors?: FieldError[] }) {
    super(init);
    const errors = init.errors ?? errorDetailOf(init.body)?.errors;
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

/** 404: no such object, or it belongs to another agent (the API does not tell them apart). */
export class NotFoundError extends InvalidRequestError {}

/**
 * 429. Without `Retry-After`, the circuit breaker tripped on this request (`agentBlocked`): the agent stays blocked,
 * later requests answer 403 `agent_blocked`, and only an admin can unblock it, so nothing retries it. With
 * `Retry-After` (too many failed authentications), `retryAfter` says when trying again can work.
 */
export class RateLimitError extends AgentPayError {
  /** Seconds from the `Retry-After` header, or `null`. */
  readonly retryAfter: number | null;
  /** True when the circuit breaker blocked the agent (the 429 had no `Retry-After`). */
  readonly agentBlocked: boolean;

  constructor(init: AgentPayErrorInit) {
    super(init);
    this.retryAfter = retryAfterSeconds(init.headers ?? null);
    this.agentBlocked = this.retryAfter === null;
  }
}

/** 5xx or an unexpected answer, once the retries are spent. Nothing was approved by a 503. */
export class APIError extends AgentPayError {
  /** Seconds from the `Retry-After` header (503), or `null`. */
  readonly retryAfter: number | null;

  constructor(init: AgentPayErrorInit) {
    super(init);
    this.retryAfter = retryAfterSeconds(init.headers ?? null);
  }
}

/** The API could not be reached (connection refused, DNS, time limit, ...) once the retries were spent. */
export class APIConnectionError extends APIError {}

/** `waitForApproval` ran out of time before the transaction reached a terminal state. */
export class ApprovalTimeoutError extends AgentPayError {
  /** The transaction as last seen, or `null` if it was never fetched. */
  readonly transaction: Transaction | null;

  constructor(message: string, transaction: Transaction | null) {
    super({ message, code: "approval_wait_timeout" });
    this.transaction = transaction;
  }
}

/** The transaction ended `declined` or `timed_out`; `reason` is its `decision_reason`. */
export class PaymentDeclinedError extends AgentPayError {
  readonly reason: string | null;
  readonly transaction: Transaction;

  constructor(transaction: Transaction) {
    const reason = transaction.decision_reason ?? null;
    super({
      message: `Transaction ${transaction.id} ended ${transaction.status}${reason ? ` (${reason})` : ""}.`,
      code: reason,
      body: transaction,
    });
    this.reason = reason;
    this.transaction = transaction;
  }
}

/** A webhook whose `AgentPay-Signature` is missing, malformed, stale or does not match the payload. */
export class WebhookSignatureError extends AgentPayError {
  /**
   * `code` is `missing_signature`, `malformed_signature`, `timestamp_out_of_range`, `invalid_signature` or
   * `invalid_payload` (the same codes as the Python SDK).
   */
  constructor(message: string, code: string) {
    super({ message, code });
  }
}

/** Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or `null`. */
export function retryAfterSeconds(headers: Headers | null, nowMs: number = Date.now()): number | null {
  const value = headers?.get("retry-after")?.trim();
  if (!value) return null;
  if (/^\d+$/.test(value)) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - nowMs) / 1000));
}

/** Builds the typed error for a non-2xx response, by HTTP status and `error.code`. */
export function errorFromResponse(status: number, headers: Headers, body: unknown): AgentPayError {
  const detail = errorDetailOf(body);
  const init: AgentPayErrorInit = {
    message: detail?.message || `AgentPay answered HTTP ${status}.`,
    httpStatus: status,
    type: detail?.type || null,
    code: detail?.code || null,
    requestId: (typeof detail?.request_id === "string" && detail.request_id) || headers.get("x-request-id"),
    body,
    headers,
  };
  const code = init.code;
  if (status === 401) return new AuthenticationError(init);
  if (status === 402) return new BudgetExceededError({ ...init, transaction: transactionOf(body) });
  if (status === 403) {
    return code === "agent_blocked" || code === "agent_disabled"
      ? new AgentBlockedError(init)
      : new PermissionDeniedError(init);
  }
  if (status === 404) return new NotFoundError(init);
  if (status === 409) {
    return code === "idempotency_key_reused" || code === "request_in_progress"
      ? new IdempotencyError(init)
      : new ConflictError(init);
  }
  if (status === 429) return new RateLimitError(init);
  if (status >= 400 && status < 500) return new InvalidRequestError(init);
  return new APIError(init);
}

function errorDetailOf(body: unknown): ErrorDetail | null {
  if (!isObject(body) || !isObject(body.error)) return null;
  const error = body.error;
  return {
    ...error,
    type: typeof error.type === "string" ? error.type : "",
    code: typeof error.code === "string" ? error.code : "",
    message: typeof error.message === "string" ? error.message : "",
  } as ErrorDetail;
}

/** A 402 body is the declined transaction with `error` added; take the transaction back out. */
function transactionOf(body: unknown): Transaction | null {
  if (!isObject(body) || body.object !== "transaction") return null;
  const { error: _error, ...transaction } = body as ErrorBody;
  return transaction as unknown as Transaction;
}

function integerOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) ? value : null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
