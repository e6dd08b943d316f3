/* Every timing of the live connection, in one place so they are tuned together. */

export const BASE_MS = 250;                // backoff base
export const CAP_MS = 10000;               // backoff cap
export const WS_RETRY_MS = 60000;          // retry WebSocket while on long-poll
export const MAX_WS_FAILS = 3;             // failed reconnects before long-poll
// The server's long-poll hold and heartbeat interval come from the page (data-longpoll-s,
// data-heartbeat-s); these are the defaults the server starts with.
export const LP_HOLD_MS = 25000;
export const LP_MARGIN_MS = 5000;          // a poll unanswered past hold + margin is given up
export const HEARTBEAT_MS = 2000;
export const MISSED_HEARTBEATS = 2;        // then the server counts as silent: reconnect
// A poll answered this fast with nothing new waits LP_IDLE_PAUSE_MS: no hot loop.
export const LP_FAST_ANSWER_MS = 500;
export const LP_IDLE_PAUSE_MS = 1000;

// Exponential backoff with full jitter, so the windows of a stopped instance do not
// all come back at the same moment.
export function backoff(attempt) {
  return Math.random() * Math.min(CAP_MS, BASE_MS * Math.pow(2, attempt));
}

export function sleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}
