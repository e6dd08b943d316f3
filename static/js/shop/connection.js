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
import { BASE_MS, WS_RETRY_MS, MAX_WS_FAILS, LP_MARGIN_MS, MISSED_HEARTBEATS,
  backoff } from './timing.js';
import { createLongPoll } from './longpoll.js';

// forceLongPoll: never open a socket (?transport=longpoll or localStorage).
// timing: {holdMs, heartbeatMs} of the server that served the page.
export function createConnection(skus, status, snapshots, forceLongPoll, timing) {
  let state = State.NONE;
  let stopped = false;          // the page is going away: start nothing more
  let ws = null;                // the socket being opened or open
  let wsEverOpened = false;     // sockets work here: failures are outages, not a block
  let wsFails = 0;              // failed reopenings since a socket last worked
  let wsAttempt = 0;            // backoff exponent of socket reconnects
  let wsTimer = null;           // the next socket attempt
  let silence = null;           // fires when the open socket has been silent too long
  // a server that asked nothing of us still sends heartbeats; two missed (and a quarter
  // of one for a busy server's timer) mean it is hung or gone, even if the TCP connection
  // looks open. The last message came up to one interval before the server stopped, so
  // a silent server is noticed within 2.25 intervals of stopping (4.5 s by default).
  const silentMs = timing.heartbeatMs * MISSED_HEARTBEATS + timing.heartbeatMs / 4;

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
  }, timing.holdMs + LP_MARGIN_MS);

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
    // `since`: what this page has shown, so an instance that is behind it sends nothing
    // older on open (the count never goes back) and catches up from Redis first
    const query = skuQuery();
    query.set('since', snapshots.since(false));
    query.set('heartbeat', '1');
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      '/cart/status?' + query.toString();
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
      armSilence(sock);
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      armSilence(sock);
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && msg.type === 'heartbeat') return;
      snapshots.applyPayload(msg);
    };
    sock.onerror = function () { /* a close event follows */ };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      clearTimeout(silence);
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

  // The server spoke: it is alive until silentMs from now. A silent one is dropped at
  // once (a hung server would never finish the close handshake) and we reconnect,
  // through nginx, to an instance that answers.
  function armSilence(sock) {
    clearTimeout(silence);
    silence = setTimeout(function () {
      if (ws !== sock || stopped) return;
      ws = null;
      sock.onclose = null;
      try { sock.close(); } catch (e) { /* ignore */ }
      enter(droppedState());
      scheduleSocket(backoff(wsAttempt++));
    }, silentMs);
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
