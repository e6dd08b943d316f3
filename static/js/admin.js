// /admin/cluster: re-read /admin/cluster.json every 2 s and redraw both tables.
(function () {
  "use strict";

  function row(cells, state) {
    var tr = document.createElement("tr");
    if (state) tr.dataset.state = state;
    cells.forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value === undefined || value === null ? "" : String(value);
      tr.appendChild(td);
    });
    return tr;
  }

  function redraw(data) {
    document.getElementById("instances").replaceChildren.apply(
      document.getElementById("instances"),
      data.instances.map(function (i) {
        return row([i.id, i.state, i.websockets, i.longpolls, i.inFlight, i.resyncs, i.pid,
                    i.redisPrimary, i.lastBeatAgoS + " s ago"], i.state);
      }));
    document.getElementById("books").replaceChildren.apply(
      document.getElementById("books"),
      data.books.map(function (b) { return row([b.sku, b.stock, b.holds, b.count, b.version]); }));
    var redis = data.redis || {replicas: []};
    document.getElementById("redis-summary").textContent =
      data.redis ? redis.mode + ": primary " + redis.primary : "";
    document.getElementById("replicas").replaceChildren.apply(
      document.getElementById("replicas"),
      redis.replicas.map(function (r) {
        return row([r.address, r.state, r.lag_s + " s", r.behind_bytes]);
      }));
    document.getElementById("admin-status").textContent =
      "answered by " + data.answeredBy + " at " + new Date().toLocaleTimeString();
  }

  function refresh() {
    // the sign-in cookie (HttpOnly, SameSite=Strict) goes along: same origin
    fetch("/admin/cluster.json", {cache: "no-store", credentials: "same-origin"})
      .then(function (reply) {
        if (!reply.ok) throw new Error("HTTP " + reply.status);
        return reply.json();
      })
      .then(redraw)
      .catch(function (error) {
        document.getElementById("admin-status").textContent = "cannot refresh: " + error.message;
      })
      .finally(function () { setTimeout(refresh, 2000); });
  }
  setTimeout(refresh, 2000);
})();
