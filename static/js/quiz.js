// The attempt page's countdown. The server keeps the real deadline: this only shows it, and
// hands the attempt in when the time is up (the server would close it anyway).
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function format(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    return (h ? h + ":" + pad(m) : m) + ":" + pad(s);
  }

  function start(box) {
    if (box.dataset.started) { return; }
    box.dataset.started = "1";
    var deadline = Date.parse(box.dataset.deadline);
    var value = box.querySelector("[data-countdown]");
    if (isNaN(deadline) || !value) { return; }
    var announcedMinute = false;
    function tick() {
      var left = deadline - Date.now();
      value.textContent = format(left);
      box.classList.toggle("is-low", left <= 60000);
      if (left <= 60000 && !announcedMinute) {
        announcedMinute = true;
        box.setAttribute("aria-live", "assertive");
      }
      if (left <= 0) {
        clearInterval(timer);
        value.textContent = "Time is up";
        var button = document.querySelector("[data-submit-attempt]");
        if (button && button.form) { button.form.requestSubmit(button); }
      }
    }
    var timer = setInterval(tick, 1000);
    tick();
  }

  function init(root) {
    (root || document).querySelectorAll("[data-deadline]").forEach(start);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
  if (document.readyState !== "loading") { init(document); }
})();
