// The shared, byte-exact vectors of sdk/testdata (written by sdk/testdata/generate.py, checked by every SDK).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { deriveIdempotencyKey, signRequest, verifyWebhook, WebhookSignatureError } from "../dist/esm/index.js";

const TESTDATA = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "testdata");

const FORMATS = {
  "signatures.json": { api_key: "string", timestamp: "number", method: "string", path: "string", body: "string", signature: "string" },
  "idempotency_keys.json": { params: "object", key: "string" },
  "webhooks.json": { api_key: "string", now: "number", payload: "string", header: "string", valid: "boolean" },
};

/** The cases of one file, or null if it is not there yet; a file that is there but malformed fails the run. */
function load(file) {
  const path = join(TESTDATA, file);
  if (!existsSync(path)) return null;
  const cases = JSON.parse(readFileSync(path, "utf8"));
  assert.ok(Array.isArray(cases) && cases.length > 0, `${file}: expected a non-empty JSON array`);
  cases.forEach((c, i) => {
    for (const [field, type] of Object.entries(FORMATS[file])) {
      assert.equal(typeof c[field], type, `${file}[${i}] (${c.name}): "${field}" should be a ${type}`);
    }
  });
  return cases;
}

function suite(file, check) {
  const cases = existsSync(TESTDATA) ? load(file) : null;
  describe(`shared vectors: ${file}`, () => {
    if (cases === null) {
      it(`skipped: ${join(TESTDATA, file)} is not there yet`, (t) => t.skip("no vectors file"));
      return;
    }
    cases.forEach((c, i) => it(c.name ?? `case ${i}`, () => check(c)));
  });
}

suite("signatures.json", (c) => {
  assert.equal(
    signRequest({ apiKey: c.api_key, timestamp: c.timestamp, method: c.method, path: c.path, body: c.body }),
    c.signature,
  );
});

suite("idempotency_keys.json", (c) => {
  assert.equal(deriveIdempotencyKey(c.params), c.key);
});

suite("webhooks.json", (c) => {
  const verify = () => verifyWebhook({ payload: c.payload, signatureHeader: c.header, apiKey: c.api_key, now: c.now });
  if (c.valid) assert.deepEqual(verify(), JSON.parse(c.payload));
  else assert.throws(verify, WebhookSignatureError);
});
