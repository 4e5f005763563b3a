// The control room's behaviour: Plotly figures from {% json_data %} elements, range sliders kept in
// step with their number inputs, and the policy editor's what-if read from the latest
// backtest as the threshold, level and ramp change. No inline code: everything starts here,
// on page load and on every piece of content htmx swaps in.
(function () {
  "use strict";

  function readJson(id) {
    var element = document.getElementById(id);
    if (!element) return null;
    try {
      return JSON.parse(element.dataset.json);
    } catch (error) {
      return null;
    }
  }

  function percent(value, digits) {
    if (value === null || value === undefined || isNaN(value)) return "—";
    return (value * 100).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  // --- figures -----------------------------------------------------------------------------

  function drawFigures(root) {
    if (typeof window.Plotly === "undefined") return;
    root.querySelectorAll("[data-figure]").forEach(function (box) {
      var figure = readJson(box.dataset.figure);
      if (!figure) return;
      window.Plotly.react(box, figure.data, figure.layout, {
        responsive: true,
        displaylogo: false,
        modeBarButtonsToRemove: ["lasso2d", "select2d"],
      });
      box.dataset.drawn = "true";
    });
  }

  // --- sliders -----------------------------------------------------------------------------

  function syncSliders(root) {
    root.querySelectorAll("input[type=range][data-sync]").forEach(function (range) {
      var number = document.getElementById(range.dataset.sync);
      if (!number || range.dataset.bound) return;
      range.dataset.bound = "true";
      range.addEventListener("input", function () {
        number.value = range.value;
        number.dispatchEvent(new Event("input", { bubbles: true }));
      });
      number.addEventListener("input", function () {
        if (number.value !== "") range.value = number.value;
      });
    });
  }

  // --- what-if -----------------------------------------------------------------------------

  var LEVEL_NAMES = {
    human_only: "human only",
    shadow: "shadow",
    assisted: "assisted",
    partial: "partial",
    full: "full",
  };

  // The same words as the ``rate_interval`` template tag: a 95% Wilson interval, or "too few
  // items" under 30 (reviewapp.core.templatetags.evidence).
  function evidence(successes, n) {
    if (!n) return "";
    if (n < 30) return "too few items (n=" + n + ")";
    var z = 1.959963984540054, p = successes / n, z2 = z * z;
    var centre = (p + z2 / (2 * n)) / (1 + z2 / n);
    var half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
    return "(" + (Math.max(0, centre - half) * 100).toFixed(1) + "–" +
      percent(Math.min(1, centre + half)) + ", n=" + n + ")";
  }

  function nearest(thresholds, value) {
    var best = 0;
    for (var i = 1; i < thresholds.length; i++) {
      if (Math.abs(thresholds[i] - value) < Math.abs(thresholds[best] - value)) best = i;
    }
    return best;
  }

  function updateWhatIf(form, box, curve) {
    var threshold = parseFloat(form.elements.confidence_threshold.value);
    var traffic = parseFloat(form.elements.traffic_percent.value);
    var checked = form.querySelector("input[name=level]:checked");
    var level = checked ? checked.value : "";
    if (isNaN(threshold)) return;
    var i = nearest(curve.thresholds, threshold);
    var automated = curve.automation_rate[i];
    var errorRate = curve.error_rate[i];
    box.querySelector("[data-whatif-threshold]").textContent = curve.thresholds[i].toFixed(2);
    updateWhatIfCost(box, curve.cost, i, curve.thresholds[i]);
    box.querySelector("[data-whatif-automated]").textContent = percent(automated);
    box.querySelector("[data-whatif-error]").textContent = percent(errorRate);
    var errorEvidence = box.querySelector("[data-whatif-error-evidence]");
    if (errorEvidence && curve.automated) {
      errorEvidence.textContent = evidence(curve.errors[i], curve.automated[i]);
    }
    var ramp = isNaN(traffic) ? 1 : Math.max(0, Math.min(100, traffic)) / 100;
    var line = box.querySelector("[data-whatif-level]");
    if (level === "partial") {
      line.textContent =
        "With partial on a " + (ramp * 100).toFixed(0) + "% ramp: about " +
        percent(automated * ramp) + " of all items decided by the model alone, " +
        percent(errorRate) + " of them wrong.";
    } else if (level === "full") {
      line.textContent =
        "With full, the threshold is not used: every usable answer in the " +
        (ramp * 100).toFixed(0) + "% ramp is automated (about " +
        percent(curve.automation_rate[0] * ramp) + " of items), " +
        percent(curve.error_rate[0]) + " of them wrong.";
    } else {
      line.textContent =
        "At " + (LEVEL_NAMES[level] || level) +
        " the model decides nothing alone; these figures are what partial would do.";
    }
  }

  function whole(value) {
    return Math.round(value).toLocaleString("en");
  }

  // Each threshold's daily cost, as the server priced it at the current ramp (control.costs).
  function updateWhatIfCost(box, cost, i, threshold) {
    var line = box.querySelector("[data-whatif-cost]");
    if (!line || !cost) return;
    var text = "Expected cost at " + threshold.toFixed(2) + ": " + whole(cost.total[i]) +
      " a day (errors " + whole(cost.errors[i]) + ", reviews " + whole(cost.reviews[i]) + "), " +
      whole(cost.human[i]) + " reviews a day";
    if (cost.capacity !== null && cost.capacity !== undefined) {
      text += cost.human[i] > cost.capacity
        ? ", more than the team's " + whole(cost.capacity)
        : " of the team's " + whole(cost.capacity);
    }
    line.textContent = text + ".";
  }

  function bindWhatIf(root) {
    root.querySelectorAll("form[data-whatif-form]").forEach(function (form) {
      var box = form.querySelector("[data-whatif]");
      if (!box) return;
      var curve = readJson(box.dataset.whatif);
      if (!curve || !box.querySelector("[data-whatif-level]")) return;
      var update = function () {
        updateWhatIf(form, box, curve);
      };
      form.addEventListener("input", update);
      form.addEventListener("change", update);
      update();
    });
  }

  // --- ramp plan confirmation ---------------------------------------------------------------

  // What starting the plan does, in numbers, from the steps typed in the form.
  function rampEffect(dialog) {
    var form = document.getElementById("ramp-start-form");
    var effect = dialog.querySelector("[data-ramp-effect]");
    if (!form || !effect) return;
    var steps = (form.querySelector("[name=steps]").value.match(/[\d.]+/g) || []).map(Number);
    if (!steps.length) return;
    var now = Number(dialog.dataset.rampTraffic);
    var verb = steps[0] < now ? "drops" : steps[0] > now ? "rises" : "stays";
    var text = "Traffic on the model " + verb + " from " + now + "% to " + steps[0] + "% now";
    if (steps.length > 1) {
      var items = form.querySelector("[name=items]").value;
      var hours = form.querySelector("[name=hours]").value;
      var after = [];
      if (items) after.push(Number(items).toLocaleString("en") + " reviewed items");
      if (hours) after.push(hours + " h");
      text += ", then " + steps.slice(1).join("% → ") + "%, one step after each " +
        (after.join(" and ") || "step") + ", while every guardrail holds";
    }
    effect.textContent = text + ".";
  }

  document.addEventListener("confirm:open", function (event) {
    if (event.target.id === "confirm-ramp-start") rampEffect(event.target);
  });

  function init(root) {
    syncSliders(root);
    bindWhatIf(root);
    drawFigures(root);
  }

  // htmx.onLoad runs for the document and again for every swapped-in fragment.
  if (window.htmx) {
    window.htmx.onLoad(init);
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      init(document);
    });
  }
})();
