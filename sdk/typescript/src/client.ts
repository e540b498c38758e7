/** The AgentPay client: signed requests with retries, payments, polling for a decision. */

import {
  APIConnectionError,
  APIError,
  ApprovalTimeoutError,
  AuthenticationError,
  BudgetExceededError,
  InvalidRequestError,
  PaymentDeclinedError,
  errorFromResponse,
  retryAfterSeconds,
} from "./errors.js";
import { deriveIdempotencyKey } from "./idempotency.js";
import { MAX_RETRY_AFTER_MS, backoffDelayMs, shouldRetry, sleep as realSleep, type Sleep } from "./retry.js";
import { authHeaders } from "./signing.js";
import {
  BUDGET_DECLINE_REASONS,
  TERMINAL_STATUSES,
  type PaymentRequestBody, type PaymentRequestParams, type Transaction } from "./types.js";
import { VERSION } from "./version.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8000";
export const DEFAULT_MAX_RETRIES = 3;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_POLL_INTERVAL_MS = 5_000;
export const DEFAULT_APPROVAL_TIMEOUT_MS = 600_000;

/** A replay (200) of a payment declined for one of these throws, as its first answer (402) did. */
const BUDGET_REASONS: readonly string[] = BUDGET_DECLINE_REASONS;
/** The refusal of a non-integer amount: the same sentence as the server's 422 (tests/sdk checks they agree). */
export const AMOUNT_IN_CENTS = "amount is an integer number of cents: 500 means $5.00";

export interface AgentPayOptions {
  /** The agent's key (`apk_test_...`/`apk_live_...`); defaults to `AGENTPAY_API_KEY`. */
  apiKey?: string;
  /** Defaults to `AGENTPAY_BASE_URL`, then `http://127.0.0.1:8000` (local mode). */
  baseUrl?: string;
  /** Retries after a network failure or a 5xx answer; 4xx answers are never retried. Default 3. */
  maxRetries?: number;
  /** Time limit of each HTTP attempt, in milliseconds. Default 30000. */
  timeoutMs?: number;
  /** Replaces the waits between retries and polls (tests pass one that returns at once). */
  sleep?: Sleep;
  /** Replaces the global `fetch` (a proxy-aware one, or a fake in tests). */
  fetch?: typeof fetch;
}

export interface WaitForApprovalOptions {
  /** How long to wait in total, in milliseconds; then `ApprovalTimeoutError`. Default 600000 (10 minutes). */
  timeoutMs?: number;
  /** Time between two polls, in milliseconds. Default 5000. */
  pollIntervalMs?: number;
  /** Aborts the wait; the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
}

interface RequestOptions {
  body?: unknown;
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** A parsed 2xx answer. */
export interface APIResponse<T> {
  status: number;
  headers: Headers;
  data: T;
}

export class AgentPay {
  readonly baseUrl: string;
  readonly maxRetries: number;
  readonly timeoutMs: number;
  readonly pay: Payments;
  readonly transactions: Transactions;
  readonly #apiKey: string;
  readonly #sleep: Sleep;
  readonly #fetch: typeof fetch;

  constructor(options: AgentPayOptions = {}) {
    const apiKey = options.apiKey ?? process.env.AGENTPAY_API_KEY;
    if (!apiKey) {
      throw new AuthenticationError({
        message: "No AgentPay API key: pass new AgentPay({ apiKey }) or set AGENTPAY_API_KEY.",
        code: "missing_api_key",
      });
    }
    this.#apiKey = apiKey;
    this.baseUrl = (options.baseUrl ?? process.env.AGENTPAY_BASE_URL ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(this.maxRetries) || this.maxRetries < 0) throw new TypeError("maxRetries must be an integer >= 0");
    if (!(this.timeoutMs > 0)) throw new TypeError("timeoutMs must be > 0");
    this.#sleep = options.sleep ?? realSleep;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.pay = new Payments(this);
    this.transactions = new Transactions(this);
  }

  /** The waiting function in use (injectable), shared by retries and polling. */
  get sleep(): Sleep {
    return this.#sleep;
  }

  /**
   * Sends one signed request, retrying network failures and 5xx answers with jittered backoff. Each attempt is
   * signed afresh (new timestamp) and carries the same body bytes and `Idempotency-Key`.
   */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<APIResponse<T>> {
    const url = new URL(this.baseUrl + path);
    const signedPath = url.pathname + url.search;
    const rawBody = options.body === undefined ? "" : JSON.stringify(options.body);
    for (let retry = 0; ; retry++) {
      const headers: Record<string, string> = {
        ...authHeaders({
          apiKey: this.#apiKey,
          timestamp: Math.floor(Date.now() / 1000),
          method,
          path: signedPath,
          body: rawBody,
        }),
        Accept: "application/json",
        "User-Agent": `agentpay-spend-js/${VERSION} node/${process.versions.node}`,
      };
      if (options.body !== undefined) headers["Content-Type"] = "application/json";
      if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;

      const attempt = withTimeout(this.timeoutMs, options.signal);
      let response: Response;
      let text: string;
      try {
        response = await this.#fetch(url, {
          method,
          headers,
          body: options.body === undefined ? undefined : Buffer.from(rawBody, "utf8"),
          signal: attempt.signal,
        });
        text = await response.text();
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (retry < this.maxRetries) {
          await this.#sleep(backoffDelayMs(retry), options.signal);
          continue;
        }
        const timedOut = attempt.timedOut();
        const attempts = retry === 0 ? "1 attempt" : `${retry + 1} attempts`;
        const cause = timedOut ? `no answer within ${this.timeoutMs} ms` : describe(error);
        throw new APIConnectionError({
          message: `Could not reach AgentPay at ${withoutCredentials(url)} after ${attempts}: ${cause}`,
          code: timedOut ? "timeout" : "network_error",
          cause: error,
        });
      } finally {
        attempt.dispose();
      }

      const body = parseBody(text);
      if (response.ok) return { status: response.status, headers: response.headers, data: body as T };
      if (shouldRetry(response.status) && retry < this.maxRetries) {
        // Only a 503 states when the dependency should be back; other 5xx back off with jitter.
        const retryAfter = response.status === 503 ? retryAfterSeconds(response.headers) : null;
        const delay =
          retryAfter === null ? backoffDelayMs(retry) : Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS);
        await this.#sleep(delay, options.signal);
        continue;
      }
      throw errorFromResponse(response.status, response.headers, body);
    }
  }
}

/** `client.pay`: ask to spend, and wait for the decision. */
export class Payments {
  readonly #client: AgentPay;

  constructor(client: AgentPay) {
    this.#client = client;
  }

  /**
   * Asks to spend `amount` cents. Resolves with the transaction: `approved` (201, a charge follows), `pending`
   * (202, a human decides; see `waitForApproval`) or, for a replay of the same idempotency key, as it is now (200).
   * Throws `BudgetExceededError` when the agent's policy declines it (`code` names the rule; `limit`, `spent`,
   * `requested`, `merchant` and the declined `transaction` say more): on the first answer (402) and also on a replay
   * (200) of a payment the policy declined, so a retry never looks like a success.
   */
  async request(params: PaymentRequestParams, options: { signal?: AbortSignal } = {}): Promise<Transaction> {
    // 12.5 is not sent as 12.5 cents (nor "1250" as anything). 5.0 cannot be caught: it is the number 5.
    if (typeof params.amount !== "number" || !Number.isSafeInteger(params.amount)) {
      throw new InvalidRequestError({
        message: AMOUNT_IN_CENTS,
        code: "validation_error",
        errors: [{ field: "amount", message: AMOUNT_IN_CENTS }],
      });
    }
    const currency = params.currency ?? "usd";
    const context = params.context ?? {};
    let idempotencyKey = params.idempotencyKey;
    if (idempotencyKey === undefined) {
      try {
        idempotencyKey = deriveIdempotencyKey({ ...params, currency, context });
      } catch (error) {
        throw new InvalidRequestError({ message: describe(error), code: "validation_error", cause: error });
      }
    }
    const body: PaymentRequestBody = {
      amount: params.amount,
      currency,
      merchant: params.merchant,
      purpose: params.purpose,
      context,
      idempotency_key: idempotencyKey,
    };
    if (params.callbackUrl !== undefined) body.callback_url = params.callbackUrl;
    const response = await this.#client.request<Transaction>("POST", "/v1/payment-request", {
      body,
      idempotencyKey,
      signal: options.signal,
    });
    const transaction = asTransaction(response);
    if (transaction.status === "declined" && BUDGET_REASONS.includes(transaction.decision_reason ?? "")) {
      throw new BudgetExceededError({
        message: `Payment ${transaction.id} was declined: ${transaction.decision_reason}.`,
        httpStatus: response.status,
        type: "budget",
        code: transaction.decision_reason,
        requestId: response.headers.get("x-request-id"),
        body: transaction,
        headers: response.headers,
        transaction,
      });
    }
    return transaction;
  }

  /**
   * Polls the transaction until it is terminal. `completed` resolves with it; `declined` or `timed_out` throw
   * `PaymentDeclinedError`; `pending` and `approved` (the charge is still running) keep polling. Throws
   * `ApprovalTimeoutError` when `timeoutMs` passes first.
   */
  async waitForApproval(transaction: string | Transaction, options: WaitForApprovalOptions = {}): Promise<Transaction> {
    const { timeoutMs = DEFAULT_APPROVAL_TIMEOUT_MS, pollIntervalMs = DEFAULT_POLL_INTERVAL_MS, signal } = options;
    const id = typeof transaction === "string" ? transaction : transaction.id;
    if (!id) throw new TypeError("waitForApproval needs a transaction id");
    if (!(timeoutMs >= 0)) throw new TypeError("timeoutMs must be >= 0");
    if (!(pollIntervalMs > 0)) throw new TypeError("pollIntervalMs must be > 0");
    const deadline = Date.now() + timeoutMs;
    let last: Transaction | null = null;
    for (;;) {
      signal?.throwIfAborted();
      last = await this.#client.transactions.retrieve(id, { signal });
      if (TERMINAL_STATUSES.includes(last.status)) {
        if (last.status === "completed") return last;
        throw new PaymentDeclinedError(last);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      await this.#client.sleep(Math.min(pollIntervalMs, remaining), signal);
    }
    throw new ApprovalTimeoutError(
      `No final decision on payment ${id} within ${timeoutMs} ms (last status: ${last.status}).`,
      last,
    );
  }
}

/** `client.transactions`: read the agent's own transactions. */
export class Transactions {
  readonly #client: AgentPay;

  constructor(client: AgentPay) {
    this.#client = client;
  }

  /** `GET /v1/transactions/{id}`; another agent's transaction or a malformed id is a 404 (`NotFoundError`). */
  async retrieve(id: string, options: { signal?: AbortSignal } = {}): Promise<Transaction> {
    if (!id) throw new TypeError("retrieve needs a transaction id");
    const response = await this.#client.request<Transaction>("GET", `/v1/transactions/${encodeURIComponent(id)}`, {
      signal: options.signal,
    });
    return asTransaction(response);
  }
}

/** The transaction of a 2xx answer; anything else (a proxy's HTML page, say) is an `APIError`, not a bad object. */
function asTransaction(response: APIResponse<unknown>): Transaction {
  const data = response.data as Partial<Transaction> | null;
  if (typeof data === "object" && data !== null && typeof data.id === "string" && typeof data.status === "string") {
    return data as Transaction;
  }
  throw new APIError({
    message: `AgentPay answered HTTP ${response.status} without a transaction object.`,
    httpStatus: response.status,
    code: "unexpected_response",
    requestId: response.headers.get("x-request-id"),
    body: response.data,
    headers: response.headers,
  });
}

/** A per-attempt abort signal: fires on the time limit or when the caller's signal aborts (Node 18 has no `any`). */
function withTimeout(timeoutMs: number, outer?: AbortSignal) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error(`timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  const onAbort = () => controller.abort(outer?.reason);
  if (outer?.aborted) onAbort();
  else outer?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

/** The URL as an error message may show it: without a `user:password@` it may carry. */
function withoutCredentials(url: URL): string {
  const shown = new URL(url);
  shown.username = "";
  shown.password = "";
  return shown.href;
}

function parseBody(text: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return error.message + cause;
  }
  return String(error);
}
