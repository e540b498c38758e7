/** Canonical JSON and the derived idempotency key, byte-for-byte the same as the Python SDK's. */

import { sha256Hex } from "./signing.js";
import type { Currency, JsonObject } from "./types.js";

/**
 * JSON as Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes it:
 * object keys sorted by code point at every depth, no whitespace, non-ASCII characters left as they are.
 *
 * Numbers: an integral number is written as plain digits (the Python SDK turns integral floats into ints first, since
 * JavaScript cannot tell `2.0` from `2`); a fractional one like Python's `repr(float)` (`0.5`, `1e-05`). NaN and
 * ±Infinity are rejected. Integers beyond ±2^53 lose precision in JavaScript before they get here, so the two SDKs
 * agree on them only when they are exact doubles: put big numbers in `context` as strings.
 */
export function canonicalJson(value: unknown): string {
  return write(value, new Set());
}

export interface IdempotencyKeyParams {
  amount: number;
  merchant: string;
  purpose: string;
  currency?: Currency;
  context?: JsonObject;
}

/**
 * The idempotency key used when the caller gives none: `"ap_" + sha256hex(canonicalJson({amount, currency, merchant,
 * purpose, context}))`, with `currency` defaulting to `usd` and `context` to `{}`. The same payment asked twice is
 * therefore a replay (the server answers `200` with the first transaction), never a second charge.
 */
export function deriveIdempotencyKey({ amount, merchant, purpose, currency, context }: IdempotencyKeyParams): string {
  return (
    "ap_" + sha256Hex(canonicalJson({ amount, currency: currency ?? "usd", merchant, purpose, context: context ?? {} }))
  );
}

function write(value: unknown, seen: Set<object>): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return writeNumber(value);
    case "string":
      return writeString(value);
    case "object":
      break;
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} is not JSON`);
  }
  const object = value as object;
  if (seen.has(object)) throw new TypeError("canonicalJson: circular structure");
  seen.add(object);
  try {
    if (Array.isArray(object)) return `[${object.map((item) => write(item, seen)).join(",")}]`;
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError(`canonicalJson: only plain objects and arrays are allowed, not ${object.constructor?.name}`);
    }
    const record = object as Record<string, unknown>;
    const keys = Object.keys(record).filter((key) => record[key] !== undefined);
    keys.sort(compareCodePoints);
    return `{${keys.map((key) => `${writeString(key)}:${write(record[key], seen)}`).join(",")}}`;
  } finally {
    seen.delete(object);
  }
}

/** Python sorts `str` by code point; JavaScript's default sort uses UTF-16 code units, which differ above U+FFFF. */
export function compareCodePoints(a: string, b: string): number {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const diff = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (diff !== 0) return diff;
  }
}

function writeString(text: string): string {
  // A lone surrogate cannot be encoded as UTF-8 (Python raises, JSON.stringify escapes it): refuse it.
  if (/\p{Surrogate}/u.test(text)) throw new TypeError("canonicalJson: string contains a lone surrogate");
  // JSON.stringify and Python's json.dumps (ensure_ascii=False) escape exactly the same characters the same way.
  return JSON.stringify(text);
}

function writeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`canonicalJson: ${n} is not allowed (not finite)`);
  if (Number.isInteger(n)) {
    // BigInt writes every digit (1e21 -> "1000000000000000000000"), as Python's int(1e21) does; -0 becomes "0".
    return BigInt(n).toString();
  }
  return pythonFloatRepr(n);
}

/**
 * `repr(float)` in Python: the shortest round-trip digits, scientific when the exponent is < -4 or >= 16 (a
 * fractional double is below 2^52, so in practice only the small side applies).
 */
function pythonFloatRepr(n: number): string {
  const [mantissa, exponentText] = n.toExponential().split("e") as [string, string];
  const exponent = Number(exponentText);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  const sign = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    const body = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const expSign = exponent < 0 ? "-" : "+";
    return `${sign}${body}e${expSign}${String(Math.abs(exponent)).padStart(2, "0")}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
  const intPart = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  const fracPart = digits.slice(exponent + 1);
  return `${sign}${intPart}.${fracPart || "0"}`;
}
