// The package as its two kinds of importer load it by name, through package.json "exports": import and require().
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { it } from "node:test";

const require = createRequire(import.meta.url);

it("import gets the ES module build and require() the CommonJS one, with the same exports", async () => {
  const esm = await import("agentpay-spend");
  const cjs = require("agentpay-spend");
  assert.match(require.resolve("agentpay-spend"), /dist\/cjs\/index\.js$/);
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(cjs.VERSION, esm.VERSION);
  const client = new cjs.AgentPay({ apiKey: `apk_test_${"ab".repeat(32)}`, baseUrl: "http://127.0.0.1:9/" });
  assert.equal(client.baseUrl, "http://127.0.0.1:9");
  assert.ok(new cjs.RateLimitError({ message: "m" }) instanceof cjs.AgentPayError);
});
