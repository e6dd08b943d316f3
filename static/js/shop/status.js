/* The live-status indicator in the header (#live-status): its text and its
 * data-transport / data-instance attributes, which the CSS and the tests read. */

// The connection states. Each value is what data-transport says in that state.
export const State = Object.freeze({
  NONE: 'none',
  CONNECTING: 'connecting',
  WEBSOCKET: 'websocket',
  LONGPOLL: 'longpoll',
  RECONNECTING: 'reconnecting',
  OFFLINE: 'offline'
});

const LABELS = Object.freeze({
  [State.NONE]: 'live updates off',
  [State.CONNECTING]: 'connecting…',
  [State.WEBSOCKET]: 'live: WebSocket',
  [State.LONGPOLL]: 'live: long-poll',
  [State.RECONNECTING]: 'reconnecting…',
  [State.OFFLINE]: 'offline'
});

// Only a working transport names the instance it goes through.
function isLive(state) {
  return state === State.WEBSOCKET || state === State.LONGPOLL;
}

// `el` may be missing (a page without the header): then nothing is drawn, but the
// state and the instance are still tracked.
export function createStatus(el) {
  let shown = State.NONE;
  let instance = el ? (el.getAttribute('data-instance') || '') : '';

  function render() {
    if (!el) return;
    let text = LABELS[shown] || shown;
    if (instance && isLive(shown)) text += ' · via ' + instance;
    el.textContent = text;
    el.setAttribute('data-transport', shown);
    el.setAttribute('data-instance', instance);
  }

  // Called by the connection's single transition point only.
  function show(state) {
    if (shown === state) return;
    shown = state;
    render();
  }

  // From snapshots and X-Instance headers: the instance that answered last.
  function setInstance(name) {
    if (typeof name !== 'string' || !name || name === instance) return;
    instance = name;
    render();
  }

  return {
    render: render,
    show: show,
    setInstance: setInstance,
    instance: function () { return instance; }
  };
}
