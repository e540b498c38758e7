import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { DEFAULT_OPENAPI_PATH, compareErrorSchema, compareTransactionSchema } from "../scripts/check-openapi.js";

/** A schema like FastAPI/pydantic v2 exports for the Transaction model (OpenAPI 3.1, enums as $refs). */
function exported(overrides = {}) {
  const str = { type: "string" };
  const nullable = (schema) => ({ anyOf: [schema, { type: "null" }] });
  return {
    openapi: "3.1.0",
    components: {
      schemas: {
        TransactionStatus: { type: "string", enum: ["pending", "approved", "declined", "completed", "timed_out"] },
        DecisionReason: {
          type: "string",
          enum: ["auto_approved", "approval_required", "new_merchant_requires_approval", "approved_by_admin",
            "merchant_blocked", "merchant_not_allowed", "per_transaction_limit_exceeded",
            "merchant_daily_limit_exceeded", "daily_limit_exceeded", "weekly_limit_exceeded", "monthly_limit_exceeded",
            "organization_daily_limit_exceeded", "organization_monthly_limit_exceeded", "payment_count_exceeded",
            "declined_by_admin", "charge_failed", "approval_timed_out"],
        },
        ShadowVerdict: {
          type: "object",
          properties: {
            status: { $ref: "#/components/schemas/TransactionStatus" },
            decision_reason: { $ref: "#/components/schemas/DecisionReason" },
          },
        },
        ErrorObject: {
          type: "object",
          properties: {
            type: str, code: str, message: str, request_id: str,
            errors: nullable({ type: "array" }), limit: nullable({ type: "integer" }),
            spent: nullable({ type: "integer" }), requested: nullable({ type: "integer" }), merchant: nullable(str),
          },
        },
        Transaction: {
          type: "object",
          properties: {
            id: str, object: { const: "transaction" }, organization_id: str, agent_id: str, amount: { type: "integer" },
            currency: str, merchant: str, purpose: str, context: { type: "object" },
            status: { $ref: "#/components/schemas/TransactionStatus" },
            decision_reason: { $ref: "#/components/schemas/DecisionReason" },
            idempotency_key: str, stripe_charge_id: nullable(str), approval_expires_at: nullable(str),
            created_at: str, completed_at: nullable(str),
            shadow: nullable({ $ref: "#/components/schemas/ShadowVerdict" }),
            ...overrides,
          },
        },
      },
    },
  };
}

describe("check-openapi", () => {
  it("accepts a schema that matches the SDK's Transaction", () => {
    assert.deepEqual(compareTransactionSchema(exported()), []);
  });

  it("reports missing and extra fields, nullability and enum differences", () => {
    const doc = exported({ completed_at: { type: "string" }, refunded: { type: "boolean" } });
    delete doc.components.schemas.Transaction.properties.merchant;
    doc.components.schemas.TransactionStatus.enum.push("refunded");
    assert.deepEqual(compareTransactionSchema(doc).sort(), [
      "completed_at: nullable in the SDK, the opposite in openapi.json",
      "merchant: in the SDK, not in openapi.json",
      "refunded: in openapi.json, not in the SDK",
      "status: refunded in openapi.json, not in the SDK",
    ]);
  });

  it("reports error members the SDK does not type, and ones the schema lost", () => {
    const doc = exported();
    const error = doc.components.schemas.ErrorObject.properties;
    delete error.merchant;
    error.window = { type: "string" };
    assert.deepEqual(compareErrorSchema(exported()), []);
    assert.deepEqual(compareErrorSchema(doc).sort(), [
      "error.merchant: in the SDK, not in openapi.json",
      "error.window: in openapi.json, not in the SDK",
    ]);
  });

  it("matches the repository's openapi.json", (t) => {
    if (!existsSync(DEFAULT_OPENAPI_PATH)) return t.skip(`no ${DEFAULT_OPENAPI_PATH} yet`);
    const openapi = JSON.parse(readFileSync(DEFAULT_OPENAPI_PATH, "utf8"));
    assert.deepEqual(compareTransactionSchema(openapi), []);
    assert.deepEqual(compareErrorSchema(openapi), []);
  });
});
