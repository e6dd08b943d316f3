/* Burt's Books live: live inventory counts and the Add/Remove cart buttons.
 * Entry module: reads the page and wires the modules under ./shop/. Works on the book
 * page (data-page="book") and the catalog (data-page="catalog"); pages work without
 * it too. templates/base.html maps every module to its versioned URL: a module added
 * here must be listed there. */
import { createStatus } from './shop/status.js';
import { createSnapshots } from './shop/snapshots.js';
import { createView, readCount } from './shop/render.js';
import { bindCart } from './shop/cart.js';
import { createConnection } from './shop/connection.js';
import { HEARTBEAT_MS, LP_HOLD_MS } from './shop/timing.js';

const root = document.getElementById('shop');
const status = createStatus(document.getElementById('live-status'));

if (root) start(root); else status.render();

// A duration the server put on the page, in seconds, as ms (the default if absent).
function seconds(root, attribute, defaultMs) {
  const value = parseFloat(root.getAttribute(attribute));
  return Number.isFinite(value) && value > 0 ? value * 1000 : defaultMs;
}

// ?transport=longpoll, or localStorage.bbForceLongPoll = '1', to try long-poll by hand.
function forcedLongPoll() {
  const params = new URLSearchParams(location.search);
  let force = params.get('transport') === 'longpoll';
  try { if (localStorage.getItem('bbForceLongPoll') === '1') force = true; } catch (e) { /* storage blocked */ }
  return force;
}

function start(root) {
  const page = root.getAttribute('data-page') || '';
  const skus = (root.getAttribute('data-skus') || '').split(',').filter(Boolean);
  const cursors = (root.getAttribute('data-cursor') || '').split(',');

  const snapshots = createSnapshots(skus, cursors,
    function (sku) { return readCount(root, page, sku); }, status.setInstance);
  const view = createView(root, page, skus, snapshots.state);
  snapshots.onChange(view.render);

  bindCart(root, skus, view, snapshots.apply, status.setInstance);
  if (page === 'book') view.updateButtons();

  const connection = createConnection(skus, status, snapshots, forcedLongPoll(), {
    holdMs: seconds(root, 'data-longpoll-s', LP_HOLD_MS),
    heartbeatMs: seconds(root, 'data-heartbeat-s', HEARTBEAT_MS)
  });
  connection.listen(window);

  window.bbShop = {
    state: snapshots.state,
    transport: connection.state,
    instance: status.instance,
    inCart: view.inCart,
    applySnapshot: snapshots.apply
  };

  if (skus.length) connection.start(); else status.render();
}
