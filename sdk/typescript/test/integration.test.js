// Against a real AgentPay server: runs only when AGENTPAY_BASE_URL and AGENTPAY_API_KEY are set (e.g. from
// .agentpay/dev.json after `make run`: base_url and agent_key). The agent's approval threshold must be at least
// AGENTPAY_TEST_SMALL_AMOUNT (default 100 cents) and its per-transaction limit below AGENTPAY_TEST_LARGE_AMOUNT
// (default 100000000, the API's maximum). Each run uses a fresh purpose, so it never replays an older run.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";

import { AgentPay, BudgetExceededError, deriveIdempotencyKey } from "../dist/index.js";

const { AGENTPAY_BASE_URL, AGENTPAY_API_KEY } = process.env;
const skip =
  AGENTPAY_BASE_URL && AGENTPAY_API_KEY
    ? false
    : "integration tests need AGENTPAY_BASE_URL and AGENTPAY_API_KEY (a running server and an agent key)";
if (skip) console.log(`skipping integration tests: ${skip}`);

const SMALL = Number(process.env.AGENTPAY_TEST_SMALL_AMOUNT ?? 100);
const LARGE = Number(process.env.AGENTPAY_TEST_LARGE_AMOUNT ?? 100_000_000);
const WAIT_MS = Number(process.env.AGENTPAY_TEST_WAIT_MS ?? 60_000);

/** A client whose fetch records each answer's status and replay header, to check the wire-level outcome. */
function recordingClient() {
  const answers = [];
  const client = new AgentPay({
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      answers.push({ status: response.status, replayed: response.headers.get("idempotent-replayed") });
      return response;
    },
  });
  return { client, answers };
}

describe("integration against a real server", { skip, concurrency: false }, () => {
  const run = randomUUID();
  const payment = {
    amount: SMALL,
    merchant: "sdk-ts-integration.example",
    purpose: `TypeScript SDK integration run ${run}`,
    context: { run, sdk: "typescript" },
  };
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
    const done = await client.pay.waitForApproval(approved.id, { timeoutMs: WAIT_MS, pollIntervalMs: 500 });
    assert.equal(done.status, "completed");
    assert.ok(done.stripe_charge_id);
  });

  it("declines a payment above the per-transaction limit: BudgetExceededError with the declined transaction", async () => {
    const client = new AgentPay();
    await assert.rejects(client.pay.request({ ...payment, amount: LARGE, purpose: `${payment.purpose} (too large)` }), (error) => {
      assert.ok(error instanceof BudgetExceededError, `got ${error}`);
      assert.equal(error.httpStatus, 402);
      assert.equal(error.code, "per_transaction_limit_exceeded");
      assert.equal(error.transaction?.status, "declined");
      assert.equal(error.transaction?.decision_reason, "per_transaction_limit_exceeded");
      assert.equal(error.transaction?.amount, LARGE);
      assert.ok(error.requestId);
      return true;
    });
  });
});
