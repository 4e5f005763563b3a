// Deliberate changes: a button with data-confirm="<dialog id>" opens that <dialog>, which says
// what will happen in numbers and asks why. Its confirm button stays disabled until a reason is
// typed (the server refuses an empty one too). Delegated from the document, so content htmx
// swaps in works without setup.
(function () {
  "use strict";

  function sync(dialog) {
    var reason = dialog.querySelector("[name=reason]");
    var confirm = dialog.querySelector("[data-confirm-submit]");
    if (reason && confirm) confirm.disabled = reason.value.trim() === "";
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-confirm]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.confirm);
      if (!dialog || typeof dialog.showModal !== "function") return;
      event.preventDefault();
      // A page may fill in figures that depend on its form before the dialog shows.
      dialog.dispatchEvent(new CustomEvent("confirm:open", { bubbles: true, detail: { opener: opener } }));
      sync(dialog);
      dialog.showModal();
      var reason = dialog.querySelector("[name=reason]");
      if (reason) reason.focus();
      return;
    }
    var cancel = event.target.closest("[data-confirm-cancel]");
    if (cancel) {
      event.preventDefault();
      cancel.closest("dialog").close();
    }
  });

  document.addEventListener("input", function (event) {
    var dialog = event.target.closest("dialog.confirm");
    if (dialog) sync(dialog);
  });
})();
