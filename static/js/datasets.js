// The disagreement explorer's item panel: it opens when htmx fills it, moves focus to the
// item's heading, closes with its Close button or Escape and gives focus back to the row.
(function () {
  "use strict";
  var opener = null;

  function panel() { return document.getElementById("item-panel"); }

  function markOpen(link) {
    document.querySelectorAll(".ds-rows tr.is-open").forEach(function (row) {
      row.classList.remove("is-open");
    });
    if (link && link.closest("tr")) { link.closest("tr").classList.add("is-open"); }
  }

  function close() {
    var element = panel();
    if (!element || element.hidden) { return; }
    element.hidden = true;
    element.innerHTML = "";
    markOpen(null);
    if (opener && document.body.contains(opener)) { opener.focus(); }
    opener = null;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var element = panel();
    if (element && event.detail.target === element) {
      opener = event.detail.elt;
      markOpen(opener);
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var element = panel();
    if (!element || event.detail.target !== element) { return; }
    element.hidden = false;
    var heading = element.querySelector("h2");
    if (heading) { heading.focus(); }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest(".js-close-panel")) { close(); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { close(); }
  });
})();
