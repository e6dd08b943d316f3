/* Burt's Books live: live inventory counts and the Add/Remove cart buttons.
 * Vanilla ES2017, no libraries. Works on the book page (data-page="book")
 * and the catalog (data-page="catalog"); pages work without it too. */
(function () {
  'use strict';

  var root = document.getElementById('shop');
  var statusEl = document.getElementById('live-status');

  var BASE_MS = 250;            // backoff base
  var CAP_MS = 10000;           // backoff cap
  var WS_RETRY_MS = 60000;      // retry WebSocket while on long-poll
  var MAX_WS_FAILS = 3;         // failed reconnects before long-poll
  var LP_CLIENT_TIMEOUT_MS = 45000; // server holds ~25 s

  var LABELS = {
    none: 'live updates off',
    connecting: 'connecting…',
    websocket: 'live: WebSocket',
    longpoll: 'live: long-poll',
    reconnecting: 'reconnecting…',
    offline: 'offline'
  };

  var state = {};               // sku -> {epoch, version, count}
  var skus = [];
  var page = '';
  var inCart = false;
  var busy = false;
  var transport = 'none';
  var instance = statusEl ? (statusEl.getAttribute('data-instance') || '') : '';
  var stopped = false;

  // ---------- status indicator ----------
  function renderStatus() {
    if (!statusEl) return;
    var text = LABELS[transport] || transport;
    if (instance && (transport === 'websocket' || transport === 'longpoll')) {
      text += ' · via ' + instance;
    }
    statusEl.textContent = text;
    statusEl.setAttribute('data-transport', transport);
    statusEl.setAttribute('data-instance', instance);
  }
  function setTransport(t) {
    if (transport === t) return;
    transport = t;
    renderStatus();
  }
  function setInstance(name) {
    if (typeof name !== 'string' || !name || name === instance) return;
    instance = name;
    renderStatus();
  }

  if (!root) { renderStatus(); return; }

  // ---------- state ----------
  page = root.getAttribute('data-page') || '';
  skus = (root.getAttribute('data-skus') || '').split(',').filter(Boolean);
  var cursors = (root.getAttribute('data-cursor') || '').split(',');

  function countEls(sku) {
    var sel = '.count[data-sku="' + (window.CSS && CSS.escape ? CSS.escape(sku) : sku) + '"]';
    var list = Array.prototype.slice.call(root.querySelectorAll(sel));
    if (page === 'book') {
      var c = document.getElementById('count');
      if (c && list.indexOf(c) < 0) list.push(c);
    }
    return list;
  }

  skus.forEach(function (sku, i) {
    var tok = cursors[i] || '';
    var at = tok.lastIndexOf(':');
    var epoch = at >= 0 ? tok.slice(0, at) : '';
    var version = parseInt(at >= 0 ? tok.slice(at + 1) : tok, 10);
    var el = countEls(sku)[0];
    var count = el ? parseInt(el.textContent, 10) : NaN;
    state[sku] = {
      epoch: epoch,
      version: Number.isFinite(version) ? version : -1,
      count: Number.isFinite(count) ? count : 0
    };
  });

  // ---------- rendering ----------
  var addBox = document.getElementById('add-to-cart');
  var removeBox = document.getElementById('remove-from-cart');
  var addBtn = document.getElementById('add-button');
  var removeBtn = document.getElementById('remove-button');
  var msgEl = document.getElementById('cart-message');

  if (page === 'book') {
    var attr = root.getAttribute('data-in-cart');
    inCart = attr ? attr === 'true' : !!(removeBox && removeBox.style.display !== 'none');
  }

  function showMessage(text, kind) {
    if (!msgEl) return;
    msgEl.textContent = text || '';
    msgEl.className = 'cart-message' + (text && kind ? ' ' + kind : '');
  }

  function updateButtons() {
    if (page !== 'book' || !addBtn || !skus.length) return;
    var st = state[skus[0]];
    var soldOut = st.count <= 0 && !inCart;
    if (!busy) addBtn.disabled = soldOut;
    addBtn.textContent = soldOut ? 'Sold out' : 'Add to Cart';
    if (addBox) addBox.classList.toggle('sold-out', soldOut);
  }

  function setCartView(holding) {
    inCart = holding;
    root.setAttribute('data-in-cart', holding ? 'true' : 'false');
    if (addBox) { addBox.hidden = false; addBox.style.display = holding ? 'none' : ''; }
    if (removeBox) { removeBox.hidden = false; removeBox.style.display = holding ? '' : 'none'; }
    updateButtons();
  }

  function render(sku) {
    var st = state[sku];
    countEls(sku).forEach(function (el) {
      el.textContent = String(st.count);
      // the catalog's card, or the book page's "Only N left in stock" line
      var box = el.closest('.card') || el.closest('.stock');
      if (box) box.classList.toggle('sold-out', st.count <= 0);
    });
    if (page === 'book') updateButtons();
  }

  // Apply a snapshot only if it is newer: other epoch (Redis re-initialised)
  // or a greater version within the same epoch. Returns true if applied.
  function applySnapshot(snap) {
    if (!snap || typeof snap !== 'object' || typeof snap.sku !== 'string') return false;
    if (typeof snap.instance === 'string') setInstance(snap.instance);
    var st = state[snap.sku];
    if (!st) return false;
    var epoch = snap.epoch == null ? '' : String(snap.epoch);
    var version = Number(snap.version);
    var count = Number(snap.inventoryCount);
    if (!Number.isFinite(version) || !Number.isFinite(count)) return false;
    if (epoch === st.epoch && version <= st.version) return false;
    st.epoch = epoch;
    st.version = version;
    st.count = count;
    render(snap.sku);
    return true;
  }

  function handlePayload(data) {
    var applied = false;
    if (!data || typeof data !== 'object') return false;
    if (Array.isArray(data)) {
      data.forEach(function (s) { if (applySnapshot(s)) applied = true; });
      return applied;
    }
    if (Array.isArray(data.books)) {
      if (typeof data.instance === 'string') setInstance(data.instance);
      data.books.forEach(function (s) { if (applySnapshot(s)) applied = true; });
      return applied;
    }
    return applySnapshot(data);
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  function backoff(attempt) {
    return Math.random() * Math.min(CAP_MS, BASE_MS * Math.pow(2, attempt));
  }

  // ---------- cart buttons ----------
  var FALLBACK_MESSAGES = {
    400: 'That request could not be understood. Please reload the page.',
    403: 'Your session has expired. Please reload the page.',
    404: 'That book could not be found.',
    409: 'Sorry, the last copy just went to another shopper.',
    413: 'That request was too large.',
    503: 'The shop is busy right now. Please try again in a moment.'
  };

  async function submitCart(form, button) {
    var field = function (n) { var el = form.elements.namedItem(n); return el ? el.value : ''; };
    var action = field('action');
    var sessionEl = document.getElementById('session');
    var body = new URLSearchParams();
    body.set('session', field('session') || (sessionEl ? sessionEl.value : ''));
    body.set('action', action);
    body.set('sku', field('sku') || skus[0] || '');

    busy = true;
    if (button) button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      var res = await fetch(form.getAttribute('action') || '/cart', {
        method: 'POST',
        headers: { 'Accept': 'application/json' },
        body: body,
        credentials: 'same-origin',
        cache: 'no-store'
      });
      setInstance(res.headers.get('X-Instance'));
      var data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      if (res.ok && data && !data.error) {
        applySnapshot(data);
        var holding = typeof data.inCart === 'boolean' ? data.inCart : action === 'add';
        showMessage('');
        busy = false;
        setCartView(holding);
        var next = holding ? removeBtn : addBtn;
        if (next && !next.disabled) next.focus();
      } else {
        if (data && data.sku && data.version != null) applySnapshot(data);
        var text = (data && typeof data.message === 'string' && data.message) ||
          FALLBACK_MESSAGES[res.status] || ('Something went wrong (' + res.status + '). Please try again.');
        showMessage(text, 'error');
      }
    } catch (e) {
      showMessage('Could not reach the shop. Please check your connection and try again.', 'error');
    } finally {
      busy = false;
      form.removeAttribute('aria-busy');
      if (button) button.disabled = false;
      updateButtons();
    }
  }

  root.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains('cart-form')) return;
    ev.preventDefault();
    if (busy) return;
    var button = ev.submitter || form.querySelector('button[type="submit"]');
    submitCart(form, button);
  });

  if (page === 'book') updateButtons();

  // ---------- live transport ----------
  var params = new URLSearchParams(location.search);
  var forceLongPoll = params.get('transport') === 'longpoll';
  try { if (localStorage.getItem('bbForceLongPoll') === '1') forceLongPoll = true; } catch (e) { /* storage blocked */ }

  var ws = null;
  var wsEverOpened = false;
  var wsFails = 0;
  var wsAttempt = 0;
  var wsTimer = null;
  var lpGen = 0;
  var lpRunning = false;
  var lpController = null;

  function skuQuery() {
    var p = new URLSearchParams();
    skus.forEach(function (s) { p.append('sku', s); });
    return p;
  }

  function scheduleWs(ms) {
    clearTimeout(wsTimer);
    wsTimer = setTimeout(connectWs, ms);
  }

  function connectWs() {
    clearTimeout(wsTimer);
    wsTimer = null;
    if (stopped || ws) return;
    if (forceLongPoll || typeof WebSocket === 'undefined') { startLongPoll(); return; }
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      '/cart/status?' + skuQuery().toString();
    var sock;
    var opened = false;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      wsFailed();
      return;
    }
    ws = sock;
    sock.onopen = function () {
      if (ws !== sock) return;
      opened = true;
      wsEverOpened = true;
      wsFails = 0;
      wsAttempt = 0;
      stopLongPoll();
      setTransport('websocket');
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      handlePayload(msg);
    };
    sock.onerror = function () { /* a close event follows */ };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      if (stopped) return;
      if (opened) {
        // A live socket dropped: reconnect with backoff; the server's
        // open-snapshot catches us up once we are back.
        setTransport(navigator.onLine === false ? 'offline' : 'reconnecting');
        scheduleWs(backoff(wsAttempt++));
      } else {
        wsFailed();
      }
    };
  }

  function wsFailed() {
    if (stopped) return;
    if (lpRunning || !wsEverOpened) {
      // Never had a socket (or already on long-poll): poll, retry WS later.
      startLongPoll();
      scheduleWs(WS_RETRY_MS);
      return;
    }
    wsFails++;
    if (wsFails >= MAX_WS_FAILS) {
      wsFails = 0;
      startLongPoll();
      scheduleWs(WS_RETRY_MS);
    } else {
      setTransport('reconnecting');
      scheduleWs(backoff(wsAttempt++));
    }
  }

  // `resync`: put the first cursor one version back, so the server answers at once with
  // the current state instead of parking for up to ~25 s. Used for the first poll and
  // after a failure: it confirms the transport works (the indicator says so only then)
  // and catches up on whatever changed meanwhile.
  function lpUrl(resync) {
    var p = skuQuery();
    p.set('since', skus.map(function (s, i) {
      var version = Math.max(0, resync && i === 0 ? state[s].version - 1 : state[s].version);
      return state[s].epoch + ':' + version;
    }).join(','));
    return '/cart/status?' + p.toString();
  }

  function startLongPoll() {
    if (lpRunning || stopped) return;
    lpRunning = true;
    // keep showing "reconnecting…" after a dropped socket until a poll answers
    if (transport !== 'reconnecting' && transport !== 'offline') setTransport('connecting');
    longPollLoop(++lpGen);
  }

  function stopLongPoll() {
    lpRunning = false;
    lpGen++;
    if (lpController) { try { lpController.abort(); } catch (e) { /* ignore */ } }
    lpController = null;
  }

  async function longPollLoop(gen) {
    var failures = 0;
    var resync = true;
    while (gen === lpGen && !stopped) {
      var ctl = typeof AbortController !== 'undefined' ? new AbortController() : null;
      lpController = ctl;
      var guard = ctl ? setTimeout(function () { ctl.abort(); }, LP_CLIENT_TIMEOUT_MS) : null;
      var started = Date.now();
      var ok = false;
      var applied = false;
      var probe = resync;
      try {
        var res = await fetch(lpUrl(probe), {
          headers: { 'Accept': 'application/json' },
          credentials: 'same-origin',
          cache: 'no-store',
          signal: ctl ? ctl.signal : undefined
        });
        if (gen !== lpGen) break;
        setInstance(res.headers.get('X-Instance'));
        if (res.ok) {
          applied = handlePayload(await res.json());
          ok = true;
        }
      } catch (e) {
        ok = false;
      } finally {
        clearTimeout(guard);
      }
      if (gen !== lpGen || stopped) break;
      if (ok) {
        failures = 0;
        resync = false;
        setTransport('longpoll');
        if (probe && wsEverOpened && !forceLongPoll) {
          // We are on long-poll because a socket that worked kept failing (an instance
          // or the network went away), not because WebSockets are blocked: now that the
          // shop answers again, try a socket soon rather than in WS_RETRY_MS.
          scheduleWs(BASE_MS + backoff(2));
        }
        // Guard against a hot loop if the server answers at once with nothing new.
        if (!probe && !applied && Date.now() - started < 500) await sleep(1000);
      } else {
        resync = true;
        setTransport(navigator.onLine === false ? 'offline' : 'reconnecting');
        await sleep(backoff(failures++));
      }
    }
  }

  window.addEventListener('online', function () {
    if (stopped) return;
    if (!ws && !lpRunning) { wsAttempt = 0; connectWs(); }
  });
  window.addEventListener('offline', function () {
    if (!ws || ws.readyState !== 1) setTransport('offline');
  });
  window.addEventListener('pagehide', function (ev) {
    if (ev.persisted) return;
    stopped = true;
    clearTimeout(wsTimer);
    stopLongPoll();
    if (ws) { var s = ws; ws = null; try { s.close(); } catch (e) { /* ignore */ } }
  });

  window.bbShop = {
    state: state,
    transport: function () { return transport; },
    instance: function () { return instance; },
    inCart: function () { return inCart; },
    applySnapshot: applySnapshot
  };

  if (skus.length) {
    setTransport('connecting');
    if (forceLongPoll) startLongPoll(); else connectWs();
  } else {
    renderStatus();
  }
})();
