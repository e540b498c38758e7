/** When to retry a request and how long to wait: exponential backoff with full jitter. */

/** First backoff step, in milliseconds. */
export const BASE_DELAY_MS = 250;
/** Largest backoff step, in milliseconds. */
export const MAX_DELAY_MS = 8_000;
/** A server's `Retry-After` is honoured up to this long, so a misconfigured header cannot hang the agent. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** Waits `ms` milliseconds; rejects with the signal's reason when it aborts. Injectable so tests never wait. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const sleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** Only network failures and 5xx answers are retried: a 4xx would answer the same again (and 429 blocks the agent). */
export function shouldRetry(status: number | null): boolean {
  return status === null || status >= 500;
}

/** Full jitter: a uniform delay in `[0, min(cap, base * 2^retry))` for the `retry`-th retry (0-based). */
export function backoffDelayMs(retry: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** retry);
  return Math.floor(random() * ceiling);
}
