// AOS console: the little the pages need beyond HTML. A running run's page follows its event stream and swaps in
// the server-rendered part that changed; forms that undo work ask first; "/" jumps to the filter.
(function () {
  "use strict";

  function followRun(box) {
    var fragment = box.getAttribute("data-fragment");
    var types = (box.getAttribute("data-event-types") || "").split(" ").filter(Boolean);
    var inFlight = false, again = false, done = false, source = null, pollTimer = null, last = null;

    function refresh() {
      if (inFlight) { again = true; return; }
      inFlight = true;
      fetch(fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (res) {
          if (res.status === 401) { window.location.reload(); }  // the session ended: the page leads to sign-in
          if (!res.ok || res.redirected) { throw new Error(res.status); }
          return res.text();
        })
        .then(function (html) {
          if (html === last) { return; }  // nothing changed: keep the page as the person left it
          last = html;
          var focused = document.activeElement && document.activeElement.id;
          // what a person typed into the live part (a signal's payload) survives the swap
          var typed = {};
          box.querySelectorAll("textarea[id], input[id]:not([type=hidden])").forEach(function (el) {
            if (el.value) { typed[el.id] = el.value; }
          });
          box.innerHTML = html;
          Object.keys(typed).forEach(function (id) {
            var el = document.getElementById(id);
            if (el && !el.value) { el.value = typed[id]; }
          });
          if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        })
        .catch(function () { /* the next event or poll tries again */ })
        .then(function () {
          inFlight = false;
          if (again) { again = false; refresh(); }
        });
    }

    function finish() {
      done = true;
      if (source) { source.close(); }
      if (pollTimer) { clearInterval(pollTimer); }
      box.removeAttribute("data-live-run");
      refresh();
    }

    if (!window.EventSource) { pollTimer = setInterval(refresh, 3000); return; }
    source = new EventSource(box.getAttribute("data-events"));
    types.forEach(function (t) { source.addEventListener(t, refresh); });
    source.onmessage = refresh;
    source.addEventListener("end", finish);
    source.onerror = function () {
      // closed for good (refused, e.g. too many streams): poll instead, slowly, until the run is final
      if (!done && source.readyState === EventSource.CLOSED && !pollTimer) {
        pollTimer = setInterval(function () {
          refresh();
          if (!document.querySelector("[data-live-run] .s-running, [data-live-run] .s-queued, [data-live-run] .s-waiting")) {
            clearInterval(pollTimer);
          }
        }, 3000);
      }
    };
    window.addEventListener("pagehide", function () { if (source) { source.close(); } });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    var target = document.querySelector("[data-shortcut='/']");
    if (target) { ev.preventDefault(); target.focus(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-live-run]");
    if (box) { followRun(box); }
  });
})();
