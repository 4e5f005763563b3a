/* Draws the monitoring dashboards: each .plot[data-figure] names the {% json_data %} element
   holding its Plotly figure. Runs on page load and on every panel htmx swaps in. */
(function () {
  "use strict";

  var CONFIG = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"],
  };

  function draw(root) {
    if (!window.Plotly || !root || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll(".plot[data-figure]").forEach(function (element) {
      if (element.dataset.drawn === "1") {
        return;
      }
      var source = document.getElementById(element.dataset.figure);
      if (!source) {
        return;
      }
      var figure = JSON.parse(source.dataset.json);
      element.dataset.drawn = "1";
      window.Plotly.newPlot(element, figure.data, figure.layout, CONFIG);
    });
  }

  // htmx fires htmx:load on every piece of content it swaps in (htmx itself may load
  // deferred, after this file, so listen for the event rather than call htmx.onLoad).
  document.addEventListener("htmx:load", function (event) {
    draw(event.target);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      draw(document);
    });
  } else {
    draw(document);
  }
})();
