// Against a real AgentPay server: runs only when AGENTPAY_BASE_URL and AGENTPAY_API_KEY are set (e.g. from
// .agentpay/dev.json after `make run`: base_url and agent_key). The agent's approval threshold must be at least
// AGENTPAY_TEST_SMALL_AMOUNT (default 100 cents) and its per-transaction limit below AGENTPAY_TEST_LARGE_AMOUNT
// (default 100000000, the API's maximum), and the server's charge worker must run. Each run uses a fresh purpose,
// so it never replays an older run. The repository's pytest suite (tests/sdk/test_typescript_sdk.py) runs this file
// against its own server with every variable below set.
//
// Optional, each enabling more tests (they are skipped, saying why, without it):
//   AGENTPAY_TEST_PENDING_AMOUNT       cents above the agent's approval threshold and within its limits (the
//                                      dev agent of `make run`: 6000); with AGENTPAY_OUTBOX_DIR (dev.json's
//                                      outbox_dir) the test also approves it through the email's link
//   AGENTPAY_TEST_DAILY_LIMIT_API_KEY  an agent for which AGENTPAY_TEST_DAILY_AMOUNT (default 200) fits the
//                                      per-transaction limit once, but twice exceeds the daily limit
//   AGENTPAY_TEST_RATE_LIMITED_API_KEY an agent with max_requests_per_minute = AGENTPAY_TEST_RATE_LIMIT (default 2);
//                                      the test trips its circuit breaker, so it stays blocked afterwards
//   AGENTPAY_TEST_ADMIN_KEY,           an organization's admin key, and an agent of that organization (its id and
//   AGENTPAY_TEST_POLICY_AGENT_ID,     key) whose policy the test replaces (PUT /v1/dashboard/agents/{id}/policy):
//   AGENTPAY_TEST_POLICY_API_KEY       a weekly limit of 300 cents and *.ads.example blocked; its spend this week
//                                      must be 0, so give it a fresh agent
//   AGENTPAY_TEST_FLAKY_BASE_URL       a proxy in front of the server that answers 503 to the first two payment
//                                      requests, then forwards; AGENTPAY_TEST_RETRY_KEY is the idempotency key used
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { describe, it } from "node:test";

import {
  AMOUNT_IN_CENTS,
  AgentBlockedError,
  AgentPay,
  ApprovalTimeoutError,
  AuthenticationError,
  BudgetExceededError,
  InvalidRequestError,
  RateLimitError,
  deriveIdempotencyKey,
} from "../dist/esm/index.js";

const env = process.env;
const skip =
  env.AGENTPAY_BASE_URL && env.AGENTPAY_API_KEY
    ? false
    : "integration tests need AGENTPAY_BASE_URL and AGENTPAY_API_KEY (a running server and an agent key)";
if (skip) console.log(`skipping integration tests: ${skip}`);

const SMALL = Number(env.AGENTPAY_TEST_SMALL_AMOUNT ?? 100);
const LARGE = Number(env.AGENTPAY_TEST_LARGE_AMOUNT ?? 100_000_000);
const PENDING = env.AGENTPAY_TEST_PENDING_AMOUNT ? Number(env.AGENTPAY_TEST_PENDING_AMOUNT) : null;
const DAILY = Number(env.AGENTPAY_TEST_DAILY_AMOUNT ?? 200);
const RATE_LIMIT = Number(env.AGENTPAY_TEST_RATE_LIMIT ?? 2);
const WAIT_MS = Number(env.AGENTPAY_TEST_WAIT_MS ?? 60_000);
const fast = { pollIntervalMs: 200 };

const needs = (...names) => {
  const missing = names.filter((name) => !env[name]);
  return missing.length ? `needs ${missing.join(", ")}` : false;
};

/** A client whose fetch records each answer's status and replay header, to check the wire-level outcome. */
function recordingClient(options = {}) {
  const answers = [];
  const client = new AgentPay({
    ...options,
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      answers.push({ status: response.status, replayed: response.headers.get("idempotent-replayed") });
      return response;
    },
  });
  return { client, answers };
}

/** The approve link of the transaction's approval email in the local outbox, once the email worker wrote it. */
async function approveLink(txId, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const file = readdirSync(env.AGENTPAY_OUTBOX_DIR).find((name) => name.startsWith(`approval-${txId}-`));
    if (file) {
      const { text } = JSON.parse(readFileSync(join(env.AGENTPAY_OUTBOX_DIR, file), "utf8"));
      return text.split("\n").find((line) => line.includes("/v1/approve/")).trim();
    }
    assert.ok(Date.now() < deadline, `no approval email for ${txId}`);
    await delay(50);
  }
}

describe("integration against a real server", { skip, concurrency: false }, () => {
  const run = randomUUID();
  const payment = {
    amount: SMALL,
    merchant: "sdk-ts-integration.example",
    purpose: `TypeScript SDK integration run ${run}`,
    context: { run, sdk: "typescript" },
  };
  const another = (suffix, fields = {}) => ({ ...payment, purpose: `${payment.purpose} (${suffix})`, ...fields });
  let approved;

  it("auto-approves a small payment: 201, status approved", async () => {
    const { client, answers } = recordingClient();
    approved = await client.pay.request(payment);
    assert.equal(answers.at(-1).status, 201);
    assert.equal(approved.status, "approved");
    assert.equal(approved.decision_reason, "auto_approved");
    assert.equal(approved.amount, SMALL);
    assert.equal(approved.idempotency_key, deriveIdempotencyKey(payment));
  });

  it("replays the same payment (derived key): 200, Idempotent-Replayed, same transaction id", async () => {
    assert.ok(approved, "needs the first test");
    const { client, answers } = recordingClient();
    const replay = await client.pay.request(payment);
    assert.equal(answers.at(-1).status, 200);
    assert.equal(answers.at(-1).replayed, "true");
    assert.equal(replay.id, approved.id);
  });

  it("retrieves the transaction and waits until the charge completes", async () => {
    assert.ok(approved, "needs the first test");
    const client = new AgentPay();
    assert.equal((await client.transactions.retrieve(approved.id)).id, approved.id);
    const done = await client.pay.waitForApproval(approved.id, { timeoutMs: WAIT_MS, ...fast });
    assert.equal(done.status, "completed");
    assert.match(done.stripe_charge_id ?? "", /^pi_/); // a Stripe PaymentIntent
  });

  it("declines a payment above the per-transaction limit: BudgetExceededError with the declined transaction", async () => {
    const client = new AgentPay();
    await assert.rejects(client.pay.request(another("too large", { amount: LARGE })), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.equal(error.httpStatus, 402);
      assert.equal(error.code, "per_transaction_limit_exceeded");
      assert.equal(error.transaction?.status, "declined");
      assert.equal(error.transaction?.decision_reason, "per_transaction_limit_exceeded");
      assert.equal(error.transaction?.amount, LARGE);
      assert.equal(error.requested, LARGE);
      assert.ok(error.limit > 0 && error.limit < LARGE, `limit ${error.limit}`);
      assert.ok(error.requestId);
      return true;
    });
  });

  it("declines a payment over the daily limit: BudgetExceededError, again on replay", { skip: needs("AGENTPAY_TEST_DAILY_LIMIT_API_KEY") }, async () => {
    const client = new AgentPay({ apiKey: env.AGENTPAY_TEST_DAILY_LIMIT_API_KEY });
    await client.pay.request(another("daily 1", { amount: DAILY }));
    const over = another("daily 2", { amount: DAILY });
    let declined;
    await assert.rejects(client.pay.request(over), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.equal(error.httpStatus, 402);
      assert.equal(error.code, "daily_limit_exceeded");
      assert.equal(error.spent, DAILY);
      assert.equal(error.requested, DAILY);
      declined = error.transaction;
      return true;
    });
    assert.equal(declined?.status, "declined");
    await assert.rejects(client.pay.request(over), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.equal(error.httpStatus, 200);
      assert.equal(error.transaction?.id, declined.id);
      return true;
    });
  });

  it("declines by the policy an admin set: a weekly limit and a blocked merchant, as typed errors", { skip: needs("AGENTPAY_TEST_ADMIN_KEY", "AGENTPAY_TEST_POLICY_AGENT_ID", "AGENTPAY_TEST_POLICY_API_KEY") }, async () => {
    const policy = {
      limits: {
        per_transaction_limit: 200,
        daily_limit: null,
        weekly_limit: 300,
        monthly_limit: null,
        approval_threshold: 200,
        max_requests_per_minute: 20,
        max_payments_per_day: null,
      },
      merchants: { allow: [], block: ["*.ads.example"], limits: [] },
      approval: { new_merchant: false, dual_approval_above: null },
    };
    const put = await fetch(`${env.AGENTPAY_BASE_URL}/v1/dashboard/agents/${env.AGENTPAY_TEST_POLICY_AGENT_ID}/policy`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${env.AGENTPAY_TEST_ADMIN_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify(policy),
    });
    const agent = await put.json();
    assert.equal(put.status, 200, JSON.stringify(agent));
    assert.deepEqual(agent.policy.merchants.block, ["*.ads.example"]);

    const client = new AgentPay({ apiKey: env.AGENTPAY_TEST_POLICY_API_KEY });
    assert.equal((await client.pay.request(another("weekly 1", { amount: 200 }))).status, "approved");
    await assert.rejects(client.pay.request(another("weekly 2", { amount: 200 })), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.deepEqual([error.httpStatus, error.type, error.code], [402, "budget", "weekly_limit_exceeded"]);
      assert.deepEqual([error.limit, error.spent, error.requested, error.merchant], [300, 200, 200, null]);
      assert.deepEqual([error.isMerchantRule, error.isOrganizationLimit], [false, false]);
      assert.equal(error.message, "Weekly limit of $3.00 would be exceeded ($2.00 already spent or held, $2.00 requested).");
      assert.equal(error.transaction?.decision_reason, "weekly_limit_exceeded");
      return true;
    });
    await assert.rejects(client.pay.request(another("blocked", { amount: 50, merchant: "Banners.Ads.Example" })), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.deepEqual([error.httpStatus, error.code], [402, "merchant_blocked"]);
      assert.deepEqual([error.limit, error.spent, error.requested, error.merchant], [null, null, 50, "banners.ads.example"]);
      assert.equal(error.isMerchantRule, true);
      assert.match(error.message, /banners\.ads\.example/);
      assert.equal(error.transaction?.status, "declined");
      return true;
    });
  });

  it("leaves a payment above the threshold pending: ApprovalTimeoutError after a short wait", { skip: needs("AGENTPAY_TEST_PENDING_AMOUNT") }, async () => {
    const { client, answers } = recordingClient();
    const tx = await client.pay.request(another("pending, unanswered", { amount: PENDING }));
    assert.equal(answers.at(-1).status, 202);
    assert.equal(tx.status, "pending");
    assert.equal(tx.decision_reason, "approval_required");
    assert.ok(tx.approval_expires_at);
    await assert.rejects(client.pay.waitForApproval(tx, { timeoutMs: 500, ...fast }), (error) => {
      assert.ok(error instanceof ApprovalTimeoutError, `got ${error}`);
      assert.equal(error.transaction?.status, "pending");
      return true;
    });
    assert.equal((await client.transactions.retrieve(tx.id)).status, "pending");
  });

  it("completes a pending payment once the email's approve link is clicked", { skip: needs("AGENTPAY_TEST_PENDING_AMOUNT", "AGENTPAY_OUTBOX_DIR") }, async () => {
    const client = new AgentPay();
    const tx = await client.pay.request(another("pending, approved", { amount: PENDING }));
    assert.equal(tx.status, "pending");
    const waiting = client.pay.waitForApproval(tx.id, { timeoutMs: WAIT_MS, ...fast });
    const click = await fetch(await approveLink(tx.id), { method: "POST", headers: { Accept: "application/json" } });
    assert.equal(click.status, 200);
    const done = await waiting;
    assert.equal(done.status, "completed");
    assert.equal(done.decision_reason, "approved_by_admin");
    assert.match(done.stripe_charge_id ?? "", /^pi_/); // a Stripe PaymentIntent
  });

  it("trips the circuit breaker: RateLimitError once, not retried, then AgentBlockedError", { skip: needs("AGENTPAY_TEST_RATE_LIMITED_API_KEY") }, async () => {
    const { client, answers } = recordingClient({ apiKey: env.AGENTPAY_TEST_RATE_LIMITED_API_KEY });
    for (let i = 0; i < RATE_LIMIT; i++) await client.pay.request(another(`burst ${i}`, { amount: 1 }));
    await assert.rejects(client.pay.request(another("one too many", { amount: 1 })), (error) => {
      assert.ok(error instanceof RateLimitError, `got ${error}`);
      assert.equal(error.httpStatus, 429);
      assert.equal(error.code, "rate_limited");
      // A trip without Retry-After is the blocked agent's: the error says only an admin can help.
      assert.equal(error.agentBlocked, !error.headers.has("retry-after"));
      return true;
    });
    assert.deepEqual(answers.map((a) => a.status).slice(RATE_LIMIT), [429], "the 429 was not retried");
    await assert.rejects(client.pay.request(another("blocked", { amount: 1 })), (error) => {
      assert.ok(error instanceof AgentBlockedError, `got ${error}`);
      assert.equal(error.code, "agent_blocked");
      return true;
    });
  });

  it("refuses a non-integer amount before sending it, in the words of the server's own 422", async () => {
    const { client, answers } = recordingClient();
    const dollars = another("dollars", { amount: 12.5 });
    let refused;
    await assert.rejects(client.pay.request(dollars), (error) => {
      refused = error;
      return error instanceof InvalidRequestError && error.message === AMOUNT_IN_CENTS;
    });
    assert.equal(answers.length, 0, "nothing was sent");
    const idempotencyKey = `ts-dollars-${run}`;
    const body = { ...dollars, idempotency_key: idempotencyKey };
    await assert.rejects(client.request("POST", "/v1/payment-request", { body, idempotencyKey }), (error) => {
      assert.ok(error instanceof InvalidRequestError, `got ${error}`);
      assert.equal(error.httpStatus, 422);
      assert.deepEqual(error.errors, refused.errors);
      return true;
    });
  });

  it("refuses a wrong key: AuthenticationError", async () => {
    const client = new AgentPay({ apiKey: `apk_test_${"0".repeat(64)}` });
    await assert.rejects(client.pay.request(another("wrong key")), (error) => {
      assert.ok(error instanceof AuthenticationError, `got ${error}`);
      assert.equal(error.httpStatus, 401);
      assert.equal(error.code, "invalid_api_key");
      return true;
    });
  });

  it("retries through two 503s with the same key and ends with one transaction", { skip: needs("AGENTPAY_TEST_FLAKY_BASE_URL", "AGENTPAY_TEST_RETRY_KEY") }, async () => {
    const { client, answers } = recordingClient({ baseUrl: env.AGENTPAY_TEST_FLAKY_BASE_URL, maxRetries: 3 });
    const tx = await client.pay.request(another("through a flaky proxy", { idempotencyKey: env.AGENTPAY_TEST_RETRY_KEY }));
    assert.deepEqual(
      answers.map((a) => a.status),
      [503, 503, 200],
    );
    assert.equal(tx.idempotency_key, env.AGENTPAY_TEST_RETRY_KEY);
    assert.ok(["approved", "completed"].includes(tx.status), tx.status);
    assert.equal((await client.transactions.retrieve(tx.id)).id, tx.id); // GETs pass the proxy untouched
  });
});
