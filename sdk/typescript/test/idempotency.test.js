import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";

import { canonicalJson, deriveIdempotencyKey } from "../dist/esm/index.js";

describe("canonicalJson", () => {
  it("sorts keys recursively, keeps array order, writes no whitespace", () => {
    assert.equal(canonicalJson({ b: 1, a: [3, { d: null, c: true }], "10": 0, "9": false }), '{"10":0,"9":false,"a":[3,{"c":true,"d":null}],"b":1}');
  });

  it("sorts keys by code point like Python, not by UTF-16 unit like Array.prototype.sort", () => {
    const keys = { "😀": 1, "｡": 2, a: 3 };
    assert.deepEqual(Object.keys(keys).sort(), ["a", "😀", "｡"]); // what JavaScript would do
    assert.equal(canonicalJson(keys), '{"a":3,"｡":2,"😀":1}');
  });

  it("leaves non-ASCII as is and escapes control characters like Python", () => {
    assert.equal(canonicalJson({ s: "café 日本 👩‍💻 / \"q\" \\ \n\t\b\f\r\u0001\u001f\u007f\u2028" }),
      '{"s":"café 日本 👩‍💻 / \\"q\\" \\\\ \\n\\t\\b\\f\\r\\u0001\\u001f\u007f\u2028"}');
  });

  it("writes integers as digits and fractions as Python's repr", () => {
    assert.equal(canonicalJson([1, -0, 1.0, 0.5, -2.25, 0.1, 1e-4, 1e-5, 1.5e-7, 123.456, 1e21, 2 ** 53 + 2]),
      "[1,0,1,0.5,-2.25,0.1,0.0001,1e-05,1.5e-07,123.456,1000000000000000000000,9007199254740994]");
  });

  it("rejects what JSON cannot say", () => {
    for (const bad of [NaN, Infinity, -Infinity, undefined, () => 1, 1n, new Date(0), { s: "\ud800" }, [undefined]]) {
      assert.throws(() => canonicalJson(bad), TypeError, String(bad));
    }
    const circular = {};
    circular.self = circular;
    assert.throws(() => canonicalJson(circular), /circular/);
  });

  it("agrees with Python's json.dumps(sort_keys, compact, ensure_ascii=False) on tricky input", (t) => {
    const python = ["python3", "python"].find((cmd) => spawnSync(cmd, ["--version"]).status === 0);
    if (!python) return t.skip("no python on PATH");
    const cases = [
      { "😀": "x", "｡": "y", "\uffff": 1, "\ue000": 2, "𐀀": 3 },
      { n: [0.1, 0.2, 1 / 3, 1e-5, 5e-324, 1.7976931348623157e308 / 1e300, -1.5, 1e15 + 0.5] },
      { s: "tab\tnl\nnul\u0000del\u007fline\u2028sep\u2029 \ud83d\ude00 é" },
      { nested: { z: [{ b: 1, a: 2 }], y: {} } },
    ];
    const script = `
import json, math, sys
def norm(v):
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v
for line in sys.stdin.read().split("\\n"):  # not splitlines(): it splits on U+2028
    print(json.dumps(norm(json.loads(line)), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False))
`;
    const result = spawnSync(python, ["-c", script], {
      input: cases.map((c) => JSON.stringify(c)).join("\n"),
      encoding: "utf8",
      env: { ...process.env, PYTHONIOENCODING: "utf-8" },
    });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(cases.map((c) => canonicalJson(c)), result.stdout.trimEnd().split("\n"));
  });
});

describe("deriveIdempotencyKey", () => {
  it("is ap_ + sha256 of the canonical params, with usd and {} as defaults", () => {
    const canonical = '{"amount":1250,"context":{},"currency":"usd","merchant":"api.example.com","purpose":"GPU hours"}';
    const expected = "ap_" + createHash("sha256").update(canonical).digest("hex");
    assert.equal(deriveIdempotencyKey({ amount: 1250, merchant: "api.example.com", purpose: "GPU hours" }), expected);
    assert.equal(
      deriveIdempotencyKey({ amount: 1250, merchant: "api.example.com", purpose: "GPU hours", currency: "usd", context: {} }),
      expected,
    );
  });

  it("changes with any parameter and ignores context key order", () => {
    const base = { amount: 1, merchant: "m", purpose: "p", context: { a: 1, b: 2 } };
    const key = deriveIdempotencyKey(base);
    assert.equal(deriveIdempotencyKey({ ...base, context: { b: 2, a: 1 } }), key);
    for (const change of [{ amount: 2 }, { merchant: "n" }, { purpose: "q" }, { context: { a: 1 } }]) {
      assert.notEqual(deriveIdempotencyKey({ ...base, ...change }), key);
    }
  });
});
