/* Per-SKU inventory snapshots {epoch, version, count}: seeded from the page's
 * data-cursor and counts, replaced only by newer snapshots, and turned back into
 * the long-poll's `since` cursor. */

// A cursor token is "epoch:version"; the epoch may hold ':' itself, so split at the
// last one. A bare number is a version without an epoch.
export function parseCursor(token) {
  const at = token.lastIndexOf(':');
  const epoch = at >= 0 ? token.slice(0, at) : '';
  const version = parseInt(at >= 0 ? token.slice(at + 1) : token, 10);
  return { epoch: epoch, version: Number.isFinite(version) ? version : -1 };
}

// `readCount(sku)` gives the count the page was rendered with (NaN if none);
// `onInstance(name)` hears the instance a snapshot names.
export function createSnapshots(skus, cursors, readCount, onInstance) {
  const state = {};             // sku -> {epoch, version, count}; window.bbShop.state
  let onChange = function () {};

  skus.forEach(function (sku, i) {
    const cursor = parseCursor(cursors[i] || '');
    const count = readCount(sku);
    state[sku] = {
      epoch: cursor.epoch,
      version: cursor.version,
      count: Number.isFinite(count) ? count : 0
    };
  });

  // Apply a snapshot only if it is newer: other epoch (Redis re-initialised)
  // or a greater version within the same epoch. Returns true if applied.
  function apply(snap) {
    if (!snap || typeof snap !== 'object' || typeof snap.sku !== 'string') return false;
    if (typeof snap.instance === 'string') onInstance(snap.instance);
    const st = state[snap.sku];
    if (!st) return false;
    const epoch = snap.epoch == null ? '' : String(snap.epoch);
    const version = Number(snap.version);
    const count = Number(snap.inventoryCount);
    if (!Number.isFinite(version) || !Number.isFinite(count)) return false;
    if (epoch === st.epoch && version <= st.version) return false;
    st.epoch = epoch;
    st.version = version;
    st.count = count;
    onChange(snap.sku);
    return true;
  }

  // A message of either transport: one snapshot, a list, or {instance, books: [...]}.
  // Returns true if any snapshot was applied.
  function applyPayload(data) {
    let applied = false;
    if (!data || typeof data !== 'object') return false;
    if (Array.isArray(data)) {
      data.forEach(function (s) { if (apply(s)) applied = true; });
      return applied;
    }
    if (Array.isArray(data.books)) {
      if (typeof data.instance === 'string') onInstance(data.instance);
      data.books.forEach(function (s) { if (apply(s)) applied = true; });
      return applied;
    }
    return apply(data);
  }

  // The long-poll's `since`, one "epoch:version" per SKU in page order. `resync` puts
  // the first cursor one version back, so the server answers at once with the current
  // state instead of parking the request.
  function since(resync) {
    return skus.map(function (sku, i) {
      const st = state[sku];
      const version = Math.max(0, resync && i === 0 ? st.version - 1 : st.version);
      return st.epoch + ':' + version;
    }).join(',');
  }

  return {
    state: state,
    apply: apply,
    applyPayload: applyPayload,
    since: since,
    // The one listener for applied snapshots (the view), set once wired.
    onChange: function (listener) { onChange = listener; }
  };
}
