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
