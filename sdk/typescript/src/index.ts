/** agentpay-spend: the TypeScript client of AgentPay. */

export {
  AgentPay,
  AMOUNT_IN_CENTS,
  Payments,
  Transactions,
  DEFAULT_APPROVAL_TIMEOUT_MS,
  DEFAULT_BASE_URL,
  DEFAULT_MAX_RETRIES,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_TIMEOUT_MS,
} from "./client.js";
export type { AgentPayOptions, APIResponse, WaitForApprovalOptions } from "./client.js";
export {
  AgentPayError,
  APIConnectionError,
  APIError,
  AgentBlockedError,
  ApprovalTimeoutError,
  AuthenticationError,
  BudgetExceededError,
  ConflictError,
  IdempotencyError,
  InvalidRequestError,
  NotFoundError,
  PaymentDeclinedError,
  PermissionDeniedError,
  RateLimitError,
  WebhookSignatureError,
  errorFromResponse,
} from "./errors.js";
export { canonicalJson, deriveIdempotencyKey } from "./idempotency.js";
export type { IdempotencyKeyParams } from "./idempotency.js";
export { backoffDelayMs, shouldRetry } from "./retry.js";
export type { Sleep } from "./retry.js";
export { authHeaders, signRequest, signingKey } from "./signing.js";
export type { SignRequestParams } from "./signing.js";
export { verifyWebhook, signWebhook } from "./webhooks.js";
export type { VerifyWebhookParams } from "./webhooks.js";
export {
  APPROVAL_REASONS,
  BUDGET_DECLINE_REASONS,
  DECISION_REASONS,
  ERROR_DETAIL_FIELDS,
  NULLABLE_TRANSACTION_FIELDS,
  TERMINAL_STATUSES,
  TRANSACTION_FIELDS,
  TRANSACTION_STATUSES,
} from "./types.js";
export type * from "./types.js";
export { VERSION } from "./version.js";
