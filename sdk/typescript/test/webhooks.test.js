import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { AgentPayError, WebhookSignatureError, signWebhook, verifyWebhook } from "../dist/esm/index.js";
import { API_KEY, transaction } from "./fake-server.js";

const NOW = 1_764_000_000;
const event = { id: "evt_1", type: "transaction.completed", created_at: "2025-11-24T16:00:05+00:00", data: transaction() };
const payload = JSON.stringify(event);
const header = signWebhook({ payload, apiKey: API_KEY, timestamp: NOW });

function rejectsWith(code, params) {
  assert.throws(() => verifyWebhook({ apiKey: API_KEY, now: NOW, ...params }), (error) => {
    assert.ok(error instanceof WebhookSignatureError);
    assert.ok(error instanceof AgentPayError);
    assert.equal(error.code, code);
    return true;
  });
}

describe("verifyWebhook", () => {
  it("returns the parsed event for a valid signature (string or bytes payload)", () => {
    assert.deepEqual(verifyWebhook({ payload, signatureHeader: header, apiKey: API_KEY, now: NOW }), event);
    const bytes = new TextEncoder().encode(payload);
    assert.deepEqual(verifyWebhook({ payload: bytes, signatureHeader: header, apiKey: API_KEY, now: new Date(NOW * 1000) }), event);
  });

  it("uses the clock when no `now` is given", () => {
    const fresh = Math.floor(Date.now() / 1000);
    const signed = signWebhook({ payload, apiKey: API_KEY, timestamp: fresh });
    assert.equal(verifyWebhook({ payload, signatureHeader: signed, apiKey: API_KEY }).id, "evt_1");
  });

  it("rejects a tampered body", () => {
    rejectsWith("invalid_signature", { payload: payload.replace('"amount":1250', '"amount":9250'), signatureHeader: header });
  });

  it("rejects a signature made with another key", () => {
    rejectsWith("invalid_signature", { payload, signatureHeader: header, apiKey: "apk_test_" + "cd".repeat(32) });
  });

  it("rejects a stale or future timestamp, inclusive tolerance of 300 s", () => {
    assert.ok(verifyWebhook({ payload, signatureHeader: header, apiKey: API_KEY, now: NOW + 300 }));
    rejectsWith("timestamp_out_of_range", { payload, signatureHeader: header, now: NOW + 301 });
    rejectsWith("timestamp_out_of_range", { payload, signatureHeader: header, now: NOW - 301 });
    rejectsWith("timestamp_out_of_range", { payload, signatureHeader: header, now: NOW + 61, toleranceSeconds: 60 });
  });

  it("rejects a changed t (the signature binds it)", () => {
    rejectsWith("invalid_signature", { payload, signatureHeader: header.replace(`t=${NOW}`, `t=${NOW + 1}`) });
  });

  it("accepts any matching v1 among several (key rotation) and ignores other schemes", () => {
    const v1 = header.split("v1=")[1];
    const rotated = `t=${NOW}, v1=${"0".repeat(64)}, v0=abc, v1=${v1}`;
    assert.equal(verifyWebhook({ payload, signatureHeader: rotated, apiKey: API_KEY, now: NOW }).id, "evt_1");
  });

  it("rejects missing and malformed headers", () => {
    rejectsWith("missing_signature", { payload, signatureHeader: undefined });
    rejectsWith("missing_signature", { payload, signatureHeader: "" });
    rejectsWith("malformed_signature", { payload, signatureHeader: `t=${NOW}` });
    rejectsWith("malformed_signature", { payload, signatureHeader: `v1=${"0".repeat(64)}` });
    rejectsWith("malformed_signature", { payload, signatureHeader: `t=1e9,v1=${"0".repeat(64)}` });
    rejectsWith("malformed_signature", { payload, signatureHeader: `${NOW},${"0".repeat(64)}` });
  });

  it("rejects a correctly signed body that is not a JSON object", () => {
    for (const body of ["not json", "[1,2]"]) {
      rejectsWith("invalid_payload", { payload: body, signatureHeader: signWebhook({ payload: body, apiKey: API_KEY, timestamp: NOW }) });
    }
  });
});
