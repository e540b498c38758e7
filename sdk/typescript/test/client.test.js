import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AgentBlockedError,
  AgentPay,
  AgentPayError,
  APIConnectionError,
  APIError,
  ApprovalTimeoutError,
  AuthenticationError,
  BudgetExceededError,
  ConflictError,
  IdempotencyError,
  InvalidRequestError,
  NotFoundError,
  PaymentDeclinedError,
  PermissionDeniedError,
  RateLimitError,
  backoffDelayMs,
  deriveIdempotencyKey,
} from "../dist/esm/index.js";
import { API_KEY, errorBody, scripted, startFakeServer, transaction } from "./fake-server.js";

/** A client against `server` whose waits are recorded instead of slept. */
function clientFor(server, options = {}) {
  const sleeps = [];
  const client = new AgentPay({
    apiKey: API_KEY,
    baseUrl: server.baseUrl,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
  return { client, sleeps };
}

const PAYMENT = { amount: 1250, merchant: "api.example.com", purpose: "one month of search API" };

describe("AgentPay constructor", () => {
  it("refuses to start without an API key, saying how to give one", () => {
    const saved = process.env.AGENTPAY_API_KEY;
    delete process.env.AGENTPAY_API_KEY;
    try {
      assert.throws(() => new AgentPay(), (error) => {
        assert.ok(error instanceof AuthenticationError);
        assert.ok(error instanceof AgentPayError);
        assert.match(error.message, /AGENTPAY_API_KEY/);
        return true;
      });
    } finally {
      if (saved !== undefined) process.env.AGENTPAY_API_KEY = saved;
    }
  });

  it("falls back to AGENTPAY_API_KEY and AGENTPAY_BASE_URL, then to the local default", () => {
    const saved = { key: process.env.AGENTPAY_API_KEY, url: process.env.AGENTPAY_BASE_URL };
    try {
      process.env.AGENTPAY_API_KEY = API_KEY;
      process.env.AGENTPAY_BASE_URL = "https://agentpay.example.com/";
      assert.equal(new AgentPay().baseUrl, "https://agentpay.example.com");
      delete process.env.AGENTPAY_BASE_URL;
      const client = new AgentPay();
      assert.equal(client.baseUrl, "http://127.0.0.1:8000");
      assert.equal(client.maxRetries, 3);
    } finally {
      for (const [name, value] of [["AGENTPAY_API_KEY", saved.key], ["AGENTPAY_BASE_URL", saved.url]]) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe("pay.request", () => {
  it("sends a signed body with the derived idempotency key in body and header, and returns the 201 transaction", async () => {
    const approved = transaction();
    const server = await startFakeServer(() => ({ status: 201, body: approved }));
    try {
      const { client } = clientFor(server);
      const result = await client.pay.request({ ...PAYMENT, context: { task: "t-42", "é": "ü" } });
      assert.deepEqual(result, approved);
      const [request] = server.requests;
      assert.equal(request.method, "POST");
      assert.equal(request.path, "/v1/payment-request");
      assert.ok(request.signatureOk);
      const key = deriveIdempotencyKey({ ...PAYMENT, context: { task: "t-42", "é": "ü" } });
      assert.match(key, /^ap_[0-9a-f]{64}$/);
      assert.equal(request.json.idempotency_key, key);
      assert.equal(request.headers["idempotency-key"], key);
      assert.deepEqual(request.json, {
        amount: 1250,
        currency: "usd",
        merchant: "api.example.com",
        purpose: "one month of search API",
        context: { task: "t-42", "é": "ü" },
        idempotency_key: key,
      });
      assert.equal(request.headers["content-type"], "application/json");
    } finally {
      await server.close();
    }
  });

  it("uses the caller's idempotency key and callback URL as given", async () => {
    const server = await startFakeServer(() => ({ status: 202, body: transaction({ status: "pending" }) }));
    try {
      const { client } = clientFor(server);
      const result = await client.pay.request({
        ...PAYMENT,
        idempotencyKey: "order-7",
        callbackUrl: "https://agent.example.com/hooks",
      });
      assert.equal(result.status, "pending");
      const [request] = server.requests;
      assert.equal(request.json.idempotency_key, "order-7");
      assert.equal(request.headers["idempotency-key"], "order-7");
      assert.equal(request.json.callback_url, "https://agent.example.com/hooks");
    } finally {
      await server.close();
    }
  });

  it("returns a 200 idempotent replay as the transaction", async () => {
    const existing = transaction({ status: "completed", stripe_charge_id: "ch_1" });
    const server = await startFakeServer(() => ({
      status: 200,
      body: existing,
      headers: { "Idempotent-Replayed": "true" },
    }));
    try {
      const { client } = clientFor(server);
      assert.deepEqual(await client.pay.request(PAYMENT), existing);
    } finally {
      await server.close();
    }
  });

  for (const reason of ["daily_limit_exceeded", "merchant_blocked", "payment_count_exceeded"]) {
    it(`raises BudgetExceededError on a 200 replay of a payment the policy declined (${reason})`, async () => {
      const declined = transaction({ status: "declined", decision_reason: reason });
      const server = await startFakeServer(() => ({
        status: 200,
        body: declined,
        headers: { "Idempotent-Replayed": "true" },
      }));
      try {
        const { client } = clientFor(server);
        await assert.rejects(client.pay.request(PAYMENT), (error) => {
          assert.ok(error instanceof BudgetExceededError);
          assert.equal(error.httpStatus, 200);
          assert.equal(error.code, reason);
          assert.deepEqual(error.transaction, declined);
          assert.deepEqual([error.limit, error.spent, error.requested], [null, null, declined.amount]);
          return true;
        });
      } finally {
        await server.close();
      }
    });
  }


  it("throws APIError when a 2xx answer is not a transaction (a proxy's page, say)", async () => {
    const server = await startFakeServer(() => ({ status: 200, body: "<html>captive portal</html>" }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request(PAYMENT), (error) => error instanceof APIError && error.code === "unexpected_response");
    } finally {
      await server.close();
    }
  });

  it("rejects a non-finite amount or context number before sending anything", async () => {
    const server = await startFakeServer(() => ({ status: 201, body: transaction() }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request({ ...PAYMENT, amount: Number.NaN }), InvalidRequestError);
      await assert.rejects(client.pay.request({ ...PAYMENT, context: { x: Infinity } }), InvalidRequestError);
      assert.equal(server.requests.length, 0);
    } finally {
      await server.close();
    }
  });

  it("refuses an amount that is not an integer number of cents, saying so, before sending anything", async () => {
    const server = await startFakeServer(() => ({ status: 201, body: transaction() }));
    const sentence = "amount is an integer number of cents: 500 means $5.00";
    try {
      const { client } = clientFor(server);
      for (const amount of [5.5, 0.1, "500", true, null, undefined, 500n, Number.NaN, Infinity, 2 ** 53, {}]) {
        await assert.rejects(client.pay.request({ ...PAYMENT, amount }), (error) => {
          assert.ok(error instanceof InvalidRequestError, `${String(amount)}: got ${error}`);
          assert.equal(error.message, sentence);
          assert.equal(error.code, "validation_error");
          assert.deepEqual(error.errors, [{ field: "amount", message: sentence }]);
          return true;
        });
      }
      assert.equal(server.requests.length, 0);
    } finally {
      await server.close();
    }
  });
});

describe("retries", () => {
  it("retries 503, 503 then 201: one result, same body and idempotency key, every attempt validly signed", async () => {
    const approved = transaction();
    const unavailable = errorBody("unavailable", "budget_unavailable", "Retry later.");
    const server = await startFakeServer(
      scripted([
        { status: 503, body: unavailable, headers: { "Retry-After": "2" } },
        { status: 503, body: unavailable },
        { status: 201, body: approved },
      ]),
    );
    try {
      const { client, sleeps } = clientFor(server);
      const result = await client.pay.request(PAYMENT);
      assert.deepEqual(result, approved);
      assert.equal(server.requests.length, 3);
      assert.ok(server.requests.every((r) => r.signatureOk));
      const keys = new Set(server.requests.map((r) => r.headers["idempotency-key"]));
      assert.equal(keys.size, 1);
      assert.equal(new Set(server.requests.map((r) => r.raw)).size, 1);
      assert.equal(server.requests[0].json.idempotency_key, [...keys][0]);
      // The first 503 said Retry-After: 2; the second gave none, so full jitter under 0.5 s.
      assert.equal(sleeps.length, 2);
      assert.equal(sleeps[0], 2000);
      assert.ok(sleeps[1] >= 0 && sleeps[1] < 500);
    } finally {
      await server.close();
    }
  });

  it("signs each retry with a fresh timestamp", async () => {
    const server = await startFakeServer(
      scripted([{ status: 500, body: errorBody("api_error", "internal_error", "x") }, { status: 201, body: transaction() }]),
    );
    try {
      // The wait between attempts is real here (1.1 s) so the clock moves to a new second.
      const client = new AgentPay({ apiKey: API_KEY, baseUrl: server.baseUrl, sleep: (ms) => new Promise((r) => setTimeout(r, 1100)) });
      await client.pay.request(PAYMENT);
      const [first, second] = server.requests.map((r) => Number(r.headers["agentpay-timestamp"]));
      assert.ok(second > first, `${second} > ${first}`);
      assert.ok(server.requests.every((r) => r.signatureOk));
    } finally {
      await server.close();
    }
  });

  it("gives up after maxRetries and throws APIError carrying the last answer", async () => {
    const server = await startFakeServer(() => ({
      status: 502,
      body: errorBody("api_error", "bad_gateway", "upstream down"),
    }));
    try {
      const { client, sleeps } = clientFor(server, { maxRetries: 2 });
      await assert.rejects(client.pay.request(PAYMENT), (error) => {
        assert.ok(error instanceof APIError);
        assert.equal(error.httpStatus, 502);
        assert.equal(error.code, "bad_gateway");
        return true;
      });
      assert.equal(server.requests.length, 3);
      assert.equal(sleeps.length, 2);
    } finally {
      await server.close();
    }
  });

  it("retries a dropped connection, then succeeds", async () => {
    const approved = transaction();
    const server = await startFakeServer(scripted(["destroy", { status: 201, body: approved }]));
    try {
      const { client, sleeps } = clientFor(server);
      assert.deepEqual(await client.pay.request(PAYMENT), approved);
      assert.equal(server.requests.length, 2);
      assert.equal(server.requests[0].headers["idempotency-key"], server.requests[1].headers["idempotency-key"]);
      assert.equal(sleeps.length, 1);
    } finally {
      await server.close();
    }
  });

  it("throws APIConnectionError (an APIError) when the server cannot be reached after the retries", async () => {
    const server = await startFakeServer(() => ({ status: 200, body: {} }));
    const baseUrl = server.baseUrl;
    await server.close();
    const sleeps = [];
    const client = new AgentPay({ apiKey: API_KEY, baseUrl, maxRetries: 3, sleep: async (ms) => void sleeps.push(ms) });
    await assert.rejects(client.transactions.retrieve("tx"), (error) => {
      assert.ok(error instanceof APIConnectionError);
      assert.ok(error instanceof APIError);
      assert.equal(error.httpStatus, null);
      assert.equal(error.code, "network_error");
      assert.match(error.message, new RegExp(`^Could not reach AgentPay at ${baseUrl}/v1/transactions/tx after 4 attempts: .*ECONNREFUSED`));
      return true;
    });
    assert.equal(sleeps.length, 3);
  });

  it("says where it tried and how often: 1 attempt, N attempts", async () => {
    const server = await startFakeServer(() => ({ status: 200, body: {} }));
    const baseUrl = server.baseUrl;
    await server.close();
    for (const [maxRetries, attempts] of [[0, "1 attempt"], [2, "3 attempts"]]) {
      const client = new AgentPay({ apiKey: API_KEY, baseUrl, maxRetries, sleep: async () => {} });
      await assert.rejects(client.pay.request(PAYMENT), (error) => {
        assert.ok(error instanceof APIConnectionError, `got ${error}`);
        assert.ok(
          error.message.startsWith(`Could not reach AgentPay at ${baseUrl}/v1/payment-request after ${attempts}: `),
          error.message,
        );
        return true;
      });
    }
  });

  it("treats a per-attempt time limit as a network failure", async () => {
    const server = await startFakeServer(() => "hang");
    try {
      const { client } = clientFor(server, { timeoutMs: 100, maxRetries: 1 });
      await assert.rejects(client.transactions.retrieve("tx"), (error) => {
        assert.ok(error instanceof APIConnectionError);
        assert.equal(error.code, "timeout");
        assert.equal(
          error.message,
          `Could not reach AgentPay at ${server.baseUrl}/v1/transactions/tx after 2 attempts: no answer within 100 ms`,
        );
        return true;
      });
      assert.equal(server.requests.length, 2);
    } finally {
      await server.close();
    }
  });

  it("backs off with full jitter: uniform below min(8 s, 0.25 s * 2^n)", () => {
    assert.equal(backoffDelayMs(0, () => 0.999999), 249);
    assert.equal(backoffDelayMs(3, () => 0.5), 1000);
    assert.equal(backoffDelayMs(10, () => 0.999999), 7999);
    assert.equal(backoffDelayMs(2, () => 0), 0);
  });
});

describe("error mapping (4xx is never retried)", () => {
  const cases = [
    [400, errorBody("invalid_request", "invalid_token", "bad"), InvalidRequestError],
    [401, errorBody("authentication", "invalid_api_key", "The API key is not valid."), AuthenticationError],
    [401, errorBody("authentication", "timestamp_out_of_range", "clock"), AuthenticationError],
    [403, errorBody("permission", "agent_blocked", "blocked"), AgentBlockedError],
    [403, errorBody("permission", "agent_disabled", "disabled"), AgentBlockedError],
    [403, errorBody("permission", "permission_denied", "no"), PermissionDeniedError],
    [404, errorBody("not_found", "not_found", "No such object."), NotFoundError],
    [409, errorBody("conflict", "idempotency_key_reused", "reused"), IdempotencyError],
    [409, errorBody("conflict", "request_in_progress", "in progress"), IdempotencyError],
    [409, errorBody("conflict", "already_decided", "decided"), ConflictError],
    [410, errorBody("gone", "link_expired", "expired"), InvalidRequestError],
    [413, errorBody("invalid_request", "payload_too_large", "too large"), InvalidRequestError],
    [422, errorBody("invalid_request", "unsupported_currency", "Only 'usd' is supported."), InvalidRequestError],
    [429, errorBody("rate_limit", "rate_limited", "slow down"), RateLimitError],
  ];
  for (const [status, body, ErrorClass] of cases) {
    it(`${status} ${body.error.code} -> ${ErrorClass.name}, one request`, async () => {
      const server = await startFakeServer(() => ({ status, body, headers: { "Retry-After": "60" } }));
      try {
        const { client, sleeps } = clientFor(server);
        await assert.rejects(client.pay.request(PAYMENT), (error) => {
          assert.equal(error.constructor, ErrorClass);
          assert.ok(error instanceof AgentPayError);
          assert.equal(error.httpStatus, status);
          assert.equal(error.type, body.error.type);
          assert.equal(error.code, body.error.code);
          assert.equal(error.message, body.error.message);
          assert.equal(error.requestId, body.error.request_id);
          assert.deepEqual(error.body, body);
          return true;
        });
        assert.equal(server.requests.length, 1);
        assert.equal(sleeps.length, 0);
      } finally {
        await server.close();
      }
    });
  }

  it("402 -> BudgetExceededError with the declined transaction and the limit figures", async () => {
    const declined = transaction({
      amount: 1000,
      status: "declined",
      decision_reason: "weekly_limit_exceeded",
    });
    const message = "Weekly limit of $50.00 would be exceeded ($42.00 already spent or held, $10.00 requested).";
    const body = {
      ...declined,
      ...errorBody("budget", "weekly_limit_exceeded", message, { limit: 5000, spent: 4200, requested: 1000 }),
    };
    const server = await startFakeServer(() => ({ status: 402, body }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request({ ...PAYMENT, amount: 1000 }), (error) => {
        assert.ok(error instanceof BudgetExceededError);
        assert.equal(error.httpStatus, 402);
        assert.equal(error.code, "weekly_limit_exceeded");
        assert.equal(error.message, message);
        assert.deepEqual(error.transaction, declined);
        assert.equal(error.transaction.status, "declined");
        assert.deepEqual([error.limit, error.spent, error.requested, error.merchant], [5000, 4200, 1000, null]);
        return true;
      });
      assert.equal(server.requests.length, 1);
    } finally {
      await server.close();
    }
  });

  it("402 takes the figures from the error object only, never out of the message", async () => {
    const declined = transaction({ amount: 9000, status: "declined", decision_reason: "daily_limit_exceeded" });
    const body = {
      ...declined,
      ...errorBody("budget", "daily_limit_exceeded", "Daily limit of 5000 would be exceeded (spent 4200, requested 9000)."),
    };
    const server = await startFakeServer(() => ({ status: 402, body }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request({ ...PAYMENT, amount: 9000 }), (error) => {
        assert.equal(error.limit, null);
        assert.equal(error.spent, null);
        assert.equal(error.requested, 9000); // the declined transaction's amount
        return true;
      });
    } finally {
      await server.close();
    }
  });

  it("422 validation_error carries the errors list", async () => {
    const errors = [{ field: "amount", message: "must be at least 1" }];
    const server = await startFakeServer(() => ({
      status: 422,
      body: errorBody("invalid_request", "validation_error", "amount: must be at least 1", { errors }),
    }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request({ ...PAYMENT, amount: 0 }), (error) => {
        assert.ok(error instanceof InvalidRequestError);
        assert.deepEqual(error.errors, errors);
        return true;
      });
    } finally {
      await server.close();
    }
  });

  it("429 -> RateLimitError with retryAfter from the header", async () => {
    const server = await startFakeServer(() => ({
      status: 429,
      body: errorBody("rate_limit", "rate_limited", "slow down"),
      headers: { "Retry-After": "60" },
    }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.pay.request(PAYMENT), (error) => {
        assert.ok(error instanceof RateLimitError);
        assert.equal(error.retryAfter, 60);
        assert.equal(error.agentBlocked, false);
        assert.equal(error.message, "slow down");
        return true;
      });
    } finally {
      await server.close();
    }
  });

  it("429 without Retry-After: the circuit breaker blocked the agent; not retried, the server's words passed on", async () => {
    const tripped =
      "This agent sent more than 2 payment requests in 60 s, so the circuit breaker blocked it. Retrying will not " +
      "help: an admin must unblock it in the dashboard (Agents, then Unblock).";
    const server = await startFakeServer(() => ({ status: 429, body: errorBody("rate_limit", "rate_limited", tripped) }));
    try {
      const { client, sleeps } = clientFor(server);
      await assert.rejects(client.pay.request(PAYMENT), (error) => {
        assert.ok(error instanceof RateLimitError, `got ${error}`);
        assert.equal(error.agentBlocked, true);
        assert.equal(error.retryAfter, null);
        assert.equal(error.message, tripped);
        return true;
      });
      assert.equal(server.requests.length, 1);
      assert.deepEqual(sleeps, []);
    } finally {
      await server.close();
    }
  });

  it("an error without the error shape still maps by status, request id from X-Request-Id", async () => {
    const server = await startFakeServer(() => ({ status: 404, body: "<html>no</html>" }));
    try {
      const { client } = clientFor(server);
      await assert.rejects(client.transactions.retrieve("nope"), (error) => {
        assert.ok(error instanceof NotFoundError);
        assert.equal(error.requestId, "req_header");
        assert.equal(error.body, "<html>no</html>");
        assert.match(error.message, /404/);
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

describe("transactions.retrieve", () => {
  it("GETs /v1/transactions/{id}, signed over an empty body, with the id escaped", async () => {
    const tx = transaction({ id: "a/b c" });
    const server = await startFakeServer(() => ({ status: 200, body: tx }));
    try {
      const { client } = clientFor(server);
      assert.deepEqual(await client.transactions.retrieve("a/b c"), tx);
      const [request] = server.requests;
      assert.equal(request.method, "GET");
      assert.equal(request.path, "/v1/transactions/a%2Fb%20c");
      assert.equal(request.raw, "");
      assert.ok(request.signatureOk);
      assert.equal(request.headers["idempotency-key"], undefined);
    } finally {
      await server.close();
    }
  });

  it("signs the base URL's path prefix and query as sent", async () => {
    const server = await startFakeServer((request) => ({ status: 200, body: transaction({ id: request.path }) }));
    try {
      const { client } = clientFor(server, { baseUrl: `${server.baseUrl}/prod/` });
      const tx = await client.transactions.retrieve("t1");
      assert.equal(tx.id, "/prod/v1/transactions/t1");
      assert.ok(server.requests[0].signatureOk);
    } finally {
      await server.close();
    }
  });
});

describe("pay.waitForApproval", () => {
  it("keeps polling through pending and approved, and returns the completed transaction", async () => {
    const base = transaction({ status: "pending", decision_reason: "approval_required" });
    const server = await startFakeServer(
      scripted([
        { status: 200, body: base },
        { status: 200, body: { ...base, status: "approved", decision_reason: "approved_by_admin" } },
        {
          status: 200,
          body: { ...base, status: "completed", decision_reason: "approved_by_admin", stripe_charge_id: "ch_1" },
        },
      ]),
    );
    try {
      const { client, sleeps } = clientFor(server);
      const done = await client.pay.waitForApproval(base.id, { timeoutMs: 60_000, pollIntervalMs: 1000 });
      assert.equal(done.status, "completed");
      assert.equal(done.stripe_charge_id, "ch_1");
      assert.equal(server.requests.length, 3);
      assert.ok(server.requests.every((r) => r.method === "GET" && r.path === `/v1/transactions/${base.id}`));
      assert.deepEqual(sleeps, [1000, 1000]);
    } finally {
      await server.close();
    }
  });

  for (const [status, reason] of [
    ["declined", "declined_by_admin"],
    ["declined", "charge_failed"],
    ["timed_out", "approval_timed_out"],
  ]) {
    it(`${status} (${reason}) -> PaymentDeclinedError with the reason and transaction`, async () => {
      const tx = transaction({ status, decision_reason: reason });
      const server = await startFakeServer(() => ({ status: 200, body: tx }));
      try {
        const { client } = clientFor(server);
        await assert.rejects(client.pay.waitForApproval(tx.id, { timeoutMs: 1000 }), (error) => {
          assert.ok(error instanceof PaymentDeclinedError);
          assert.equal(error.reason, reason);
          assert.deepEqual(error.transaction, tx);
          return true;
        });
      } finally {
        await server.close();
      }
    });
  }

  it("throws ApprovalTimeoutError with the last transaction when time runs out", async () => {
    const tx = transaction({ status: "pending", decision_reason: "approval_required" });
    const server = await startFakeServer(() => ({ status: 200, body: tx }));
    try {
      const client = new AgentPay({ apiKey: API_KEY, baseUrl: server.baseUrl });
      const started = Date.now();
      await assert.rejects(client.pay.waitForApproval(tx.id, { timeoutMs: 150, pollIntervalMs: 40 }), (error) => {
        assert.ok(error instanceof ApprovalTimeoutError);
        assert.deepEqual(error.transaction, tx);
        return true;
      });
      assert.ok(Date.now() - started < 1000);
      assert.ok(server.requests.length >= 3);
    } finally {
      await server.close();
    }
  });

  it("stops when the caller's signal aborts", async () => {
    const tx = transaction({ status: "pending", decision_reason: "approval_required" });
    const server = await startFakeServer(() => ({ status: 200, body: tx }));
    try {
      const client = new AgentPay({ apiKey: API_KEY, baseUrl: server.baseUrl });
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error("agent shutting down")), 50);
      await assert.rejects(
        client.pay.waitForApproval(tx.id, { timeoutMs: 60_000, pollIntervalMs: 5000, signal: controller.signal }),
        /agent shutting down/,
      );
    } finally {
      await server.close();
    }
  });

  it("accepts the transaction itself, and waits 10 minutes by default polling every 5 s", async () => {
    const tx = transaction({ status: "pending", decision_reason: "approval_required" });
    const server = await startFakeServer(() => ({ status: 200, body: tx }));
    try {
      const sleeps = [];
      let clock = 0;
      const realNow = Date.now;
      Date.now = () => clock;
      try {
        const client = new AgentPay({
          apiKey: API_KEY,
          baseUrl: server.baseUrl,
          sleep: async (ms) => {
            sleeps.push(ms);
            clock += ms;
          },
        });
        await assert.rejects(client.pay.waitForApproval(tx), ApprovalTimeoutError);
      } finally {
        Date.now = realNow;
      }
      assert.equal(sleeps.length, 120);
      assert.ok(sleeps.every((ms) => ms === 5000));
      assert.ok(server.requests.every((r) => r.path === `/v1/transactions/${tx.id}`));
    } finally {
      await server.close();
    }
  });
});
