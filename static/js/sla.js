/* SLA dashboards: draw the server-built Plotly figures, and redraw them after each HTMX refresh. */
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("sla-figures");
    if (!source || typeof Plotly === "undefined") { return; }
    var figures = JSON.parse(source.textContent);
    Object.keys(figures).forEach(function (id) {
      var target = document.getElementById(id);
      if (!target) { return; }
      var fig = figures[id];
      Plotly.react(target, fig.data || [], fig.layout || {}, { displayModeBar: false, responsive: true });
    });
    document.body.dataset.slaDrawn = String(Date.now());
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "sla-live") { draw(); }
  });
})();
