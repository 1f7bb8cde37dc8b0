// streamlb dashboard: keeps the server-rendered page current by polling
// the status and events routes every second. Every value is placed with
// textContent, never parsed as HTML.
"use strict";
(function () {
  var MAX_ROWS = 500, MAX_EVENTS = 100, PERIOD = 1000, TIMEOUT = 5000;
  var STATES = ["present", "missing", "pending", "failing", "conflict"];
  var seq = Number(document.body.dataset.seq || 0);
  var lastOK = null;
  var lastStatus = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clock(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d) || d.getFullYear() < 1970) return "—";
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function age(iso) {
    var s = Math.floor((Date.now() - new Date(iso).getTime()) / 1000);
    if (!(s > 0)) return "0s";
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }

  function stateClass(s) { return STATES.indexOf(s) >= 0 ? s : "other"; }

  function getJSON(url) {
    var ctl = new AbortController();
    var t = setTimeout(function () { ctl.abort(); }, TIMEOUT);
    return fetch(url, { cache: "no-store", signal: ctl.signal, headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      })
      .finally(function () { clearTimeout(t); });
  }

  function renderSummary(st) {
    var members = st.members || [], streams = st.streams || [];
    var up = members.filter(function (m) { return m.state === "up"; }).length;
    var desired = 0, present = 0;
    streams.forEach(function (s) {
      Object.keys(s.replicas || {}).forEach(function (k) {
        desired++;
        if (s.replicas[k].state === "present") present++;
      });
    });
    var conv = $("converged");
    conv.textContent = st.converged ? "converged" : "converging";
    conv.className = "pill " + (st.converged ? "ok" : "warn");
    document.title = "streamlb · " + conv.textContent;
    $("members-up").textContent = up + "/" + members.length;
    $("sources").textContent = streams.length;
    $("replicas").textContent = present + "/" + desired;
    $("queue-depth").textContent = st.queue_depth;
    var r = st.last_resync;
    $("last-resync").textContent = r ?
      clock(r.at) + " (" + age(r.at) + " ago) · " + Math.round(r.duration_ms) + " ms · " + r.calls + " calls" :
      "not yet";
  }

  function renderMembers(st) {
    var box = $("members");
    box.replaceChildren();
    (st.members || []).forEach(function (m) {
      var a = el("article", "member m-" + m.state + (m.paused ? " paused" : ""));
      var h = el("header");
      h.append(el("span", "dot"), el("span", "mname", m.name), el("span", "badge state", m.state));
      if (m.paused) h.append(el("span", "badge pause", "paused"));
      var dl = el("dl");
      [["address", m.address], ["API", m.api], ["latency", m.latency_ms > 0 ? Number(m.latency_ms).toFixed(1) + " ms" : "—"]]
        .forEach(function (kv) { dl.append(el("dt", null, kv[0]), el("dd", null, kv[1])); });
      a.append(h, dl);
      if (m.last_error) {
        var p = el("p", "err");
        p.append(el("span", "errlabel", "last error"), document.createTextNode(" " + m.last_error));
        a.append(p);
      }
      box.append(a);
    });
    if (!box.firstChild) box.append(el("p", "empty", "No members configured."));
  }

  function cell(s, m) {
    var r = (s.replicas || {})[m.name];
    var td, title;
    if (m.name === s.origin) {
      td = el("td", "cell origin", "origin");
      title = s.name + " is a source on " + m.name;
    } else if (r) {
      var label = r.state + (r.attempts > 0 ? " (" + r.attempts + ")" : "");
      td = el("td", "cell st-" + stateClass(r.state), label);
      var parts = [r.state + " on " + m.name];
      if (r.since) parts.push("since " + clock(r.since) + " (" + age(r.since) + ")");
      if (r.attempts > 0) parts.push(r.attempts + " attempts");
      if (r.last_error) {
        parts.push("last error: " + r.last_error);
        var w = el("span", "warnmark", "!");
        w.setAttribute("aria-label", "has an error");
        td.append(w);
      }
      title = parts.join(" · ");
    } else {
      td = el("td", "cell none", "—");
      title = "no replica wanted on " + m.name;
    }
    if (m.state !== "up") {
      td.className += " off";
      title += " · " + m.name + " is " + m.state;
    }
    td.title = title;
    return td;
  }

  function renderMatrix(st) {
    var members = st.members || [], streams = st.streams || [];
    var table = $("matrix");
    var hr = el("tr");
    hr.append(el("th", "sname", "stream"));
    members.forEach(function (m) {
      var th = el("th", "col c-" + m.state);
      th.append(el("span", "dot"), document.createTextNode(m.name));
      if (m.paused) th.append(document.createTextNode(" "), el("span", "badge pause", "paused"));
      hr.append(th);
    });
    hr.append(el("th", "count", "present"));
    table.tHead.replaceChildren(hr);

    var q = $("filter").value.trim().toLowerCase();
    var onlyProblems = $("problems").checked;
    var body = document.createElement("tbody");
    var shown = 0, hidden = 0;
    streams.forEach(function (s) {
      var keys = Object.keys(s.replicas || {});
      var present = keys.filter(function (k) { return s.replicas[k].state === "present"; }).length;
      var problem = present !== keys.length;
      if (q && s.name.toLowerCase().indexOf(q) < 0) return;
      if (onlyProblems && !problem) return;
      if (shown >= MAX_ROWS) { hidden++; return; }
      shown++;
      var tr = el("tr", problem ? "problem" : "");
      var th = el("th", "sname", s.name);
      th.scope = "row";
      tr.append(th);
      members.forEach(function (m) { tr.append(cell(s, m)); });
      tr.append(el("td", "count", present + "/" + keys.length));
      body.append(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
    var note = "";
    if (!streams.length) note = "No source streams on any member yet.";
    else if (hidden) note = hidden + " more streams not shown: filter to find them.";
    else if (!shown) note = "No stream matches the filter.";
    $("streams-note").textContent = note;
  }

  function renderConflicts(st) {
    var cs = st.conflicts || [];
    var ul = $("conflicts");
    ul.replaceChildren();
    cs.forEach(function (c) {
      var li = el("li");
      li.append(el("b", null, c.stream), document.createTextNode(" on "), el("b", null, c.member),
        document.createTextNode(" "), el("span", "muted", "(origin " + c.origin + ")"), el("br"),
        el("span", "reason", c.reason));
      ul.append(li);
    });
    if (!cs.length) ul.append(el("li", "empty", "None: streamlb manages every stream name it should."));
    var n = $("conflicts-count");
    n.textContent = cs.length;
    n.className = "count-badge" + (cs.length ? " warn" : "");
  }

  function eventItem(e) {
    var li = el("li", "ev ev-" + e.level);
    var t = el("time", null, clock(e.at));
    t.dateTime = e.at;
    li.append(t, el("span", "lvl", e.level), el("span", "txt", e.text));
    return li;
  }

  function renderEvents(ans) {
    var ol = $("events");
    if (ans.last < seq) { // the daemon restarted: start over
      ol.replaceChildren();
    }
    var evs = ans.events || [];
    if (evs.length) {
      var empty = ol.querySelector(".empty");
      if (empty) empty.remove();
    }
    evs.forEach(function (e) { ol.insertBefore(eventItem(e), ol.firstChild); });
    while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
    seq = ans.last;
    document.body.dataset.seq = String(seq);
  }

  function setLive(ok, err) {
    var live = $("live");
    live.replaceChildren();
    if (ok) {
      lastOK = new Date();
      live.className = "live on";
      live.textContent = "live · updated " + clock(lastOK.toISOString());
      live.title = "";
    } else {
      live.className = "live lost";
      live.textContent = "connection lost" + (lastOK ? " · last update " + clock(lastOK.toISOString()) : "") + " · retrying";
      live.title = String(err);
    }
  }

  function render(st) {
    lastStatus = st;
    renderSummary(st);
    renderMembers(st);
    renderMatrix(st);
    renderConflicts(st);
  }

  function tick() {
    Promise.all([getJSON("api/v1/status"), getJSON("api/v1/events?after=" + seq)])
      .then(function (res) {
        render(res[0]);
        renderEvents(res[1]);
        setLive(true);
        document.body.dataset.live = "1";
      })
      .catch(function (err) { setLive(false, err); })
      .finally(function () { setTimeout(tick, PERIOD); });
  }

  function start() {
    $("tools").hidden = false;
    document.querySelectorAll("#events time").forEach(function (t) { t.textContent = clock(t.dateTime); });
    var again = function () { if (lastStatus) renderMatrix(lastStatus); };
    $("filter").addEventListener("input", again);
    $("problems").addEventListener("change", again);
    tick();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
