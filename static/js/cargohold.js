// Every page: marks a polled region's own polls (jobs/polling.py) with X-Cargohold-Poll, so the
// server knows a poll from a button pressed inside the region: a poll never takes the flash
// messages meant for another page (templates/_messages.html).
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.matches && elt.matches("[data-poll-region][hx-get]") && event.detail.verb === "get") {
      event.detail.headers["X-Cargohold-Poll"] = "1";
    }
  });
})();

// The navigation folds behind the Menu button on narrow screens (CSS decides when the button shows).
(function () {
  "use strict";
  function setUp() {
    var bar = document.querySelector(".topbar");
    var toggle = bar && bar.querySelector(".menu-toggle");
    if (!toggle) return;
    bar.classList.add("has-menu");
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = bar.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();
