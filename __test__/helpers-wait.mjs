// The one polling helper of the node tests: `sleep` and `waitFor`, shared by every suite and
// fixture (instead of a copy per file).

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (sync or async) every `everyMs` until it returns a truthy value, which it
 * resolves with; a `check` that throws counts as not yet. Rejects after `timeoutMs`, naming
 * `what` and the last value or error seen.
 */
export async function waitFor(what, check, timeoutMs = 5000, everyMs = 25) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(everyMs);
  }
}
