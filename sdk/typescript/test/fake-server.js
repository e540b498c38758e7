// A local AgentPay stand-in: checks every request's signature like the server does, answers scripted responses.
import { createHash, createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:http";

export const API_KEY = "apk_test_" + "ab".repeat(32);

/** What the real server computes: HMAC-SHA256 keyed by hex sha256(key), over `ts.METHOD.path.body`. */
export function expectedSignature(apiKey, timestamp, method, path, body) {
  const key = createHash("sha256").update(apiKey).digest("hex");
  return createHmac("sha256", key).update(`${timestamp}.${method}.${path}.`).update(body).digest("hex");
}

export function transaction(overrides = {}) {
  return {
    id: randomUUID(),
    object: "transaction",
    organization_id: randomUUID(),
    agent_id: randomUUID(),
    amount: 1250,
    currency: "usd",
    merchant: "api.example.com",
    purpose: "one month of search API",
    context: {},
    status: "approved",
    decision_reason: "auto_approved",
    idempotency_key: "k-1",
    stripe_charge_id: null,
    approval_expires_at: null,
    created_at: "2025-11-24T10:00:00+00:00",
    completed_at: null,
    ...overrides,
  };
}

export function errorBody(type, code, message, extra = {}) {
  return { error: { type, code, message, request_id: "req_" + randomUUID().slice(0, 8), ...extra } };
}

/**
 * Starts a server. `respond(request)` returns `{status, body, headers}` or the string "destroy" (drop the
 * connection) or "hang" (never answer). Each request is recorded with its raw body and whether its signature held.
 */
export async function startFakeServer(respond, { apiKey = API_KEY } = {}) {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      const raw = Buffer.concat(chunks);
      const timestamp = req.headers["agentpay-timestamp"];
      const signature = req.headers["agentpay-signature"];
      const signatureOk =
        req.headers.authorization === `Bearer ${apiKey}` &&
        /^\d+$/.test(timestamp ?? "") &&
        Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300 &&
        signature === `v1=${expectedSignature(apiKey, timestamp, req.method, req.url, raw)}`;
      const recorded = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        raw: raw.toString("utf8"),
        json: raw.length ? JSON.parse(raw.toString("utf8")) : null,
        signatureOk,
      };
      requests.push(recorded);
      if (!signatureOk) {
        return send(res, 401, errorBody("authentication", "invalid_signature", "bad signature"));
      }
      const answer = await respond(recorded, requests.length);
      if (answer === "destroy") return req.socket.destroy();
      if (answer === "hang") return;
      send(res, answer.status, answer.body, answer.headers);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

/** Answers `script[i]` to the i-th request (the last entry repeats). */
export function scripted(script) {
  let index = 0;
  return () => script[Math.min(index++, script.length - 1)];
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "X-Request-Id": "req_header", ...headers });
  res.end(text);
}
