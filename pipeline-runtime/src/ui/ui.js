// Live parts of a page: an element with `data-poll` is fetched again from that URL twice a
// second and replaced, until the fresh copy has no `data-poll` (its run or step has ended).
// A log marked `data-follow` stays scrolled to its end.
(function () {
  function follow(root) {
    root.querySelectorAll("[data-follow]").forEach(function (el) { el.scrollTop = el.scrollHeight; });
  }
  function poll(el) {
    setTimeout(function () {
      fetch(el.dataset.poll, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var t = document.createElement("template");
          t.innerHTML = html.trim();
          var fresh = t.content.firstElementChild;
          if (!fresh) { poll(el); return; }
          el.replaceWith(fresh);
          follow(fresh);
          if (fresh.dataset.poll) { poll(fresh); }
        })
        .catch(function () { poll(el); });
    }, 500);
  }
  document.addEventListener("DOMContentLoaded", function () {
    follow(document);
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
