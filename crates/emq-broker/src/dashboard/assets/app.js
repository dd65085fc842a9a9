// emq dashboard: asks before destructive changes, and keeps the overview
// live (its figures, tables and throughput chart) by polling
// /api/overview once a second. Text from the router is set with
// textContent only, never parsed as HTML.
"use strict";
(function () {
  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  var chart = document.getElementById("chart");
  if (!chart) return;
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = ["#2f6fed", "#12805c", "#b54708", "#7a5af8", "#0e9384", "#c11574", "#475467", "#ca8504"];
  var W = 900, H = 220, TOP = 14, BOTTOM = 18;

  function svg(name, attrs) {
    var el = document.createElementNS(NS, name);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    return el;
  }

  function cell(tr, text, numeric) {
    var td = document.createElement("td");
    if (numeric) td.className = "n";
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function link(td, path, param, value) {
    var a = document.createElement("a");
    a.href = path + "?" + param + "=" + encodeURIComponent(value);
    a.textContent = value;
    td.appendChild(a);
  }

  function fill(id, rows, build) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    var fresh = document.createElement("tbody");
    rows.forEach(function (r) { fresh.appendChild(build(r)); });
    body.replaceWith(fresh);
  }

  function queueRow(q) {
    var tr = document.createElement("tr");
    tr.dataset.queue = q.name;
    link(cell(tr, ""), "/queue", "name", q.name);
    [q.waiting, q.running, q.processed, q.ok, q.failed, q.dead].forEach(function (v) { cell(tr, String(v), true); });
    var state = cell(tr, q.paused ? "PAUSED" : "active");
    if (q.paused) state.className = "paused";
    return tr;
  }

  function jobmanagerRow(j) {
    var tr = document.createElement("tr");
    cell(tr, j.id); cell(tr, j.kind); cell(tr, j.state);
    cell(tr, j.workers, true); cell(tr, j.queued, true); cell(tr, String(j.slots), true);
    cell(tr, String(j.running), true); cell(tr, String(j.processed), true); cell(tr, j.last_seen, true);
    cell(tr, j.queues);
    return tr;
  }

  function draw(c) {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    var legend = document.getElementById("legend");
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    var names = Object.keys(c.queues);
    var max = 1;
    names.forEach(function (n) {
      c.queues[n].ok.concat(c.queues[n].failed).forEach(function (v) { if (v > max) max = v; });
    });
    var points = c.t.length;
    var span = 300;
    function x(i) { return W - (points - 1 - i) * (W / span); }
    function y(v) { return TOP + (H - TOP - BOTTOM) * (1 - v / max); }
    [0, 0.5, 1].forEach(function (f) {
      chart.appendChild(svg("line", { x1: 0, x2: W, y1: y(max * f), y2: y(max * f), "class": "grid" }));
      var label = svg("text", { x: 4, y: y(max * f) - 3, "class": "axis" });
      label.textContent = (max * f).toFixed(max * f >= 10 ? 0 : 1) + "/s";
      chart.appendChild(label);
    });
    var ends = svg("text", { x: W - 30, y: H - 4, "class": "axis" });
    ends.textContent = "now";
    chart.appendChild(ends);
    var start = svg("text", { x: 4, y: H - 4, "class": "axis" });
    start.textContent = "-5 min";
    chart.appendChild(start);
    names.forEach(function (n, k) {
      var colour = COLOURS[k % COLOURS.length];
      ["ok", "failed"].forEach(function (kind) {
        var values = c.queues[n][kind];
        if (kind === "failed" && !values.some(function (v) { return v > 0; })) return;
        var pts = values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); }).join(" ");
        chart.appendChild(svg("polyline", { points: pts, stroke: colour, "class": kind }));
      });
      var item = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.className = "c" + (k % COLOURS.length);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(n + " (dashed: failed)"));
      legend.appendChild(item);
    });
  }

  function update(o) {
    Object.keys(o.cards).forEach(function (k) {
      var el = document.querySelector('[data-k="' + k + '"]');
      if (el) el.textContent = o.cards[k];
    });
    fill("queues", o.queues, queueRow);
    fill("jobmanagers", o.jobmanagers, jobmanagerRow);
    draw(o.chart);
    document.body.dataset.updated = String(Date.now());
  }

  function refresh() {
    fetch("/api/overview", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(update)
      .catch(function () {})
      .then(function () { setTimeout(refresh, 1000); });
  }
  refresh();
})();
