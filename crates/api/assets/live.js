// Slipway dashboard: live log tails (docs/dashboard.md, "Live log").
//
// For every <pre class="log" data-stream="…"> of a job that has not ended, open the
// same-origin Server-Sent Events stream and append one <span class="log-line"> per line. The
// server sends each line already split into ANSI segments ({class, text}); they are written
// with createElement/textContent only, so a log line can never become markup. A `progress`
// event updates the build's .build-progress element; the `end` event carries the job's final
// state for its [data-job-state] elements and closes the stream. Pages work without this.
"use strict";
(function () {
  // Open streams by their <pre>, closed when the <pre> leaves the page (htmx navigation).
  var open = [];

  function elapsedText(secs) {
    var s = Math.max(0, Math.floor(secs));
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + two(s % 60) + "s";
    return Math.floor(s / 3600) + "h " + two(Math.floor((s % 3600) / 60)) + "m";
  }

  function forJob(attr, id) {
    var out = [];
    var all = document.querySelectorAll("[" + attr + "]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute(attr) === id) out.push(all[i]);
    }
    return out;
  }

  function lineElement(data) {
    var line = document.createElement("span");
    line.className = "log-line stream-" + String(data.stream || "stdout").replace(/[^a-z]/g, "");
    line.setAttribute("data-ts", String(data.ts || ""));
    var segs = data.segments || [];
    for (var i = 0; i < segs.length; i++) {
      var text = String(segs[i].text || "");
      var cls = String(segs[i].class || "");
      if (cls === "") {
        line.appendChild(document.createTextNode(text));
      } else {
        var seg = document.createElement("span");
        seg.className = cls;
        seg.textContent = text;
        line.appendChild(seg);
      }
    }
    return line;
  }

  function showProgress(id, p) {
    var els = forJob("data-progress-for", id);
    for (var i = 0; i < els.length; i++) {
      var step = els[i].querySelector(".progress-step");
      var name = els[i].querySelector(".progress-name");
      if (step) step.textContent = p ? "step " + p.step + " of " + p.steps : "waiting for the first step";
      if (name) name.textContent = p ? String(p.name || "") : "";
    }
  }

  function showEnd(id, state) {
    var els = forJob("data-job-state", id);
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = state;
      var classes = Array.prototype.slice.call(els[i].classList);
      for (var k = 0; k < classes.length; k++) {
        if (classes[k].indexOf("status-") === 0) els[i].classList.remove(classes[k]);
      }
      els[i].classList.add("status-" + state.replace(/[^a-z]/g, ""));
    }
    var prog = forJob("data-progress-for", id);
    for (var j = 0; j < prog.length; j++) prog[j].hidden = true;
  }

  function follow(pre) {
    if (pre.hasAttribute("data-ended") || pre.hasAttribute("data-following")) return;
    var url = pre.getAttribute("data-stream");
    var id = pre.getAttribute("data-job");
    if (!url || !id) return;
    pre.setAttribute("data-following", "");
    var source = new EventSource(url);
    open.push({ pre: pre, source: source });
    function gone() {
      if (!pre.isConnected) { source.close(); return true; }
      return false;
    }
    source.onmessage = function (ev) {
      if (gone()) return;
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      var pinned = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(lineElement(data));
      pre.appendChild(document.createTextNode("\n"));
      var empty = forJob("data-empty-for", id);
      for (var i = 0; i < empty.length; i++) empty[i].remove();
      if (pinned) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("progress", function (ev) {
      if (gone()) return;
      try { showProgress(id, JSON.parse(ev.data)); } catch (e) { /* ignored */ }
    });
    source.addEventListener("end", function (ev) {
      source.close();
      pre.setAttribute("data-ended", "");
      var state = "";
      try { state = String(JSON.parse(ev.data).state || ""); } catch (e) { /* ignored */ }
      if (state) showEnd(id, state);
    });
  }

  function tick() {
    open = open.filter(function (o) {
      if (o.pre.isConnected) return true;
      o.source.close();
      return false;
    });
    var els = document.querySelectorAll(".build-progress:not([hidden]) .progress-elapsed[data-since]");
    for (var i = 0; i < els.length; i++) {
      var since = Date.parse(els[i].getAttribute("data-since"));
      if (!isNaN(since)) els[i].textContent = elapsedText((Date.now() - since) / 1000);
    }
  }

  function scan(root) {
    var pres = (root || document).querySelectorAll("pre.log[data-stream]");
    for (var i = 0; i < pres.length; i++) follow(pres[i]);
  }

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  // Pages swapped in by htmx (boosted navigation) are scanned too.
  document.addEventListener("htmx:load", function (ev) { scan(ev.target); });
  setInterval(tick, 1000);
})();
