/* The Add/Remove cart forms: POST /cart with fetch instead of a page load, then show
 * the answer (new count, in-cart view, or a message). Without JavaScript the same
 * forms post normally and the server answers with the page. */

const FALLBACK_MESSAGES = Object.freeze({
  400: 'That request could not be understood. Please reload the page.',
  403: 'Your session has expired. Please reload the page.',
  404: 'That book could not be found.',
  409: 'Sorry, the last copy just went to another shopper.',
  413: 'That request was too large.',
  503: 'The shop is busy right now. Please try again in a moment.'
});

// `apply(snapshot)` takes the count an answer carries; `setInstance` the X-Instance.
export function bindCart(root, skus, view, apply, setInstance) {
  async function submit(form, button) {
    const field = function (n) { const el = form.elements.namedItem(n); return el ? el.value : ''; };
    const action = field('action');
    const sessionEl = document.getElementById('session');
    const body = new URLSearchParams();
    body.set('session', field('session') || (sessionEl ? sessionEl.value : ''));
    body.set('action', action);
    body.set('sku', field('sku') || skus[0] || '');

    view.setBusy(true);
    if (button) button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const res = await fetch(form.getAttribute('action') || '/cart', {
        method: 'POST',
        headers: { 'Accept': 'application/json' },
        body: body,
        credentials: 'same-origin',
        cache: 'no-store'
      });
      setInstance(res.headers.get('X-Instance'));
      let data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      if (res.ok && data && !data.error) {
        apply(data);
        const holding = typeof data.inCart === 'boolean' ? data.inCart : action === 'add';
        switchView(holding);
      } else {
        // a refusal (409: the last copy went) carries the current count: show it
        if (data && data.sku && data.version != null) apply(data);
        const text = (data && typeof data.message === 'string' && data.message) ||
          FALLBACK_MESSAGES[res.status] || ('Something went wrong (' + res.status + '). Please try again.');
        view.showMessage(text, 'error');
      }
    } catch (e) {
      view.showMessage('Could not reach the shop. Please check your connection and try again.', 'error');
    } finally {
      view.setBusy(false);
      form.removeAttribute('aria-busy');
      if (button) button.disabled = false;
      view.updateButtons();
    }
  }

  // The clicked button is about to be hidden: move focus to the one that replaces it.
  function switchView(holding) {
    view.showMessage('');
    view.setBusy(false);
    view.setCartView(holding);
    const next = holding ? view.removeBtn : view.addBtn;
    if (next && !next.disabled) next.focus();
  }

  root.addEventListener('submit', function (ev) {
    const form = ev.target;
    if (!form.classList || !form.classList.contains('cart-form')) return;
    ev.preventDefault();
    if (view.busy()) return;
    const button = ev.submitter || form.querySelector('button[type="submit"]');
    submit(form, button);
  });
}
