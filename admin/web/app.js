// Meshward dashboard: one page, plain JavaScript, no dependencies. It
// calls the node's admin API (/v1/...) with the session cookie, and sends
// the session's CSRF token on every change. Every value from the API is
// put in the page as text, never as markup.
"use strict";

const state = { session: null, stream: null, live: [], page: "" };
const LIVE_MAX = 200;

// ---- helpers --------------------------------------------------------------

function $(id) { return document.getElementById(id); }

// el builds an element: attrs (class, href, data-*, type, ...) and
// children (strings become text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map(h => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function short(id) { return id && id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : (id || ""); }
function when(t) {
  if (!t || t.startsWith("0001-")) return "";
  const d = new Date(t);
  return isNaN(d) ? t : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function secs(s) {
  if (s === undefined || s === null) return "";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function yes(b, good = true) { return el("span", { class: b === good ? "ok" : "bad" }, b ? "yes" : "no"); }
function indLink(value) { return el("a", { href: "#/indicator/" + encodeURIComponent(value), class: "mono" }, value); }
function can(role) {
  const rank = { viewer: 1, responder: 2, admin: 3 };
  return state.session && rank[state.session.role] >= rank[role];
}

class APIError extends Error {
  constructor(status, body) { super((body && body.error) || ("HTTP " + status)); this.status = status; }
}

// api calls the admin API; changes carry the CSRF token.
async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state.session ? state.session.csrf_token : "";
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (r.status === 401 && !path.startsWith("/ui/")) { signedOut(); }
  if (!r.ok) throw new APIError(r.status, data);
  return data;
}

function setPage(...children) {
  const p = $("page");
  p.replaceChildren(...children);
}

function errorBox(err) { return el("p", { class: "error" }, String(err.message || err)); }

function status(msg) { $("status-line").textContent = msg; }

// ---- session ----------------------------------------------------------------

async function loadSession() {
  try {
    const r = await fetch("/ui/session", { credentials: "same-origin" });
    if (!r.ok) return null;
    return await r.json();
  } catch (e) { return null; }
}

function signedOut() {
  state.session = null;
  if (state.stream) { state.stream.close(); state.stream = null; }
  for (const id of ["nav", "search", "who", "logout"]) $(id).classList.add("hidden");
  $("page").replaceChildren();
  $("login").classList.remove("hidden");
}

function signedIn(s) {
  state.session = s;
  $("login").classList.add("hidden");
  for (const id of ["nav", "search", "who", "logout"]) $(id).classList.remove("hidden");
  $("who").textContent = s.name + " (" + s.role + ")";
  document.body.dataset.role = s.role;
  for (const a of document.querySelectorAll("nav a[data-role]")) {
    a.classList.toggle("hidden", !can(a.dataset.role));
  }
  startStream();
  route();
}

async function login(ev) {
  ev.preventDefault();
  const body = new URLSearchParams({ token: $("login-token").value.trim() });
  $("login-error").classList.add("hidden");
  const r = await fetch("/ui/login", { method: "POST", credentials: "same-origin", body });
  $("login-token").value = "";
  if (!r.ok) {
    $("login-error").textContent = r.status === 401 ? "That token is not valid on this node." : "Sign-in failed (HTTP " + r.status + ").";
    $("login-error").classList.remove("hidden");
    return;
  }
  signedIn(await r.json());
}

async function logout() {
  try { await api("POST", "/ui/logout"); } catch (e) { /* signed out either way */ }
  location.hash = "";
  signedOut();
}

// ---- live events -------------------------------------------------------------

function startStream() {
  if (state.stream) return;
  const es = new EventSource("/v1/events/stream");
  state.stream = es;
  es.onopen = () => { document.body.dataset.live = "on"; status("live events: connected"); };
  es.onerror = () => { document.body.dataset.live = "off"; status("live events: reconnecting…"); };
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch (x) { return; }
    state.live.unshift(e);
    if (state.live.length > LIVE_MAX) state.live.length = LIVE_MAX;
    if (state.page === "live") renderLiveList();
    if (state.page === "triage" && e.kind === "detection") pageTriage();
  };
  es.addEventListener("end", () => { es.close(); state.stream = null; setTimeout(() => state.session && startStream(), 3000); });
}

function liveRow(e) {
  return el("tr", { class: "live-event", "data-kind": e.kind, "data-detection": e.detection_id || "" },
    el("td", { class: "mono" }, when(e.time)),
    el("td", {}, el("span", { class: "pill " + e.kind }, e.kind.replace("_", " "))),
    el("td", {}, e.indicator && e.indicator.value ? indLink(e.indicator.value) : ""),
    el("td", {}, e.detector || e.policy_id || ""),
    el("td", {}, e.technique || e.action || ""),
    el("td", { class: "mono", title: e.origin || e.node }, short(e.origin || e.node)),
    el("td", {}, e.count || e.backend || ""));
}

function renderLiveList() {
  const tb = document.querySelector("#live-table tbody");
  if (!tb) return;
  tb.replaceChildren(...state.live.map(liveRow));
  $("live-count").textContent = String(state.live.length);
}

// ---- pages ---------------------------------------------------------------------

async function pageOverview() {
  const [st, members, peers] = await Promise.all([api("GET", "/v1/status"), api("GET", "/v1/members"), api("GET", "/v1/peers")]);
  const n = st.node, m = st.mesh, h = st.health;
  const card = (k, v, cls) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v " + (cls || "") }, v));
  const rows = members.map(x => el("tr", { class: "member" },
    el("td", { class: "mono", title: x.id }, short(x.id)),
    el("td", {}, x.site || ""),
    el("td", {}, x.kind || (x.voter ? "server" : "standby")),
    el("td", {}, x.leader ? el("span", { class: "ok" }, "leader") : ""),
    el("td", {}, x.id === n.id ? el("span", { class: "muted" }, "this node") : yes(x.connected)),
    el("td", {}, x.trust === undefined ? "" : String(x.trust)),
    el("td", {}, when(x.admitted_at)),
    el("td", { class: "mono" }, (x.addrs || []).slice(0, 2).join(" "))));
  const page = [
    el("h1", {}, "Mesh overview"),
    el("div", { class: "cards" },
      card("this node", (n.site || "") + " " + short(n.id)),
      card("health", h.ok ? "ok" : "problems", h.ok ? "ok" : "bad"),
      card("members", String(members.length), ""),
      card("connected peers", String(m.peers)),
      card("leader", short(m.leader) || "none", m.leader ? "" : "bad"),
      card("raft", m.raft_state + " · term " + m.term),
      card("commit / applied", m.commit_index + " / " + m.applied_index),
      card("mesh policies", String(m.policies)),
      el("div", { class: "card" }, el("div", { class: "k" }, "version"), el("div", { class: "v", id: "version-tile" }, n.version || "…"))),
    h.problems && h.problems.length ? el("div", { class: "note" }, "Problems: " + h.problems.join("; ")) : "",
    el("h2", {}, "Members (" + members.length + ")"),
    table(["node", "site", "kind", "leader", "connected", "trust", "admitted", "addresses"], rows, "members"),
    el("h2", {}, "Mesh-wide health and versions"),
    el("div", { id: "health" }, el("p", { class: "muted" }, "asking every member…")),
    el("h2", {}, "Connected peers (" + peers.length + ")"),
    table(["peer", "site", "member", "addresses"], peers.map(p => el("tr", {},
      el("td", { class: "mono", title: p.id }, short(p.id)), el("td", {}, p.site || ""), el("td", {}, yes(p.member)),
      el("td", { class: "mono" }, (p.addrs || []).slice(0, 2).join(" ")))))];
  setPage(...page);
  try {
    const q = await api("GET", "/v1/query?kind=health&timeout=5s");
    $("health").replaceChildren(table(["node", "site", "status", "version", "uptime", "peers", "leader", "mesh policies", "load", "ms"],
      q.results.map(r => {
        const a = r.answer || {};
        // A node older than the version field answers none.
        const v = a.version || (r.status === "answered" ? "unknown" : "");
        return el("tr", { class: "health-member" }, el("td", { class: "mono", title: r.node }, short(r.node)), el("td", {}, r.site || a.site || ""),
          el("td", { class: r.status === "answered" ? "ok" : "bad" }, r.status + (r.error ? ": " + r.error : "")),
          el("td", { class: "version mono" }, v),
          el("td", {}, secs(a.uptime_seconds)), el("td", {}, a.peers ?? ""), el("td", { class: "mono" }, short(a.leader)),
          el("td", {}, a.mesh_policies ?? ""), el("td", {}, a.load_average !== undefined ? a.load_average.toFixed(2) : ""),
          el("td", {}, r.ms !== undefined ? r.ms.toFixed(1) : ""));
      })));
    versionTile(n, q.results);
  } catch (e) { $("health").replaceChildren(errorBox(e)); versionTile(n, []); }
}

// versionTile shows this node's version, and how many versions the
// members run when they differ.
function versionTile(n, results) {
  const tile = $("version-tile");
  if (!tile) return;
  const mine = results.find(r => r.node === n.id);
  const own = n.version || (mine && mine.answer && mine.answer.version) || "unknown";
  const all = new Set(results.map(r => (r.answer || {}).version).filter(Boolean));
  tile.textContent = all.size > 1 ? own + " (" + all.size + " versions in the mesh)" : own;
  tile.className = "v" + (all.size > 1 ? " warn" : "");
}

async function pageLive() {
  setPage(el("h1", {}, "Live activity"),
    el("p", { class: "muted" }, el("span", { class: "live-dot" + (state.stream ? " on" : "") }),
      "Detections of this node, sightings received from the others and policy changes, as they happen. Events: ",
      el("span", { id: "live-count" }, String(state.live.length))),
    table(["time", "kind", "indicator", "detector / policy", "technique / action", "origin", "count / backend"], [], "live-table"));
  renderLiveList();
}

function triageActions(d) {
  if (!can("responder")) return el("td", { class: "muted" }, "read only");
  const assignIn = el("input", { class: "assign-input", placeholder: "assignee" });
  const commentIn = el("input", { class: "comment-input", placeholder: "comment" });
  const act = (fn) => async (ev) => {
    ev.target.disabled = true;
    try { await fn(); await pageTriage(); } catch (e) { status("failed: " + e.message); ev.target.disabled = false; }
  };
  return el("td", {}, el("div", { class: "actions" },
    d.acknowledged ? "" : el("button", { class: "ack", "data-id": d.id, onclick: act(() => api("POST", "/v1/detections/" + d.id + "/ack", { note: "acknowledged in the dashboard" })) }, "Acknowledge"),
    assignIn, el("button", { class: "assign secondary", onclick: act(() => api("POST", "/v1/detections/" + d.id + "/assign", { assignee: assignIn.value.trim() })) }, "Assign"),
    commentIn, el("button", { class: "comment secondary", onclick: act(() => api("POST", "/v1/detections/" + d.id + "/comments", { text: commentIn.value })) }, "Comment"),
    el("button", { class: "block danger", onclick: act(() => api("POST", "/v1/local-decisions", { indicator: d.sighting.indicator.value, ttl: "24h", reason: "blocked from the dashboard, detection " + d.id })) }, "Block locally")));
}

async function pageTriage() {
  const ds = await api("GET", "/v1/detections?limit=100");
  if (state.page !== "triage") return;
  const rows = ds.map(d => el("tr", { class: "detection", "data-id": d.id, "data-acknowledged": String(d.acknowledged) },
    el("td", { class: "mono" }, d.id),
    el("td", { class: "mono" }, when(d.received)),
    el("td", {}, indLink(d.sighting.indicator.value)),
    el("td", {}, d.sighting.detector || ""),
    el("td", {}, (d.sighting.technique || "") + (d.attack ? " " + d.attack.name : "")),
    el("td", {}, String(d.sighting.count || "")),
    el("td", { class: "ack-state" }, d.acknowledged ? el("span", { class: "ok" }, "acknowledged by " + d.ack.by) : el("span", { class: "warn" }, "open")),
    el("td", { class: "assigned" }, d.assigned ? d.assigned.assignee : ""),
    el("td", { class: "comments" }, (d.comments || []).map(c => el("div", {}, el("b", {}, c.by + ": "), c.text))),
    triageActions(d)));
  setPage(el("h1", {}, "Triage queue"),
    el("p", { class: "muted" }, can("responder") ? "This node's detections, newest first. Acknowledge, assign, comment or block locally (24 h)." : "This node's detections, newest first. Your role may read them only."),
    table(["detection", "received", "indicator", "detector", "technique", "count", "state", "assigned", "comments", can("responder") ? "actions" : ""], rows, "detections"));
}

async function pageIndicators() {
  const iocs = await api("GET", "/v1/iocs?limit=200");
  setPage(el("h1", {}, "Indicators"),
    table(["indicator", "type", "risk", "sightings", "sites", "detectors", "first seen", "last seen", "policies"],
      iocs.map(i => el("tr", {}, el("td", {}, indLink(i.indicator.value)), el("td", {}, i.indicator.type),
        el("td", {}, i.risk_score ?? ""), el("td", {}, i.sightings), el("td", {}, i.origins),
        el("td", {}, (i.detectors || []).join(", ")), el("td", { class: "mono" }, when(i.first_seen)),
        el("td", { class: "mono" }, when(i.last_seen)), el("td", {}, (i.policies || []).join(", ")))), "iocs"));
}

function queryTable(q) {
  return table(["node", "site", "status", "sightings", "local", "sites seen", "local block", "mesh policy", "enforcing", "ms"],
    q.results.map(r => {
      const a = r.answer || {};
      return el("tr", { class: "query-result", "data-status": r.status },
        el("td", { class: "mono", title: r.node }, short(r.node)), el("td", {}, r.site || a.site || ""),
        el("td", { class: r.status === "answered" ? "ok" : "bad" }, r.status + (r.error ? ": " + r.error : "")),
        el("td", {}, a.sightings ?? ""), el("td", {}, a.local ?? ""), el("td", {}, (a.origins || []).length || ""),
        el("td", {}, a.local_decision === undefined ? "" : (a.local_decision ? "yes" : "no")),
        el("td", { class: "mono" }, a.mesh_policy || ""),
        el("td", {}, a.enforcing === undefined ? "" : yes(a.enforcing)),
        el("td", {}, r.ms !== undefined ? r.ms.toFixed(1) : ""));
    }), "query-results");
}

async function pageIndicator(value) {
  setPage(el("h1", {}, "Indicator ", el("span", { class: "mono" }, value)), el("div", { id: "ioc" }, "loading…"),
    el("h2", {}, "Across the mesh (mesh-wide query)"), el("div", { id: "ioc-mesh" }, "asking every member…"));
  api("GET", "/v1/query?kind=indicator&value=" + encodeURIComponent(value)).then(
    q => $("ioc-mesh") && $("ioc-mesh").replaceChildren(queryTable(q)),
    e => $("ioc-mesh") && $("ioc-mesh").replaceChildren(errorBox(e)));
  let d;
  try { d = await api("GET", "/v1/iocs/" + encodeURIComponent(value)); } catch (e) {
    $("ioc").replaceChildren(e.status === 404 ? el("p", { class: "muted" }, "This node holds nothing about it.") : errorBox(e));
    return;
  }
  const risk = d.risk || {};
  const parts = [
    el("div", { class: "cards" },
      el("div", { class: "card" }, el("div", { class: "k" }, "risk"), el("div", { class: "v" }, risk.score ?? d.risk_score ?? "n/a")),
      el("div", { class: "card" }, el("div", { class: "k" }, "sightings"), el("div", { class: "v" }, d.sightings)),
      el("div", { class: "card" }, el("div", { class: "k" }, "sites"), el("div", { class: "v" }, d.origins)),
      el("div", { class: "card" }, el("div", { class: "k" }, "first seen"), el("div", { class: "v mono" }, when(d.first_seen))),
      el("div", { class: "card" }, el("div", { class: "k" }, "last seen"), el("div", { class: "v mono" }, when(d.last_seen)))),
    el("h2", {}, "Risk factors"),
    table(["factor", "value", "weight", "contribution", "detail"], (risk.factors || []).map(f => el("tr", {},
      el("td", {}, f.name), el("td", {}, Number(f.value).toFixed(2)), el("td", {}, f.weight),
      el("td", {}, Number(f.contribution).toFixed(1)), el("td", {}, f.detail || "")))),
    el("h2", {}, "Who saw it, and when"),
    table(["received", "origin", "site", "detector", "ATT&CK", "count", "confidence"], (d.sighting_list || []).map(s => el("tr", {},
      el("td", { class: "mono" }, when(s.received)), el("td", { class: "mono", title: s.origin }, short(s.origin)),
      el("td", {}, s.sighting.site || ""), el("td", {}, s.sighting.detector || ""),
      el("td", {}, s.sighting.technique ? el("a", { href: "#/technique/" + s.sighting.technique }, s.sighting.technique + (s.attack ? " " + s.attack.name : "")) : ""),
      el("td", {}, s.sighting.count), el("td", {}, s.sighting.confidence)))),
    el("h2", {}, "Policies in force"),
    table(["policy", "scope", "action", "author", "reason", "expires", "evidence"], (d.policy_list || []).map(p => el("tr", {},
      el("td", { class: "mono" }, p.id), el("td", {}, p.scope), el("td", {}, p.action), el("td", { class: "mono" }, short(p.author)),
      el("td", {}, p.reason || ""), el("td", { class: "mono" }, when(p.expires_at)), el("td", {}, (p.evidence || []).length)))),
    el("h2", {}, "Feeds and reports"),
    table(["source", "origin", "confidence", "labels", "active", "received"], (d.report_list || []).map(r => el("tr", {},
      el("td", {}, r.report.source || ""), el("td", {}, r.site || short(r.origin)), el("td", {}, r.report.confidence),
      el("td", {}, (r.report.labels || []).join(", ")), el("td", {}, yes(r.active)), el("td", { class: "mono" }, when(r.received)))))];
  $("ioc").replaceChildren(...parts);
}

async function pageSearch(q) {
  $("search-q").value = q;
  setPage(el("h1", {}, "Mesh-wide query: ", el("span", { class: "mono" }, q)),
    el("p", {}, "Every member answers from what it holds. ", indLink(q), " opens the indicator on this node."),
    el("div", { id: "search-results" }, "asking every member…"));
  try {
    const r = await api("GET", "/v1/query?kind=indicator&value=" + encodeURIComponent(q));
    const sum = Object.entries(r.summary || {}).map(([k, v]) => k + ": " + v).join(", ");
    $("search-results").replaceChildren(el("p", { class: "muted", id: "search-summary" }, sum), queryTable(r));
  } catch (e) { $("search-results").replaceChildren(errorBox(e)); }
}

async function pagePolicies() {
  const page = await api("GET", "/v1/policies?limit=500");
  const rows = page.items.map(p => el("tr", { class: "policy" },
    el("td", { class: "mono" }, el("a", { href: "#/policy/" + p.id }, p.id)), el("td", {}, p.scope), el("td", {}, p.action),
    el("td", {}, indLink(p.indicator.value)), el("td", { class: "mono", title: p.author }, short(p.author)),
    el("td", {}, p.reason || ""), el("td", { class: "mono" }, when(p.expires_at)),
    el("td", {}, (p.evidence || []).length + " sightings"),
    el("td", {}, (p.techniques || []).map(t => el("span", { class: "pill" }, t.id)))));
  setPage(el("h1", {}, "Policies"),
    el("p", { class: "muted" }, "Mesh-wide policies (committed through consensus) and this node's local decisions. Open one to see which nodes enforce it."),
    table(["policy", "scope", "action", "indicator", "author", "reason", "expires", "evidence", "ATT&CK"], rows, "policies"),
    page.next_cursor ? el("p", { class: "muted" }, "more policies follow (first 500 shown)") : "");
}

async function pagePolicy(id) {
  setPage(el("h1", {}, "Policy ", el("span", { class: "mono" }, id)), el("div", { id: "pol" }, "loading…"),
    el("h2", {}, "Enforcement on each node"), el("div", { id: "pol-mesh" }, "asking every member…"));
  try {
    const p = await api("GET", "/v1/policies/" + encodeURIComponent(id));
    $("pol").replaceChildren(el("pre", {}, JSON.stringify(p, null, 2)));
  } catch (e) { $("pol").replaceChildren(errorBox(e)); }
  try {
    const q = await api("GET", "/v1/query?kind=policy&value=" + encodeURIComponent(id));
    $("pol-mesh").replaceChildren(table(["node", "site", "status", "known", "enforcing", "ms"], q.results.map(r => {
      const a = r.answer || {};
      return el("tr", {}, el("td", { class: "mono" }, short(r.node)), el("td", {}, r.site || a.site || ""),
        el("td", { class: r.status === "answered" ? "ok" : "bad" }, r.status), el("td", {}, a.known === undefined ? "" : yes(a.known)),
        el("td", {}, a.enforcing === undefined ? "" : yes(a.enforcing)), el("td", {}, r.ms !== undefined ? r.ms.toFixed(1) : ""));
    })));
  } catch (e) { $("pol-mesh").replaceChildren(errorBox(e)); }
}

async function pageAttack() {
  let cov;
  try { cov = await api("GET", "/v1/coverage"); } catch (e) {
    setPage(el("h1", {}, "ATT&CK coverage"), el("div", { class: "note" }, e.status === 503 ?
      "This node has no ATT&CK catalog (intel.attack_path). Offline: meshward rules coverage --attack enterprise-attack.json" : e.message));
    return;
  }
  const rows = cov.tactics.map(t => {
    const pct = t.techniques ? Math.round(100 * t.covered.length / t.techniques) : 0;
    return el("tr", { class: "tactic" }, el("td", {}, t.id), el("td", {}, t.name),
      el("td", {}, t.covered.length + " / " + t.techniques),
      el("td", {}, el("div", { class: "bar" }, el("span", { class: "w" + Math.min(100, Math.round(pct / 10) * 10) }))),
      el("td", {}, t.covered.map(id => el("a", { class: "pill", href: "#/technique/" + id }, id))),
      el("td", {}, t.rules.join(", ")));
  });
  setPage(el("h1", {}, "ATT&CK coverage"),
    el("p", { class: "muted" }, "Which techniques the " + cov.rules + " rules in force on this node report, tactic by tactic (catalog " + cov.catalog.split("/").pop() + ")."),
    table(["tactic", "name", "techniques covered", "", "covered", "rules"], rows, "coverage"),
    cov.problems.length ? el("h2", {}, "Rule problems") : "",
    cov.problems.length ? table(["rule", "technique", "problem"], cov.problems.map(p => el("tr", {}, el("td", {}, p.rule), el("td", {}, p.technique || ""), el("td", {}, p.problem)))) : "");
}

async function pageTechnique(id) {
  const v = await api("GET", "/v1/attack/" + encodeURIComponent(id));
  setPage(el("h1", {}, "Technique ", id), el("pre", {}, JSON.stringify(v, null, 2)));
}

async function pageProcess() {
  const parts = [el("h1", {}, "Process measurement"),
    el("p", { class: "muted" }, "Time from detection to enforcement, stage by stage, over the incidents of the last 7 days (percentiles).")];
  try {
    const s = await api("GET", "/v1/process?by=site");
    parts.push(el("div", { class: "cards" }, el("div", { class: "card" }, el("div", { class: "k" }, "incidents"), el("div", { class: "v" }, s.incidents))),
      table(["stage", "count", "p50", "p90", "p99"], (s.stages || []).map(st => el("tr", {}, el("td", {}, st.stage), el("td", {}, st.count),
        el("td", {}, secs(st.p50_seconds)), el("td", {}, secs(st.p90_seconds)), el("td", {}, secs(st.p99_seconds)))), "process-stages"));
    // Charts drawn by the node (SVG, same origin): each stage's
    // distribution, then the breaches per day.
    const charts = (s.stages || []).filter(st => st.count > 0).map(st => processChart("stage=" + encodeURIComponent(st.stage), "time to " + st.stage + " (CDF of " + st.count + ")"));
    if ((s.breaches_by_day || []).length) charts.push(processChart("chart=breaches", "playbook breaches per day"));
    if (charts.length) parts.push(el("h2", {}, "Distributions"), el("div", { class: "charts", id: "process-charts" }, charts));
    for (const g of s.groups || []) {
      parts.push(el("h2", {}, "site " + g.key), table(["stage", "count", "p50", "p90", "p99"], g.stages.map(st => el("tr", {},
        el("td", {}, st.stage), el("td", {}, st.count), el("td", {}, secs(st.p50_seconds)), el("td", {}, secs(st.p90_seconds)), el("td", {}, secs(st.p99_seconds))))));
    }
    const open = (s.breaches || []).filter(b => !b.done);
    parts.push(el("h2", {}, "Expectation breaches (" + (s.breaches || []).length + ", " + open.length + " open)"),
      table(["expectation", "stage", "indicator", "site", "rule", "due", "done"], (s.breaches || []).slice(0, 100).map(b => el("tr", {},
        el("td", {}, b.expectation), el("td", {}, b.stage), el("td", {}, indLink(b.indicator)), el("td", {}, b.site || ""),
        el("td", {}, b.rule || ""), el("td", { class: "mono" }, when(b.due)), el("td", { class: "mono" }, when(b.done) || el("span", { class: "bad" }, "open"))))));
  } catch (e) {
    parts.push(el("div", { class: "note" }, "Process measurement is not available on this node (" + e.message + "). The node's per-indicator timelines and the meshward_policy_enforce_seconds histogram are on /metrics."));
  }
  setPage(...parts);
}

function processChart(query, title) {
  const img = el("img", { class: "chart", src: "/v1/process/chart.svg?" + query, alt: title, width: 576, height: 336 });
  img.addEventListener("error", () => img.replaceWith(el("p", { class: "error" }, "chart " + title + ": not available")));
  return el("figure", {}, img, el("figcaption", { class: "muted" }, title));
}

async function pageAudit() {
  const es = await api("GET", "/v1/audit?limit=200");
  setPage(el("h1", {}, "Audit trail"),
    table(["time", "actor", "role", "action", "target", "result", "detail"], es.map(e => el("tr", {},
      el("td", { class: "mono" }, when(e.time)), el("td", {}, e.actor), el("td", {}, e.role || ""), el("td", {}, e.action),
      el("td", { class: "mono" }, e.target || ""), el("td", { class: e.result === "ok" ? "ok" : "bad" }, e.result + (e.count > 1 ? " ×" + e.count : "")),
      el("td", {}, [e.detail, e.error].filter(Boolean).join(" — ")))), "audit"));
}

async function pageTokens() {
  const toks = await api("GET", "/v1/tokens");
  const name = el("input", { id: "token-name", placeholder: "name" });
  const role = el("select", { id: "token-role" }, ["viewer", "responder", "admin"].map(r => el("option", { value: r }, r)));
  const out = el("div", { id: "token-created" });
  const create = async () => {
    try {
      const t = await api("POST", "/v1/tokens", { name: name.value.trim(), role: role.value });
      out.replaceChildren(el("div", { class: "note" }, "Token " + t.name + " (" + t.role + "), shown this once: ", el("code", { class: "mono" }, t.token)));
      const keep = out.firstChild;
      await pageTokens();
      $("token-created").replaceChildren(keep);
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  setPage(el("h1", {}, "API tokens"),
    el("div", { class: "actions" }, name, role, el("button", { id: "token-create", onclick: create }, "Create token")), out,
    table(["id", "name", "role", "created", "by", ""], toks.map(t => el("tr", {},
      el("td", { class: "mono" }, t.id), el("td", {}, t.name), el("td", {}, t.role), el("td", { class: "mono" }, when(t.created_at)),
      el("td", {}, t.created_by || ""),
      el("td", {}, t.id === state.session.token_id ? el("span", { class: "muted" }, "this session") :
        el("button", { class: "danger", onclick: async () => { try { await api("DELETE", "/v1/tokens/" + t.id); pageTokens(); } catch (e) { status(e.message); } } }, "Revoke")))), "tokens"));
}

async function pageOperators() {
  const st = await api("GET", "/v1/operator");
  setPage(el("h1", {}, "Operators"),
    el("p", { class: "muted" }, "Mesh " + (st.mesh || "")),
    el("p", {}, "Mesh-wide changes are operator commands, signed with an operator's key on the operator's own machine. The dashboard never holds an operator key."),
    table(["key", "name", "role", "added", "by"], st.operators.map(o => el("tr", {},
      el("td", { class: "mono", title: o.public_key }, o.key_id), el("td", {}, o.name), el("td", {}, o.role),
      el("td", { class: "mono" }, when(o.added_at)), el("td", {}, o.added_by || ""))), "operators"),
    el("h2", {}, "Join tokens"),
    table(["id", "uses", "used", "expires", "by"], st.join_tokens.map(j => el("tr", {},
      el("td", { class: "mono" }, j.id), el("td", {}, j.uses ?? ""), el("td", {}, j.used ?? ""), el("td", { class: "mono" }, when(j.expires)),
      el("td", { class: "mono" }, j.created_by || "")))),
    el("h2", {}, "Signing commands from the CLI"),
    el("pre", {}, [
      "# an operator key, kept off the nodes (mode 0600), and its public key",
      "meshward operator keygen --out ~/keys/meshward-oncall.key",
      "# register it (run by an admin operator)",
      "meshward operator add \"meshward-operator-ed25519 AAAA...\" --role responder --name alice",
      "# mesh-wide block, allow and revoke, each signed with the key",
      "meshward policy block 203.0.113.7 --ttl 24h --reason \"ssh brute force\" --operator-key ~/keys/meshward-oncall.key",
      "meshward policy allow 192.0.2.10 --reason \"partner scanner\"",
      "meshward policy revoke 3f2a9c0d11e4b7a8",
      "# a join token for a new site",
      "meshward token create --join --ttl 1h --uses 1"].join("\n")));
}

// ---- routing --------------------------------------------------------------------

const pages = {
  overview: pageOverview, live: pageLive, triage: pageTriage, indicators: pageIndicators, policies: pagePolicies,
  attack: pageAttack, process: pageProcess, audit: pageAudit, tokens: pageTokens, operators: pageOperators,
};

async function route() {
  if (!state.session) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const name = parts[0] || "overview";
  const arg = decodeURIComponent(parts.slice(1).join("/"));
  state.page = name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  try {
    if (name === "indicator") await pageIndicator(arg);
    else if (name === "search") await pageSearch(arg);
    else if (name === "policy") await pagePolicy(arg);
    else if (name === "technique") await pageTechnique(arg);
    else if (pages[name]) await pages[name]();
    else await pageOverview();
  } catch (e) {
    if (state.session) setPage(errorBox(e));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("search-q").value.trim();
    if (q) location.hash = "#/search/" + encodeURIComponent(q);
  });
  window.addEventListener("hashchange", route);
  const s = await loadSession();
  if (s) signedIn(s); else signedOut();
});
