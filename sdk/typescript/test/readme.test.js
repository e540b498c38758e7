// Runs every ```js block of README.md against a local fake server, so the documented examples keep working.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { signWebhook } from "../dist/esm/index.js";
import { API_KEY, errorBody, startFakeServer, transaction } from "./fake-server.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SDK_URL = pathToFileURL(join(ROOT, "dist", "esm", "index.js")).href;
const SDK_CJS = join(ROOT, "dist", "cjs", "index.js");
const blocks = [...readFileSync(join(ROOT, "README.md"), "utf8").matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

/**
 * A tiny AgentPay: up to 2000 cents approved, up to 10000 pending, above that declined, ads.example.com blocked (as
 * the repository README's example policy does); a poll finds it completed.
 */
function agentpayLike() {
  const transactions = new Map();
  return (request) => {
    if (request.method === "POST") {
      const { amount, merchant, purpose, context, idempotency_key } = request.json;
      const tx = transaction({ amount, merchant, purpose, context, idempotency_key });
      transactions.set(tx.id, tx);
      if (merchant === "ads.example.com") {
        Object.assign(tx, { status: "declined", decision_reason: "merchant_blocked" });
        const message = `Payments to ${merchant} are blocked by this agent's policy.`;
        return { status: 402, body: { ...tx, ...errorBody("budget", "merchant_blocked", message, { merchant }) } };
      }
      if (amount > 10_000) {
        Object.assign(tx, { status: "declined", decision_reason: "per_transaction_limit_exceeded" });
        const message = `Per-transaction limit of $100.00 would be exceeded ($${amount / 100} requested).`;
        const error = errorBody("budget", "per_transaction_limit_exceeded", message, { limit: 10_000, requested: amount });
        return { status: 402, body: { ...tx, ...error } };
      }
      if (amount > 2000) {
        Object.assign(tx, { status: "pending", decision_reason: "approval_required" });
        return { status: 202, body: tx };
      }
      return { status: 201, body: tx };
    }
    const tx = transactions.get(decodeURIComponent(request.path.split("/").at(-1)));
    if (!tx) return { status: 404, body: errorBody("not_found", "not_found", "No such object.") };
    Object.assign(tx, { status: "completed", decision_reason: "approved_by_admin", stripe_charge_id: "ch_readme" });
    return { status: 200, body: tx };
  };
}

function run(file, env) {
  const child = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, done, output: () => stdout };
}

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("README examples", () => {
  let server;
  let dir;
  before(async () => {
    server = await startFakeServer(agentpayLike());
    dir = mkdtempSync(join(tmpdir(), "agentpay-readme-"));
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has the six examples", () => assert.equal(blocks.length, 6));

  const expected = [
    /^[0-9a-f-]{36} approved auto_approved$/m,
    /^[0-9a-f-]{36} approved auto_approved$/m,
    /^per_transaction_limit_exceeded 10000 null 250000 [0-9a-f-]{36}$/m,
    /^the policy refuses this merchant: ads\.example\.com\nPayments to ads\.example\.com are blocked by this agent's policy\.$/m,
    /^paid: ch_readme$/m,
  ];
  blocks.forEach((block, index) => {
    it(`block ${index + 1} runs`, async () => {
      // A block that uses require() is CommonJS: it runs as a .cjs file against the CommonJS build.
      const commonjs = block.includes('require("agentpay-spend")');
      const file = join(dir, `block${index + 1}.${commonjs ? "cjs" : "mjs"}`);
      writeFileSync(
        file,
        block
          .replaceAll('from "agentpay-spend"', `from "${SDK_URL}"`)
          .replaceAll('require("agentpay-spend")', `require(${JSON.stringify(SDK_CJS)})`),
      );
      const env = { AGENTPAY_API_KEY: API_KEY, AGENTPAY_BASE_URL: server.baseUrl };
      if (!block.includes("createServer")) {
        const { code, stdout, stderr } = await run(file, env).done;
        assert.equal(code, 0, stderr);
        assert.match(stdout, expected[index]);
        return;
      }
      // The webhook receiver: start it, deliver one genuine and one forged event, stop it.
      const port = await freePort();
      const receiver = run(file, { ...env, PORT: String(port) });
      try {
        const payload = JSON.stringify({
          id: "evt_1",
          type: "transaction.completed",
          created_at: new Date().toISOString(),
          data: transaction({ status: "completed" }),
        });
        const header = signWebhook({ payload, apiKey: API_KEY, timestamp: Math.floor(Date.now() / 1000) });
        const deliver = (body) =>
          fetch(`http://127.0.0.1:${port}/`, { method: "POST", body, headers: { "AgentPay-Signature": header } });
        let answer;
        for (let i = 0; i < 50 && !answer; i++) {
          answer = await deliver(payload).catch(() => new Promise((r) => setTimeout(r, 100)));
        }
        assert.equal(answer.status, 204);
        assert.equal((await deliver(payload)).status, 204); // a redelivery, deduped
        const forged = await deliver(payload.replace("evt_1", "evt_2"));
        assert.equal(forged.status, 400);
        assert.equal(await forged.text(), "invalid_signature");
        assert.equal(receiver.output().match(/transaction\.completed/g)?.length, 1);
      } finally {
        receiver.child.kill();
        await receiver.done;
      }
    });
  });
});
