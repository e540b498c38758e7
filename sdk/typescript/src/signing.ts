/** Request signing (`AgentPay-Signature: v1=<hex>`), exactly as handbook/API.md defines it. */

import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** Lowercase hex SHA-256 of a string's UTF-8 bytes. */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** The HMAC key of an API key: the lowercase hex `sha256(api_key)` as ASCII bytes, the value the server stores. */
export function signingKey(apiKey: string): string {
  return sha256Hex(apiKey);
}

/** Lowercase hex HMAC-SHA256 of `message` under the signing key of `apiKey`. */
export function hmacHex(apiKey: string, message: string | Uint8Array): string {
  const mac = createHmac("sha256", signingKey(apiKey));
  if (typeof message === "string") mac.update(message, "utf8");
  else mac.update(message);
  return mac.digest("hex");
}

export interface SignRequestParams {
  apiKey: string;
  /** Unix seconds. */
  timestamp: number | string;
  /** HTTP method; upper-cased before signing. */
  method: string;
  /** Path including the query string, e.g. `/v1/transactions/abc?x=1`. */
  path: string;
  /** The raw body exactly as sent; empty for GET. */
  body?: string;
}

/** The hex of `AgentPay-Signature: v1=<hex>` over `"{timestamp}.{METHOD}.{path}.{raw_body}"`. */
export function signRequest({ apiKey, timestamp, method, path, body = "" }: SignRequestParams): string {
  return hmacHex(apiKey, `${timestamp}.${method.toUpperCase()}.${path}.${body}`);
}

/** The three authentication headers of an agent request. */
export function authHeaders(params: SignRequestParams): Record<string, string> {
  return {
    Authorization: `Bearer ${params.apiKey}`,
    "AgentPay-Timestamp": String(params.timestamp),
    "AgentPay-Signature": `v1=${signRequest(params)}`,
  };
}

/** Constant-time comparison of a computed lowercase hex digest with a received one. */
export function hexDigestsEqual(expected: string, received: string): boolean {
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(received, "utf8");
  // The length is not secret (it is always 64 for a real signature), so an early exit leaks nothing.
  return a.length === b.length && timingSafeEqual(a, b);
}
