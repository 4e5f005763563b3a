// The review queue: keyboard shortcuts, time spent per item, focus and announcements after each
// swap, and clear messages when the network fails. Without this file every action still works
// (plain forms and redirects); with it the queue is keyboard-first and never reloads the page.
(function () {
  "use strict";
  if (!document.getElementById("queue")) return;

  var currentTask = null;
  var shownAt = 0;
  var hiddenSince = null;
  var hiddenTotal = 0;
  var leaseTimer = null;
  var escalating = false;
  var focusWasInTask = true;
  // False from the moment htmx starts swapping a new item in until it has wired it up: a key
  // pressed in between would otherwise submit the bare form and reload the page.
  var ready = true;
  var root = document.getElementById("queue");
  function setReady(value) {
    ready = value;
    root.setAttribute("aria-busy", value ? "false" : "true");
  }

  function form() { return document.getElementById("decide-form"); }
  function byId(id) { return document.getElementById(id); }

  // --- time spent: the time the item was on screen while the tab was visible ---------------
  function startClock() {
    shownAt = performance.now();
    hiddenTotal = 0;
    hiddenSince = document.hidden ? shownAt : null;
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      hiddenSince = performance.now();
    } else if (hiddenSince !== null) {
      hiddenTotal += performance.now() - hiddenSince;
      hiddenSince = null;
    }
  });
  function spentMs() {
    var now = performance.now();
    var hidden = hiddenTotal + (hiddenSince !== null ? now - hiddenSince : 0);
    return Math.max(0, Math.round(now - shownAt - hidden));
  }
  function stamp() {
    var f = form();
    if (f && f.elements.time_spent_ms) f.elements.time_spent_ms.value = String(spentMs());
  }

  // --- small helpers --------------------------------------------------------------------------
  function hint(text) {
    var el = byId("mode-hint");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }
  function announce(text) {
    var el = byId("announcer");
    if (!el) return;
    el.textContent = "";
    window.setTimeout(function () { el.textContent = text; }, 60);
  }
  function netStatus(text) {
    var el = byId("net-status");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }
  function press(action) {
    var f = form();
    var button = f && f.querySelector('button[data-action="' + action + '"]');
    if (button && !button.disabled) button.click();
  }
  function toggleHelp(open) {
    var help = byId("shortcuts");
    if (help) help.open = open === undefined ? !help.open : open;
  }
  function isTextEntry(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" &&
      ["radio", "checkbox", "button", "submit", "reset", "hidden"].indexOf(el.type) < 0;
  }
  function suggestedRadio(f) {
    var tag = f.querySelector(".choice .tag");
    var label = tag && tag.closest("label");
    return label ? byId(label.htmlFor) : null;
  }

  function submitDecision(f) {
    if (!f.checkValidity()) {
      var value = f.elements.value;
      if (value && value.focus) {
        value.focus();
        hint("Enter a number first.");
      } else {
        hint("Pick a label first: press the key shown on it.");
      }
      announce(byId("mode-hint").textContent);
      return;
    }
    f.requestSubmit();
  }

  function startEscalation(f) {
    var comment = f.elements.comment;
    if (comment.value.trim()) {
      escalating = false;
      press("escalate");
      return;
    }
    escalating = true;
    comment.focus();
    hint("Say why you escalate, then press Ctrl+Enter. Esc cancels.");
  }

  // --- keyboard -------------------------------------------------------------------------------
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    var t = e.target;
    var f = form();
    if (t.tagName === "TEXTAREA") {
      if (e.key === "Escape") {
        e.preventDefault();
        escalating = false;
        hint("");
        t.blur();
        var title = byId("task-title");
        if (title) title.focus();
      } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && f && f.contains(t) && ready) {
        e.preventDefault();
        if (escalating) startEscalation(f); else submitDecision(f);
      }
      return;
    }
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (!ready) {
      if (e.key.length === 1 || e.key === "Enter") e.preventDefault();
      return;
    }
    var numberField = t.tagName === "INPUT" && t.type === "number";
    if (isTextEntry(t) && !numberField) return;
    if (e.key === "?") { e.preventDefault(); toggleHelp(); return; }
    if (e.key === "Escape") { toggleHelp(false); return; }
    if (!f) return;
    if (e.key === "s") {
      e.preventDefault();
      press("skip");
    } else if (e.key === "c") {
      e.preventDefault();
      escalating = false;
      f.elements.comment.focus();
    } else if (e.key === "e" && !numberField) {
      e.preventDefault();
      startEscalation(f);
    } else if (!numberField && /^[0-9]$/.test(e.key)) {
      var radio = f.querySelector('input[name="label"][data-key="' + e.key + '"]');
      if (radio) {
        e.preventDefault();
        radio.checked = true;
        radio.focus();
        radio.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else if (e.key === "Enter" && !numberField &&
               ["BUTTON", "A", "SUMMARY"].indexOf(t.tagName) < 0) {
      e.preventDefault();
      submitDecision(f);
    }
  });

  document.addEventListener("change", function (e) {
    var f = form();
    if (!f || e.target.name !== "label" || !f.contains(e.target)) return;
    var suggested = suggestedRadio(f);
    hint(suggested && !suggested.checked ? "You are overriding the suggestion." : "");
  });

  // Stamp the time spent before htmx (or the browser) reads the form: capture phase runs first.
  document.addEventListener("submit", stamp, true);
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("#decide-form button");
    if (!button) return;
    var f = form();
    if (button.dataset.action === "escalate" && !f.elements.comment.value.trim()) {
      // The server would refuse an escalation without a reason: ask for it here instead.
      e.preventDefault();
      e.stopPropagation();
      startEscalation(f);
      return;
    }
    stamp();
  }, true);

  // --- after each swap ------------------------------------------------------------------------
  function onTask(swapped) {
    var task = byId("task");
    if (!task) return;
    var id = task.dataset.task || null;
    var changed = id !== currentTask;
    currentTask = id;
    if (changed) {
      startClock();
      escalating = false;
      window.clearTimeout(leaseTimer);
      var seconds = parseInt(task.dataset.leaseSeconds || "0", 10);
      if (id && seconds > 0) {
        leaseTimer = window.setTimeout(function () {
          var note = byId("lease-note");
          if (note) note.hidden = false;
        }, seconds * 1000);
      }
    }
    if (!swapped || !focusWasInTask) return;
    var invalid = task.querySelector('[aria-invalid="true"]');
    var value = byId("value");
    var title = byId("task-title");
    if (invalid) {
      invalid.focus();
    } else if (value && changed) {
      value.focus();
      value.select();
    } else if (title && changed) {
      title.focus();
    }
    if (changed || invalid) {
      var notice = task.querySelector(".notice");
      announce([notice ? notice.textContent : "", title ? title.textContent : ""].join(" ").trim());
    }
  }

  document.body.addEventListener("htmx:beforeRequest", function () { netStatus(""); });
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (!e.detail.shouldSwap) return;
    var task = byId("task");
    var active = document.activeElement;
    focusWasInTask = !active || active === document.body || (task && task.contains(active));
    setReady(false);
  });
  document.body.addEventListener("htmx:afterSettle", function () {
    setReady(true);
    onTask(true);
  });
  ["htmx:sendError", "htmx:timeout", "htmx:responseError", "htmx:swapError"].forEach(function (name) {
    document.body.addEventListener(name, function () { setReady(true); });
  });
  document.body.addEventListener("htmx:sendError", function () {
    netStatus("Could not reach the server: nothing was saved. Check the connection, then press Enter again.");
  });
  document.body.addEventListener("htmx:timeout", function () {
    netStatus("The server is taking too long. Press Enter to send again: a repeat never decides twice.");
  });
  document.body.addEventListener("htmx:responseError", function (e) {
    var status = e.detail.xhr ? e.detail.xhr.status : 0;
    netStatus(status === 403
      ? "The server refused this (403): your session may have ended. Reload the page."
      : "The server failed (" + status + "). Press Enter to try again: a repeat never decides twice.");
  });

  setReady(true);
  onTask(false);
  var value = byId("value");
  if (value) { value.focus(); value.select(); }
})();
