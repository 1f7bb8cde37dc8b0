// streamlb dashboard: keeps the server-rendered page current. It polls
// the status route for the one page of streams it shows (limit and
// cursor, those needing attention first), follows the journal over
// server-sent events, and reads the load route when placement is on.
// Every value is placed with textContent, never parsed as HTML.
"use strict";
(function () {
  var PAGE = 50, PERIOD = 2000, LOAD_PERIOD = 5000, TIMEOUT = 5000;
  var MAX_EVENTS = 200;
  var STATES = ["present", "missing", "pending", "failing", "conflict", "unknown", "unreplicable"];
  var seq = Number(document.body.dataset.seq || 0);
  var lastOK = null, lastStatus = null;
  var cursor = "", cursors = []; // the page shown, and those before it
  var load = null, loadOn = true; // the load route's answer; false once it said 404
  var es = null, pending = [];

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

  // glob turns what the operator typed into a path.Match pattern: text
  // without glob characters matches anywhere in the name.
  function glob(text) {
    text = text.trim();
    if (!text) return "";
    if (/[*?[\\]/.test(text)) return text;
    return "*" + text + "*";
  }

  // exact is a pattern matching name alone.
  function exact(name) { return name.replace(/[*?[\\]/g, "\\$&"); }

  function getJSON(url) {
    var ctl = new AbortController();
    var t = setTimeout(function () { ctl.abort(); }, TIMEOUT);
    return fetch(url, { cache: "no-store", signal: ctl.signal, headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 404) return null;
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      })
      .finally(function () { clearTimeout(t); });
  }

  function stateLabel(s) {
    if (s === "converged") return ["converged", "ok"];
    if (s === "needs_attention") return ["needs attention", "bad"];
    return ["converging", "warn"];
  }

  function renderSummary(st) {
    var members = st.members || [], sum = st.summary || {}, reps = sum.replicas || {};
    var up = members.filter(function (m) { return m.state === "up"; }).length;
    var desired = 0;
    Object.keys(reps).forEach(function (k) { desired += reps[k]; });
    var l = stateLabel(st.state);
    var pill = $("state");
    pill.textContent = l[0];
    pill.className = "pill " + l[1];
    pill.dataset.state = st.state;
    document.title = "streamlb · " + l[0];
    $("members-up").textContent = up + "/" + members.length;
    $("sources").textContent = sum.streams || 0;
    $("replicas").textContent = (reps.present || 0) + "/" + desired;
    $("attention").textContent = sum.attention || 0;
    $("attention").className = sum.attention ? "alert" : "";
    $("queue-depth").textContent = st.queue_depth;
    var r = st.last_resync;
    $("last-resync").textContent = r ?
      clock(r.at) + " (" + age(r.at) + " ago) · " + Math.round(r.duration_ms) + " ms · " + r.calls + " calls" :
      "not yet";
  }

  function memberLoad(name) {
    if (!load) return null;
    var ms = load.members || [];
    for (var i = 0; i < ms.length; i++) if (ms[i].name === name) return ms[i];
    return null;
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
      var rows = [["address", m.address], ["API", m.api], ["latency", m.latency_ms > 0 ? Number(m.latency_ms).toFixed(1) + " ms" : "—"]];
      var ml = memberLoad(m.name);
      if (ml) rows.push(["viewers", ml.viewers_total + (ml.utilization > 0 ? " · " + Math.round(ml.utilization * 100) + "% used" : "")]);
      rows.forEach(function (kv) { dl.append(el("dt", null, kv[0]), el("dd", null, kv[1])); });
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
      if (r.demand) parts.push("a copy for viewers");
      if (r.reason) parts.push(r.reason);
      if (r.last_error) {
        parts.push("last error: " + r.last_error);
        var w = el("span", "warnmark", "!");
        w.setAttribute("aria-label", "has an error");
        td.append(w);
      }
      if (r.reason) td.append(el("small", "why", r.reason));
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

  function streamViewers() {
    var by = {};
    if (load) (load.streams || []).forEach(function (s) { by[s.name] = s.viewers_total; });
    return by;
  }

  function pageNote(shown, total, more) {
    if (!total) return "No source streams on any member yet.";
    if (!shown) return "No stream matches.";
    if (more) return shown + " streams shown of " + total + ", those needing attention first: the next page has more.";
    return shown + " streams shown of " + total + ", those needing attention first.";
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
    var vh = el("th", "count viewers", "viewers");
    vh.hidden = !load;
    hr.append(vh);
    table.tHead.replaceChildren(hr);

    var viewers = streamViewers();
    var body = document.createElement("tbody");
    streams.forEach(function (s) {
      var keys = Object.keys(s.replicas || {});
      var present = keys.filter(function (k) { return s.replicas[k].state === "present"; }).length;
      var tr = el("tr", present !== keys.length ? "problem" : "");
      var th = el("th", "sname");
      th.scope = "row";
      var a = el("a", "hist", s.name);
      a.href = "api/v1/events?stream=" + encodeURIComponent(exact(s.name));
      a.title = "history of this stream";
      a.dataset.stream = s.name;
      th.append(a);
      tr.append(th);
      members.forEach(function (m) { tr.append(cell(s, m)); });
      tr.append(el("td", "count", present + "/" + keys.length));
      var vc = el("td", "count viewers", load ? (viewers[s.name] || 0) : "");
      vc.hidden = !load;
      tr.append(vc);
      body.append(tr);
    });
    table.replaceChild(body, table.tBodies[0]);
    $("streams-note").textContent = pageNote(streams.length, (st.summary || {}).streams || 0, !!st.next_cursor);
    $("next").disabled = !st.next_cursor;
    $("first").disabled = !cursor;
  }

  function renderConflicts(st) {
    var cs = st.conflicts || [];
    var ul = $("conflicts");
    ul.replaceChildren();
    cs.slice(0, 100).forEach(function (c) {
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

  // Journal entries, as the server writes them (entryLevel, entryText).
  function entryLevel(kind) {
    switch (kind) {
      case "replica_pulled": case "replica_recovered": case "replica_removed": return "action";
      case "replica_failing": case "conflict": case "unreplicable": return "warn";
      case "member_down": case "member_unauthorized": return "error";
    }
    return "info";
  }

  function entryText(e) {
    var s, st = e.stream || "", m = e.member || "";
    switch (e.kind) {
      case "replica_pulled": s = st + " replicated to " + m + (e.origin ? " from " + e.origin : ""); break;
      case "replica_removed": s = "replica of " + st + " removed from " + m; break;
      case "replica_failing": s = "replica of " + st + " failing on " + m; break;
      case "replica_recovered": s = "replica of " + st + " streaming again on " + m; break;
      case "source_appeared": s = "source " + st + " appeared on " + m; break;
      case "source_ended": s = "source " + st + " ended on " + m; break;
      case "member_down": s = m + " is down"; break;
      case "member_up": s = m + " is up"; break;
      case "member_unauthorized": s = m + " refuses the credentials"; break;
      case "conflict": s = st + " left alone on " + m + " (conflict)"; break;
      case "reload": s = "configuration reloaded"; break;
      case "unreplicable": s = st + " cannot be replicated"; break;
      default: s = [e.kind, st, m].join(" ").trim();
    }
    if (e.detail) s += ": " + e.detail;
    return s;
  }

  function eventItem(e) {
    var li = el("li", "ev ev-" + entryLevel(e.kind));
    li.dataset.seq = e.seq;
    var t = el("time", null, clock(e.at));
    t.dateTime = e.at;
    t.title = e.at;
    li.append(t, el("span", "lvl", String(e.kind).replace(/_/g, " ")), el("span", "txt", entryText(e)));
    return li;
  }

  // flushEvents shows the entries received since the last frame, newest
  // on top: a burst of thousands costs one layout.
  function flushEvents() {
    var evs = pending;
    pending = [];
    if (!evs.length) return;
    var ol = $("events");
    var empty = ol.querySelector(".empty");
    if (empty) empty.remove();
    var frag = document.createDocumentFragment();
    for (var i = evs.length - 1; i >= 0 && evs.length - i <= MAX_EVENTS; i--) frag.append(eventItem(evs[i]));
    ol.insertBefore(frag, ol.firstChild);
    while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
    document.body.dataset.seq = String(seq);
  }

  function follow(since) {
    if (es) es.close();
    var q = ["since=" + since];
    var input = $("ev-stream"), s = input.value.trim(), m = $("ev-member").value.trim();
    if (s) q.push("stream=" + encodeURIComponent(s === input.dataset.exact ? exact(s) : glob(s)));
    if (m) q.push("member=" + encodeURIComponent(glob(m)));
    es = new EventSource("api/v1/events/stream?" + q.join("&"));
    es.onmessage = function (msg) {
      var e;
      try { e = JSON.parse(msg.data); } catch (err) { return; }
      seq = e.seq;
      if (!pending.length) requestAnimationFrame(flushEvents);
      pending.push(e);
    };
    es.onopen = function () { document.body.dataset.following = "1"; };
  }

  // refollow shows the journal anew for the filters typed.
  function refollow() {
    pending = [];
    var ol = $("events");
    ol.replaceChildren(el("li", "empty", "Nothing matches yet."));
    follow(0);
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

  function statusURL() {
    var q = ["attention=1", "limit=" + PAGE];
    var f = glob($("filter").value), s = $("state-filter").value;
    if (f) q.push("stream=" + encodeURIComponent(f));
    if (s) q.push("state=" + encodeURIComponent(s));
    if (cursor) q.push("cursor=" + encodeURIComponent(cursor));
    return "api/v1/status?" + q.join("&");
  }

  function render(st) {
    lastStatus = st;
    renderSummary(st);
    renderMembers(st);
    renderMatrix(st);
    renderConflicts(st);
  }

  var timer = null, inflight = 0;
  function tick() {
    clearTimeout(timer);
    var mine = ++inflight;
    getJSON(statusURL())
      .then(function (st) {
        if (mine !== inflight) return; // a newer query was sent
        if (!st) throw new Error("no status route");
        if (cursor && !(st.streams || []).length) { cursor = ""; cursors = []; return tick(); }
        render(st);
        setLive(true);
        document.body.dataset.live = "1";
      })
      .catch(function (err) { if (mine === inflight) setLive(false, err); })
      .finally(function () { if (mine === inflight) timer = setTimeout(tick, PERIOD); });
  }

  function tickLoad() {
    getJSON("api/v1/load")
      .then(function (l) {
        if (l === null) { loadOn = false; load = null; return; }
        load = l;
        var total = 0;
        (l.members || []).forEach(function (m) { total += m.viewers_total || 0; });
        $("viewers-total").textContent = total;
        $("viewers-kv").hidden = false;
        if (lastStatus) { renderMembers(lastStatus); renderMatrix(lastStatus); }
      })
      .catch(function () {})
      .finally(function () { if (loadOn) setTimeout(tickLoad, LOAD_PERIOD); });
  }

  function start() {
    $("tools").hidden = false;
    $("journal-tools").hidden = false;
    document.querySelectorAll("#events time").forEach(function (t) { t.textContent = clock(t.dateTime); });
    var again = function () { cursor = ""; cursors = []; tick(); };
    $("filter").addEventListener("input", again);
    $("state-filter").addEventListener("change", again);
    $("tools").addEventListener("submit", function (ev) { ev.preventDefault(); });
    $("journal-tools").addEventListener("submit", function (ev) { ev.preventDefault(); });
    $("next").addEventListener("click", function () {
      if (!lastStatus || !lastStatus.next_cursor) return;
      cursors.push(cursor);
      cursor = lastStatus.next_cursor;
      tick();
    });
    $("first").addEventListener("click", function () { cursor = ""; cursors = []; tick(); });
    var typing = null;
    var onFilter = function () { clearTimeout(typing); typing = setTimeout(refollow, 300); };
    $("ev-stream").addEventListener("input", function () { delete $("ev-stream").dataset.exact; onFilter(); });
    $("ev-member").addEventListener("input", onFilter);
    $("matrix").addEventListener("click", function (ev) {
      var a = ev.target.closest("a.hist");
      if (!a) return;
      ev.preventDefault();
      var name = a.dataset.stream || a.textContent;
      $("ev-stream").value = name;
      $("ev-stream").dataset.exact = name;
      $("ev-member").value = "";
      refollow();
      $("journal").scrollIntoView();
    });
    follow(seq);
    tick();
    tickLoad();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
