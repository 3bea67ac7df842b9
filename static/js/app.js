// Small progressive enhancements; every page works without this file.
document.addEventListener("htmx:responseError", function (event) {
  // A failed request with nothing to swap: tell the user instead of doing nothing.
  if (!event.detail.xhr.responseText) {
    alert("The request failed (" + event.detail.xhr.status + "). Please try again.");
  }
});
document.addEventListener("htmx:sendError", function () {
  alert("The portal cannot be reached. Check your connection and try again.");
});
// A table too wide for the screen scrolls inside its .table-wrap: while it does, the box is a
// named, focusable region so a keyboard can scroll it too.
function labelTableWraps(root) {
  root.querySelectorAll(".table-wrap").forEach(function (wrap) {
    var scrolls = wrap.scrollWidth > wrap.clientWidth;
    if (!scrolls) {
      if (wrap.dataset.scrollRegion) {
        ["tabindex", "role", "aria-label", "data-scroll-region"].forEach(function (a) { wrap.removeAttribute(a); });
      }
      return;
    }
    if (wrap.dataset.scrollRegion) return;
    var table = wrap.querySelector("table");
    var caption = table && table.querySelector("caption");
    var heading = wrap.closest("section, article, main");
    heading = heading && heading.querySelector("h1, h2, h3");
    var name = (table && table.getAttribute("aria-label")) || (caption && caption.textContent) ||
      (heading && heading.textContent) || "";
    wrap.setAttribute("tabindex", "0");
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", (name.trim() + " table (scrolls sideways)").trim());
    wrap.dataset.scrollRegion = "1";
  });
}
document.addEventListener("htmx:load", function (event) { labelTableWraps(event.detail.elt); });
document.addEventListener("DOMContentLoaded", function () { labelTableWraps(document); });
window.addEventListener("resize", function () { labelTableWraps(document); });
