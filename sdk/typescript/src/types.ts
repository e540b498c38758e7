/** The wire types of the AgentPay HTTP API (handbook/API.md), snake_case exactly as sent and received. */

/** Every transaction status. Terminal states: `declined`, `completed`, `timed_out`. */
export const TRANSACTION_STATUSES = ["pending", "approved", "declined", "completed", "timed_out"] as const;
export type TransactionStatus = (typeof TRANSACTION_STATUSES)[number];

/** Every reason a transaction is in its state. */
export const DECISION_REASONS = [
  "auto_approved",
  "approval_required",
  "new_merchant_requires_approval",
  "approved_by_admin",
  "merchant_blocked",
  "merchant_not_allowed",
  "per_transaction_limit_exceeded",
  "merchant_daily_limit_exceeded",
  "daily_limit_exceeded",
  "weekly_limit_exceeded",
  "monthly_limit_exceeded",
  "organization_daily_limit_exceeded",
  "organization_monthly_limit_exceeded",
  "payment_count_exceeded",
  "declined_by_admin",
  "charge_failed",
  "approval_timed_out",
] as const;
export type DecisionReason = (typeof DECISION_REASONS)[number];

/**
 * The reasons the agent's policy declines a payment with, in the order the server checks them. Each is also the
 * 402's `error.code` (type `budget`), so `BudgetExceededError.code` is one of these:
 * - `merchant_blocked`: the policy blocks this merchant; `merchant_not_allowed`: it is not on the allow list.
 * - `per_transaction_limit_exceeded`: the amount alone is above the per-payment limit.
 * - `merchant_daily_limit_exceeded`: today's spend at this merchant plus the amount would exceed its daily cap.
 * - `daily_limit_exceeded`, `weekly_limit_exceeded`, `monthly_limit_exceeded`: the agent's spend (spent or held)
 *   this day, ISO week or calendar month plus the amount would exceed the limit.
 * - `organization_daily_limit_exceeded`, `organization_monthly_limit_exceeded`: the same for all the
 *   organization's agents together.
 * - `payment_count_exceeded`: the agent already made its most payments for today.
 */
export const BUDGET_DECLINE_REASONS = [
  "merchant_blocked",
  "merchant_not_allowed",
  "per_transaction_limit_exceeded",
  "merchant_daily_limit_exceeded",
  "daily_limit_exceeded",
  "weekly_limit_exceeded",
  "monthly_limit_exceeded",
  "organization_daily_limit_exceeded",
  "organization_monthly_limit_exceeded",
  "payment_count_exceeded",
] as const satisfies readonly DecisionReason[];
export type BudgetDeclineReason = (typeof BUDGET_DECLINE_REASONS)[number];

/** The reasons a payment within every limit waits for people (status `pending`). */
export const APPROVAL_REASONS = [
  "approval_required",
  "new_merchant_requires_approval",
] as const satisfies readonly DecisionReason[];
export type ApprovalReason = (typeof APPROVAL_REASONS)[number];

/** What the agent's draft (shadow) policy would have decided; only the dashboard API shows it. */
export interface ShadowVerdict {
  status: TransactionStatus;
  decision_reason: DecisionReason;
}

/** Only `usd` exists for now; the type stays open so a newer server does not break older clients at compile time. */
export type Currency = "usd" | (string & {});

/** Any JSON value; `context` is a JSON object of these. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A payment request and its decision. Money is an integer number of cents; times are ISO 8601 with offset. */
export interface Transaction {
  id: string;
  object: "transaction";
  organization_id: string;
  agent_id: string;
  /** Integer cents: 1250 is $12.50. */
  amount: number;
  currency: Currency;
  merchant: string;
  purpose: string;
  context: JsonObject;
  status: TransactionStatus;
  decision_reason: DecisionReason;
  idempotency_key: string;
  stripe_charge_id: string | null;
  approval_expires_at: string | null;
  created_at: string;
  completed_at: string | null;
  /** Dashboard answers only: what the draft policy would have decided. Never in the agent API's answers. */
  shadow?: ShadowVerdict | null;
}

/** The field names of {@link Transaction}, in wire order, for checks against the exported OpenAPI schema. */
export const TRANSACTION_FIELDS = [
  "id",
  "object",
  "organization_id",
  "agent_id",
  "amount",
  "currency",
  "merchant",
  "purpose",
  "context",
  "status",
  "decision_reason",
  "idempotency_key",
  "stripe_charge_id",
  "approval_expires_at",
  "created_at",
  "completed_at",
  "shadow",
] as const satisfies readonly (keyof Transaction)[];

/** The fields of {@link Transaction} that may be `null`. */
export const NULLABLE_TRANSACTION_FIELDS = [
  "stripe_charge_id",
  "approval_expires_at",
  "completed_at",
  "shadow",
] as const satisfies readonly (keyof Transaction)[];

/** The statuses after which a transaction never changes again. */
export const TERMINAL_STATUSES: readonly TransactionStatus[] = ["declined", "completed", "timed_out"];

/** One invalid field of a `422 validation_error`. */
export interface FieldError {
  field: string;
  message: string;
}

/** The `error` member of every error body (openapi.json's ErrorObject); members a newer server adds are kept. */
export interface ErrorDetail {
  type: string;
  code: string;
  message: string;
  request_id?: string;
  /** `validation_error` only. */
  errors?: FieldError[] | null;
  /** Budget errors: the limit in cents (in payments for `payment_count_exceeded`). */
  limit?: number | null;
  /** A window's limit: what the window already held or spent, in cents (in payments for the count). */
  spent?: number | null;
  /** Budget errors: the requested amount in cents. */
  requested?: number | null;
  /** Merchant rules: the merchant as the server compared it (lower case). */
  merchant?: string | null;
  [extra: string]: unknown;
}

/** The member names of {@link ErrorDetail}, for checks against the exported OpenAPI schema. */
export const ERROR_DETAIL_FIELDS = [
  "type",
  "code",
  "message",
  "request_id",
  "errors",
  "limit",
  "spent",
  "requested",
  "merchant",
] as const;

/** Every error body: `{"error": {...}}`; a 402 body is the declined transaction with `error` added. */
export interface ErrorBody {
  error: ErrorDetail;
  [extra: string]: unknown;
}

/** The webhook event types a `callback_url` receives. */
export type WebhookEventType =
  | "transaction.approved"
  | "transaction.completed"
  | "transaction.declined"
  | "transaction.timed_out";

/** A decision webhook, delivered at least once: dedupe on `id`. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  created_at: string;
  data: Transaction;
}

/** The parameters of `client.pay.request`, camelCase on the SDK side. */
export interface PaymentRequestParams {
  /** Integer cents, 1 to 100000000. */
  amount: number;
  /** What the money is for, 1 to 2000 characters. */
  purpose: string;
  /** Who is paid, 1 to 255 characters. */
  merchant: string;
  /** Defaults to `usd`, the only currency so far. */
  currency?: Currency;
  /**
   * Free JSON object (at most 16 KiB serialized). Use strings and integers (not fractional numbers) if the same
   * request may also come from the Python SDK: the derived idempotency key hashes this object.
   */
  context?: JsonObject;
  /** Defaults to a key derived from the parameters (see `deriveIdempotencyKey`), so a repeat is a replay. */
  idempotencyKey?: string;
  /** An https URL (http for localhost in local mode) that receives decision webhooks. */
  callbackUrl?: string;
}

/** The JSON body of `POST /v1/payment-request`. */
export interface PaymentRequestBody {
  amount: number;
  currency: Currency;
  merchant: string;
  purpose: string;
  context: JsonObject;
  idempotency_key: string;
  callback_url?: string;
}
