/* The live connection: a WebSocket first; long-poll when sockets are blocked or a
 * socket that worked keeps failing, trying a socket again meanwhile; jittered backoff
 * between attempts. `state` (a State) is the one explicit connection state, and
 * enter() is the only place that changes it:
 *   none -> connecting          start() on a page with SKUs
 *   any -> websocket            a socket opens
 *   websocket -> reconnecting   an open socket closes (offline if the browser is)
 *   * -> reconnecting           a socket that worked before fails to reopen (< MAX_WS_FAILS)
 *   * -> connecting             long-poll starts (reconnecting / offline are kept)
 *   * -> longpoll               a poll answers
 *   * -> reconnecting|offline   a poll fails
 *   * -> offline                the browser goes offline with no open socket */
import { State } from './status.js';
import { BASE_MS, WS_RETRY_MS, MAX_WS_FAILS, backoff } from './timing.js';
import { createLongPoll } from './longpoll.js';

// forceLongPoll: never open a socket (?transport=longpoll or localStorage).
export function createConnection(skus, status, snapshots, forceLongPoll) {
  let state = State.NONE;
  let stopped = false;          // the page is going away: start nothing more
  let ws = null;                // the socket being opened or open
  let wsEverOpened = false;     // sockets work here: failures are outages, not a block
  let wsFails = 0;              // failed reopenings since a socket last worked
  let wsAttempt = 0;            // backoff exponent of socket reconnects
  let wsTimer = null;           // the next socket attempt

  function enter(next) {
    if (state === next) return;
    state = next;
    status.show(next);
  }

  function droppedState() {
    return navigator.onLine === false ? State.OFFLINE : State.RECONNECTING;
  }

  function skuQuery() {
    const p = new URLSearchParams();
    skus.forEach(function (s) { p.append('sku', s); });
    return p;
  }

  const poll = createLongPoll({
    url: function (resync) {
      const p = skuQuery();
      p.set('since', snapshots.since(resync));
      return '/cart/status?' + p.toString();
    },
    onInstance: status.setInstance,
    onPayload: snapshots.applyPayload,
    onAnswer: function (probe) {
      enter(State.LONGPOLL);
      if (probe && wsEverOpened && !forceLongPoll) {
        // We are on long-poll because a socket that worked kept failing (an instance
        // or the network went away), not because WebSockets are blocked: now that the
        // shop answers again, try a socket soon rather than in WS_RETRY_MS.
        scheduleSocket(BASE_MS + backoff(2));
      }
    },
    onFailure: function () { enter(droppedState()); },
    stopped: function () { return stopped; }
  });

  function startLongPoll() {
    if (poll.running() || stopped) return;
    // keep showing "reconnecting…" after a dropped socket until a poll answers
    if (state !== State.RECONNECTING && state !== State.OFFLINE) enter(State.CONNECTING);
    poll.start();
  }

  function scheduleSocket(ms) {
    clearTimeout(wsTimer);
    wsTimer = setTimeout(connectSocket, ms);
  }

  function connectSocket() {
    clearTimeout(wsTimer);
    wsTimer = null;
    if (stopped || ws) return;
    if (forceLongPoll || typeof WebSocket === 'undefined') { startLongPoll(); return; }
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      '/cart/status?' + skuQuery().toString();
    let sock;
    let opened = false;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      socketFailed();
      return;
    }
    ws = sock;
    sock.onopen = function () {
      if (ws !== sock) return;
      opened = true;
      wsEverOpened = true;
      wsFails = 0;
      wsAttempt = 0;
      poll.stop();
      enter(State.WEBSOCKET);
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      snapshots.applyPayload(msg);
    };
    sock.onerror = function () { /* a close event follows */ };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      if (stopped) return;
      if (opened) {
        // A live socket dropped: reconnect with backoff; the server's
        // open-snapshot catches us up once we are back.
        enter(droppedState());
        scheduleSocket(backoff(wsAttempt++));
      } else {
        socketFailed();
      }
    };
  }

  // A socket could not be opened (blocked, refused, or nothing answers).
  function socketFailed() {
    if (stopped) return;
    if (poll.running() || !wsEverOpened) {
      // Never had a socket (or already on long-poll): poll, retry WS later.
      startLongPoll();
      scheduleSocket(WS_RETRY_MS);
      return;
    }
    wsFails++;
    if (wsFails >= MAX_WS_FAILS) {
      wsFails = 0;
      startLongPoll();
      scheduleSocket(WS_RETRY_MS);
    } else {
      enter(State.RECONNECTING);
      scheduleSocket(backoff(wsAttempt++));
    }
  }

  function listen(target) {
    target.addEventListener('online', function () {
      if (stopped) return;
      if (!ws && !poll.running()) { wsAttempt = 0; connectSocket(); }
    });
    target.addEventListener('offline', function () {
      if (!ws || ws.readyState !== 1) enter(State.OFFLINE);
    });
    target.addEventListener('pagehide', function (ev) {
      if (ev.persisted) return;   // kept in the back/forward cache: keep it all
      stopped = true;
      clearTimeout(wsTimer);
      poll.stop();
      if (ws) { const s = ws; ws = null; try { s.close(); } catch (e) { /* ignore */ } }
    });
  }

  function start() {
    enter(State.CONNECTING);
    if (forceLongPoll) startLongPoll(); else connectSocket();
  }

  return {
    state: function () { return state; },
    listen: listen,
    start: start
  };
}
