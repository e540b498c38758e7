/** Verification of decision webhooks (`AgentPay-Signature: t=<unix seconds>,v1=<hex>`). */

import { WebhookSignatureError } from "./errors.js";
import { hexDigestsEqual, hmacHex } from "./signing.js";
import type { WebhookEvent } from "./types.js";

export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

export interface VerifyWebhookParams {
  /** The raw request body exactly as received (not parsed and re-serialized JSON). */
  payload: string | Uint8Array;
  /** The `AgentPay-Signature` header. */
  signatureHeader: string | null | undefined;
  /** The agent's API key; the signing key is its hex sha256, as for requests. */
  apiKey: string;
  /** How far `t` may be from now, in seconds, inclusive. Default 300. */
  toleranceSeconds?: number;
  /** The current time as unix seconds or a Date (for tests); default the clock. */
  now?: number | Date;
}

/**
 * Checks that a webhook came from AgentPay, unaltered and recent, and returns the parsed event. Throws
 * `WebhookSignatureError` otherwise. Deliveries are at least once: dedupe on `event.id`.
 */
export function verifyWebhook({
  payload,
  signatureHeader,
  apiKey,
  toleranceSeconds = DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  now,
}: VerifyWebhookParams): WebhookEvent {
  if (!apiKey) throw new TypeError("verifyWebhook needs the agent's apiKey");
  const { timestamp, signatures } = parseSignatureHeader(signatureHeader);

  const nowSeconds = now === undefined ? Date.now() / 1000 : now instanceof Date ? now.getTime() / 1000 : now;
  if (!(Math.abs(nowSeconds - Number(timestamp)) <= toleranceSeconds)) {
    throw new WebhookSignatureError(
      `Webhook timestamp ${timestamp} is more than ${toleranceSeconds} s from now.`,
      "timestamp_out_of_range",
    );
  }

  const body = toBytes(payload);
  const expected = hmacHex(apiKey, Buffer.concat([Buffer.from(`${timestamp}.`, "ascii"), body]));
  if (!signatures.some((signature) => hexDigestsEqual(expected, signature))) {
    throw new WebhookSignatureError("Webhook signature does not match its body.", "invalid_signature");
  }

  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WebhookSignatureError("Webhook body is not JSON.", "invalid_payload");
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    throw new WebhookSignatureError("Webhook body is not a JSON object.", "invalid_payload");
  }
  return event as WebhookEvent;
}

/**
 * `t=<unix seconds>,v1=<hex>[, v1=<hex>...]`: several v1 entries during key rotation (one match suffices); other
 * schemes are ignored; an entry without `=`, or no `t`, a non-integer `t`, or no `v1` is malformed.
 */
function parseSignatureHeader(header: string | null | undefined): { timestamp: string; signatures: string[] } {
  if (!header) throw new WebhookSignatureError("Missing AgentPay-Signature header.", "missing_signature");
  let timestamp: string | null = null;
  const signatures: string[] = [];
  for (const item of header.split(",")) {
    const entry = item.trim();
    const index = entry.indexOf("=");
    if (index < 0) throw new WebhookSignatureError("Malformed AgentPay-Signature header.", "malformed_signature");
    const name = entry.slice(0, index);
    const value = entry.slice(index + 1);
    if (name === "t") timestamp = value;
    else if (name === "v1") signatures.push(value);
  }
  if (timestamp === null || !/^[0-9]+$/.test(timestamp) || signatures.length === 0) {
    throw new WebhookSignatureError(
      "AgentPay-Signature header needs t=<unix seconds> and v1=<hex>.",
      "malformed_signature",
    );
  }
  return { timestamp, signatures };
}

/** Builds an `AgentPay-Signature` header value for a payload (tests, and local tools that send webhooks). */
export function signWebhook({
  payload,
  apiKey,
  timestamp,
}: {
  payload: string | Uint8Array;
  apiKey: string;
  timestamp: number;
}): string {
  const body = toBytes(payload);
  return `t=${timestamp},v1=${hmacHex(apiKey, Buffer.concat([Buffer.from(`${timestamp}.`, "ascii"), body]))}`;
}

function toBytes(payload: string | Uint8Array): Buffer {
  return typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload);
}
