// Live worklist: poll the JSON API; when its version changes, swap in the server-rendered rows.
(function () {
  "use strict";
  var body = document.getElementById("worklist-body");
  var refreshMs = Math.max(1, Number(document.body.dataset.refresh || 5)) * 1000;

  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) {
      var m = Math.floor(seconds % 3600 / 60);
      return Math.floor(seconds / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
    }
    return Math.floor(seconds / 86400) + " d " + Math.floor(seconds % 86400 / 3600) + " h";
  }

  function updateAges() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-arrived]").forEach(function (el) {
      el.textContent = age(now - Number(el.dataset.arrived));
    });
  }

  if (!body) return;
  var all = body.dataset.all === "1";
  var status = document.getElementById("live-status");

  function poll() {
    fetch("/api/worklist" + (all ? "?include_dismissed=1" : ""),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login?next=/"; throw new Error("logged out"); }
        return r.json();
      })
      .then(function (data) {
        if (data.version === body.dataset.version) return null;
        return fetch("/fragments/worklist" + (all ? "?all=1" : ""), {credentials: "same-origin"})
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (html === null) return;
            body.innerHTML = html;
            body.dataset.version = data.version;
            updateAges();
          });
      })
      .then(function () { if (status) { status.textContent = "live"; status.className = "live"; } },
            function () { if (status) { status.textContent = "offline"; status.className = "live offline"; } })
      .then(function () { window.setTimeout(poll, refreshMs); });
  }

  updateAges();
  window.setInterval(updateAges, 10000);
  window.setTimeout(poll, refreshMs);
})();
