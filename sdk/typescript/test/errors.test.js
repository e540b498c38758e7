// How a 402 of the agent's spend policy becomes a BudgetExceededError: its code, figures and kind.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AgentPayError,
  BUDGET_DECLINE_REASONS,
  BudgetExceededError,
  DECISION_REASONS,
  errorFromResponse,
} from "../dist/esm/index.js";
import { errorBody, transaction } from "./fake-server.js";

/** The server's 402: the declined transaction with the budget error added. */
function declined(code, figures, amount = 2500) {
  const tx = transaction({ amount, merchant: "Banners.Ads.Example", status: "declined", decision_reason: code });
  return { tx, body: { ...tx, ...errorBody("budget", code, "In words.", figures) } };
}

function parse(body) {
  return errorFromResponse(402, new Headers({ "x-request-id": "req_header" }), body);
}

describe("BudgetExceededError from a 402", () => {
  const cases = [
    // [code, error figures, expected [limit, spent, requested, merchant], isMerchantRule, isOrganizationLimit]
    ["weekly_limit_exceeded", { limit: 50_000, spent: 48_000, requested: 2500 }, [50_000, 48_000, 2500, null], false, false],
    ["merchant_blocked", { merchant: "banners.ads.example" }, [null, null, 2500, "banners.ads.example"], true, false],
    ["merchant_not_allowed", { merchant: "banners.ads.example" }, [null, null, 2500, "banners.ads.example"], true, false],
    ["per_transaction_limit_exceeded", { limit: 2000, requested: 2500 }, [2000, null, 2500, null], false, false],
    ["merchant_daily_limit_exceeded", { limit: 5000, spent: 4000, requested: 2500 }, [5000, 4000, 2500, null], true, false],
    ["organization_daily_limit_exceeded", { limit: 9000, spent: 8000, requested: 2500 }, [9000, 8000, 2500, null], false, true],
    // Counted in payments, not cents.
    ["payment_count_exceeded", { limit: 100, spent: 100, requested: 2500 }, [100, 100, 2500, null], false, false],
  ];
  for (const [code, figures, expected, merchantRule, organization] of cases) {
    it(`${code}: code, figures and kind`, () => {
      const { tx, body } = declined(code, figures);
      const error = parse(body);
      assert.ok(error instanceof BudgetExceededError && error instanceof AgentPayError, `got ${error}`);
      assert.deepEqual([error.httpStatus, error.type, error.code, error.message], [402, "budget", code, "In words."]);
      assert.deepEqual([error.limit, error.spent, error.requested, error.merchant], expected);
      assert.deepEqual([error.isMerchantRule, error.isOrganizationLimit], [merchantRule, organization]);
      assert.deepEqual(error.transaction, tx, "the transaction without the error key");
      assert.equal(error.requestId, body.error.request_id);
    });
  }

  it("leaves figures of the wrong type or absent as null; requested falls back to the transaction's amount", () => {
    const { body } = declined("daily_limit_exceeded", { limit: true, spent: "12", requested: 1.5, merchant: 7 }, 700);
    const error = parse(body);
    assert.deepEqual([error.limit, error.spent, error.requested, error.merchant], [null, null, 700, null]);
  });

  it("survives a 402 without a transaction or an error object", () => {
    const error = parse("<html>Payment Required</html>");
    assert.ok(error instanceof BudgetExceededError);
    assert.deepEqual([error.code, error.transaction, error.limit, error.requested], [null, null, null, null]);
    assert.equal(error.requestId, "req_header");
    assert.equal(error.isMerchantRule, false);
  });

  it("groups every budget decline reason, and only those, as a decision reason", () => {
    assert.equal(BUDGET_DECLINE_REASONS.length, 10);
    assert.ok(BUDGET_DECLINE_REASONS.every((reason) => DECISION_REASONS.includes(reason)));
    const kind = (code) => {
      const error = new BudgetExceededError({ message: "", code, transaction: null });
      return error.isMerchantRule ? "merchant" : error.isOrganizationLimit ? "organization" : "agent";
    };
    assert.deepEqual(
      Object.fromEntries(BUDGET_DECLINE_REASONS.map((reason) => [reason, kind(reason)])),
      {
        merchant_blocked: "merchant",
        merchant_not_allowed: "merchant",
        per_transaction_limit_exceeded: "agent",
        merchant_daily_limit_exceeded: "merchant",
        daily_limit_exceeded: "agent",
        weekly_limit_exceeded: "agent",
        monthly_limit_exceeded: "agent",
        organization_daily_limit_exceeded: "organization",
        organization_monthly_limit_exceeded: "organization",
        payment_count_exceeded: "agent",
      },
    );
  });
});
