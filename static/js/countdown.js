// Countdown for a time-limited offer (an exchange quote). The server keeps the real expiry and
// refuses a late accept; this only shows the seconds left and, at zero, swaps the accept button
// for the "new quote" form. Without JavaScript the page shows the plain expiry time instead.
//
// Markup: an element with data-countdown and data-seconds-left="N" (counted from the server's
// clock, so a wrong clock on the device does not matter), holding [data-countdown-value];
// data-expired-text (what the element says once the time is up); inside the same
// [data-countdown-scope]: [data-countdown-live] (hidden at expiry), [data-countdown-expired]
// (shown at expiry) and [data-countdown-badge] (a status badge that then reads "Expired").
(function () {
  "use strict";

  function format(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + " min " + (s < 10 ? "0" : "") + s + " s" : s + " s";
  }

  function start(box) {
    if (box.dataset.started) { return; }
    box.dataset.started = "1";
    var seconds = parseInt(box.dataset.secondsLeft, 10);
    var value = box.querySelector("[data-countdown-value]");
    if (isNaN(seconds) || !value) { return; }
    var deadline = Date.now() + seconds * 1000;
    var scope = box.closest("[data-countdown-scope]") || document;
    box.classList.add("is-counting");
    function expire() {
      box.classList.add("is-expired");
      box.textContent = box.dataset.expiredText || "Expired.";
      box.setAttribute("role", "status");
      if (scope !== document) { scope.classList.add("is-expired"); }
      scope.querySelectorAll("[data-countdown-badge]").forEach(function (el) {
        el.textContent = "Expired";
        el.className = "status status-expired";
      });
      scope.querySelectorAll("[data-countdown-live]").forEach(function (el) {
        el.hidden = true;
        el.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      });
      scope.querySelectorAll("[data-countdown-expired]").forEach(function (el) { el.hidden = false; });
    }
    function tick() {
      var left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(timer);
        expire();
        return;
      }
      value.textContent = format(left);
      box.classList.toggle("is-low", left <= 10);
    }
    var timer = setInterval(tick, 1000);
    tick();
  }

  function init(root) {
    (root || document).querySelectorAll("[data-countdown]").forEach(start);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
  if (document.readyState !== "loading") { init(document); }
})();
