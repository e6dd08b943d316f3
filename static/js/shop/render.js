/* The shop's DOM: the live counts (book page and catalog), the Add/Remove boxes and
 * buttons, and the cart message. Owns the view's own state: in cart, busy. */

// Every element showing `sku`'s count; on the book page #count too.
export function countEls(root, page, sku) {
  const sel = '.count[data-sku="' + (window.CSS && CSS.escape ? CSS.escape(sku) : sku) + '"]';
  const list = Array.prototype.slice.call(root.querySelectorAll(sel));
  if (page === 'book') {
    const c = document.getElementById('count');
    if (c && list.indexOf(c) < 0) list.push(c);
  }
  return list;
}

// The count the page was rendered with, NaN if it shows none.
export function readCount(root, page, sku) {
  const el = countEls(root, page, sku)[0];
  return el ? parseInt(el.textContent, 10) : NaN;
}

// `state` is the snapshots' sku -> {count, ...} map, read when drawing.
export function createView(root, page, skus, state) {
  const addBox = document.getElementById('add-to-cart');
  const removeBox = document.getElementById('remove-from-cart');
  const addBtn = document.getElementById('add-button');
  const removeBtn = document.getElementById('remove-button');
  const msgEl = document.getElementById('cart-message');
  let inCart = false;
  let busy = false;             // a cart POST is under way

  if (page === 'book') {
    // data-in-cart says it; an older page only shows it by the Remove box
    const attr = root.getAttribute('data-in-cart');
    inCart = attr ? attr === 'true' : !!(removeBox && !removeBox.hidden &&
      removeBox.style.display !== 'none');
  }

  function showMessage(text, kind) {
    if (!msgEl) return;
    msgEl.textContent = text || '';
    msgEl.className = 'cart-message' + (text && kind ? ' ' + kind : '');
  }

  // Not sold out for the shopper who holds a copy: the 0 may be theirs.
  function updateButtons() {
    if (page !== 'book' || !addBtn || !skus.length) return;
    const st = state[skus[0]];
    const soldOut = st.count <= 0 && !inCart;
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
    const st = state[sku];
    countEls(root, page, sku).forEach(function (el) {
      el.textContent = String(st.count);
      // the catalog's card, or the book page's "Only N left in stock" line
      const box = el.closest('.card') || el.closest('.stock');
      if (box) box.classList.toggle('sold-out', st.count <= 0);
    });
    if (page === 'book') updateButtons();
  }

  return {
    addBtn: addBtn,
    removeBtn: removeBtn,
    render: render,
    updateButtons: updateButtons,
    setCartView: setCartView,
    showMessage: showMessage,
    inCart: function () { return inCart; },
    busy: function () { return busy; },
    setBusy: function (value) { busy = value; }
  };
}
