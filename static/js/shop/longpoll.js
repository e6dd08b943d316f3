/* The long-poll transport: GET /cart/status?since=… in a loop, each request cut off
 * by a client timeout; it reports answers and failures and decides nothing else. */
import { LP_FAST_ANSWER_MS, LP_IDLE_PAUSE_MS, backoff, sleep } from './timing.js';

// hooks: url(resync) -> the request URL; onInstance(X-Instance header);
// onPayload(json) -> true if it changed anything; onAnswer(wasResync) after an OK
// answer; onFailure() after a failed one; stopped() -> true once the page goes away.
// timeoutMs: a poll not answered by then is given up (the server's hold time and a margin).
export function createLongPoll(hooks, timeoutMs) {
  let generation = 0;           // bumped by start and stop: a loop of an older one ends
  let running = false;
  let controller = null;        // aborts the request in flight on stop

  async function loop(gen) {
    let failures = 0;
    let resync = true;          // the first poll and the one after a failure
    while (gen === generation && !hooks.stopped()) {
      const ctl = typeof AbortController !== 'undefined' ? new AbortController() : null;
      controller = ctl;
      const guard = ctl ? setTimeout(function () { ctl.abort(); }, timeoutMs) : null;
      const started = Date.now();
      const probe = resync;
      let ok = false;
      let applied = false;
      try {
        const res = await fetch(hooks.url(probe), {
          headers: { 'Accept': 'application/json' },
          credentials: 'same-origin',
          cache: 'no-store',
          signal: ctl ? ctl.signal : undefined
        });
        if (gen !== generation) break;
        hooks.onInstance(res.headers.get('X-Instance'));
        if (res.ok) {
          applied = hooks.onPayload(await res.json());
          ok = true;
        }
      } catch (e) {
        ok = false;
      } finally {
        clearTimeout(guard);
      }
      if (gen !== generation || hooks.stopped()) break;
      if (ok) {
        failures = 0;
        resync = false;
        hooks.onAnswer(probe);
        // Guard against a hot loop if the server answers at once with nothing new.
        if (!probe && !applied && Date.now() - started < LP_FAST_ANSWER_MS) await sleep(LP_IDLE_PAUSE_MS);
      } else {
        resync = true;
        hooks.onFailure();
        await sleep(backoff(failures++));
      }
    }
  }

  return {
    running: function () { return running; },
    start: function () {
      running = true;
      loop(++generation);
    },
    stop: function () {
      running = false;
      generation++;
      if (controller) { try { controller.abort(); } catch (e) { /* ignore */ } }
      controller = null;
    }
  };
}
