// app.js — kizuna's console (docs/CONSOLE.md): pages drawn from the node's own API, over the
// browser's mutual TLS connection. What the node refuses this identity is not shown: the
// console asks and draws the answers, it never widens them.
import uPlot from "uplot";
// The map (Leaflet, milsymbol, the outlines) and mqtt.js are loaded when their page opens:
// the first page needs neither, and they are most of the bytes (docs/CONSOLE.md "Measured").

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
  return e;
}

// Times in UTC with the browser's offset beside them (ops rooms work in UTC).
const offset = (() => {
  const m = -new Date().getTimezoneOffset();
  const s = m >= 0 ? "+" : "-";
  const a = Math.abs(m);
  return `UTC${s}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
})();
const utc = (t) => (t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-");

async function api(path, accept = "application/json") {
  const r = await fetch(path, { headers: { Accept: accept }, cache: "no-store" });
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!r.ok) {
    const why = body && body.description ? body.description : `${r.status} ${r.statusText}`;
    throw new Error(why);
  }
  return body;
}

function failed(where, err) {
  return el("p", { class: "error", role: "alert" }, `${where}: ${err.message}`);
}

function metricsOf(text) {
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const i = line.lastIndexOf(" ");
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}

let stopPage = () => {};

function duration(s) {
  if (!(s >= 0)) return "-";
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
}

// ---------- Overview ----------
async function overview(root) {
  const card = (title, id) => el("section", { class: "card" }, el("h2", {}, title), el("div", { id }));
  root.append(
    el("h1", {}, "Overview"),
    el("div", { class: "grid" }, card("Node", "ov-node"), card("Components", "ov-comp"), card("Now", "ov-now")),
    el("section", { class: "card wide" }, el("h2", {}, "Messages per second"), el("div", { id: "ov-chart" })),
  );
  try {
    const [h, me] = await Promise.all([api("/healthz"), api("/api/v1/whoami")]);
    $("#ov-node").append(
      el("dl", {}, el("dt", {}, "version"), el("dd", {}, h.version), el("dt", {}, "status"),
        el("dd", { class: `st-${h.status}` }, h.status), el("dt", {}, "your identity"), el("dd", {}, me.identity),
        el("dt", {}, "your TLS group"), el("dd", { id: "ov-group" }, me.tls_group),
        el("dt", {}, "post-quantum"), el("dd", {}, /MLKEM/i.test(me.tls_group) ? "yes (hybrid ML-KEM)" : "no")),
    );
    const comp = el("dl");
    for (const [k, v] of Object.entries(h.components || {}))
      comp.append(el("dt", {}, k), el("dd", { class: `st-${v.status}` }, `${v.status}: ${v.detail || ""}`));
    $("#ov-comp").append(comp);
  } catch (e) {
    root.append(failed("node", e));
  }
  const xs = [], ins = [], outs = [];
  const plot = new uPlot(
    { width: 760, height: 220, series: [{}, { label: "in", stroke: "#6cf" }, { label: "out", stroke: "#fc6" }],
      axes: [{ stroke: "#aaa" }, { stroke: "#aaa" }] },
    [xs, ins, outs], $("#ov-chart"));
  let last = null;
  const tick = async () => {
    try {
      const m = metricsOf(await api("/metrics", "text/plain"));
      const now = Date.now() / 1000;
      if (last) {
        const dt = now - last.t;
        xs.push(now);
        ins.push((m.kizuna_mqtt_messages_in_total - last.in) / dt);
        outs.push((m.kizuna_mqtt_messages_out_total - last.out) / dt);
        if (xs.length > 150) [xs, ins, outs].forEach((a) => a.shift());
        plot.setData([xs, ins, outs]);
      }
      const rate = (k) => (last ? ((m[k] - last[k]) / (now - last.t)).toFixed(0) : "-");
      const groups = Object.entries(m).filter(([k]) => k.startsWith("kizuna_mqtt_connections_by_group{"));
      const all = groups.reduce((a, [, v]) => a + v, 0);
      const pq = groups.filter(([k]) => /MLKEM/i.test(k)).reduce((a, [, v]) => a + v, 0);
      const listeners = Object.keys(m).filter((k) => k.startsWith("kizuna_listener{"))
        .map((k) => k.replace(/^kizuna_listener\{protocol="([^"]*)",address="([^"]*)"\}$/, "$1 $2"))
        .map((l) => (/^https .*:0$/.test(l) ? `https ${location.host}` : l)); // port 0: the one the browser reached
      const bin = rate("kizuna_mqtt_bytes_in_total"), bout = rate("kizuna_mqtt_bytes_out_total");
      last = { t: now, in: m.kizuna_mqtt_messages_in_total, out: m.kizuna_mqtt_messages_out_total,
        kizuna_mqtt_bytes_in_total: m.kizuna_mqtt_bytes_in_total, kizuna_mqtt_bytes_out_total: m.kizuna_mqtt_bytes_out_total };
      const now_ = $("#ov-now");
      if (now_)
        now_.replaceChildren(el("dl", {},
          el("dt", {}, "uptime"), el("dd", { id: "ov-uptime" }, duration(m.kizuna_uptime_seconds)),
          el("dt", {}, "listeners"), el("dd", { id: "ov-listeners" }, listeners.join(", ") || "-"),
          el("dt", {}, "MQTT connections"), el("dd", { id: "ov-conns" }, m.kizuna_mqtt_connections),
          el("dt", {}, "post-quantum share"), el("dd", { id: "ov-pq" }, all ? `${pq} of ${all} (${Math.round((100 * pq) / all)} %)` : "-"),
          el("dt", {}, "bytes/s in / out"), el("dd", {}, `${bin} / ${bout}`),
          el("dt", {}, "HTTPS connections"), el("dd", {}, m.kizuna_http_connections),
          el("dt", {}, "records stored"), el("dd", { id: "ov-records" }, m.kizuna_store_records),
          el("dt", {}, "store bytes"), el("dd", {}, m.kizuna_store_bytes),
          el("dt", {}, "decisions allowed / denied"),
          el("dd", {}, `${m.kizuna_decisions_allowed_total} / ${m.kizuna_decisions_denied_total}`)));
    } catch (e) {
      $("#ov-now")?.replaceChildren(failed("metrics", e));
    }
  };
  await tick();
  const timer = setInterval(tick, 2000);
  return () => clearInterval(timer);
}

// ---------- Live traffic ----------
const MAX_ROWS = 200;

async function live(root) {
  const filter = el("input", { id: "lv-filter", value: "#", "aria-label": "Topic filter", size: 30 });
  const status = el("span", { id: "lv-status", role: "status" }, "not subscribed");
  const pause = el("button", { id: "lv-pause", type: "button" }, "Pause");
  const rows = el("tbody", { id: "lv-rows" });
  const detail = el("pre", { id: "lv-detail", class: "detail", "aria-live": "polite" });
  root.append(
    el("h1", {}, "Live traffic"),
    el("form", { class: "bar", onsubmit: (ev) => { ev.preventDefault(); start(filter.value); } },
      el("label", { for: "lv-filter" }, "Topic filter "), filter,
      el("label", { for: "lv-since" }, " replay from (UTC) "),
      el("input", { id: "lv-since", placeholder: "2026-01-01T00:00:00Z", size: 22 }),
      el("button", { type: "submit" }, "Subscribe"), pause, status),
    el("table", { class: "records live" },
      el("thead", {}, el("tr", {}, el("th", {}, "time (UTC)"), el("th", {}, "topic"), el("th", {}, "origin"),
        el("th", {}, "label"), el("th", {}, "payload"))), rows),
    detail);
  // The MQTT client runs in a worker (live-worker.js); it sends the newest records ten times a
  // second and how many it did not send, and the page draws those.
  const worker = new Worker(document.documentElement.dataset.liveWorker, { type: "module" });
  let paused = false, topic = "", dropped = 0;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    worker.postMessage({ cmd: "pause", value: paused });
  });
  const row = (m) => {
    const tr = el("tr", { tabindex: 0 },
      el("td", {}, utc(m.at)), el("td", {}, m.topic), el("td", {}, m.up["kz-origin"] || "-"),
      el("td", { class: "label" }, m.up["kz-label"] || "-"), el("td", { class: "payload" }, m.preview));
    const open = () => { detail.textContent = `${m.topic}\n${JSON.stringify(m.up)}\n\n${m.full}`; };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
    return tr;
  };
  worker.onmessage = (ev) => {
    const m = ev.data;
    if (m.status) {
      topic = m.topic || topic;
      status.textContent = m.status;
      return;
    }
    const frag = document.createDocumentFragment();
    for (let i = m.rows.length - 1; i >= 0; i--) frag.append(row(m.rows[i]));
    rows.prepend(frag);
    while (rows.children.length > MAX_ROWS) rows.lastChild.remove();
    dropped = m.dropped;
    status.textContent = dropped ? `subscribed to ${topic}; ${dropped} records not drawn (too fast to show every one)`
      : `subscribed to ${topic}`;
  };
  function start(t) {
    worker.postMessage({ cmd: "start", url: `wss://${location.host}/mqtt`, topic: t, since: $("#lv-since").value.trim() });
  }
  start(filter.value);
  return () => { worker.postMessage({ cmd: "stop" }); worker.terminate(); };
}

// ---------- Picture ----------
// A MIL-STD-2525C code from a Cursor-on-Target type when the entity has no symbol of its own:
// a-<affiliation>-<dimension>[-<function>...] (f friend, h hostile, n neutral, u unknown; A air,
// G ground, S sea surface, U subsurface, P space).
function sidcOf(type) {
  const t = (type || "").split("-");
  const aff = { f: "F", h: "H", n: "N", u: "U", a: "A", s: "S", j: "J", k: "K", p: "P" }[t[1]] || "U";
  const dim = { A: "A", G: "G", S: "S", U: "U", P: "P" }[t[2]] || "G";
  return `S${aff}${dim}P-----------`;
}

async function picture(root) {
  const { L, ms, feature, land } = await import("./map.js");
  const list = el("tbody", { id: "pc-rows" });
  const info = el("pre", { id: "pc-detail", class: "detail" });
  const fType = el("input", { id: "pc-type", size: 10, placeholder: "a-f", "aria-label": "Type prefix" });
  const fOrigin = el("input", { id: "pc-origin", size: 26, placeholder: "spiffe://…", "aria-label": "Source identity" });
  const fLabel = el("input", { id: "pc-label", size: 14, placeholder: "class=secret", "aria-label": "Label contains" });
  const tasks = el("tbody", { id: "tk-rows" });
  const tnote = el("p", { id: "tk-note", role: "status" });
  root.append(el("h1", {}, "Picture"),
    el("form", { class: "bar", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      el("label", { for: "pc-type" }, "type"), fType, el("label", { for: "pc-origin" }, "source"), fOrigin,
      el("label", { for: "pc-label" }, "label"), fLabel, el("button", { type: "submit" }, "Filter")),
    el("div", { class: "split" }, el("div", { id: "pc-map", class: "map", role: "img", "aria-label": "Map of entities" }),
      el("div", {}, el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "entity"),
        el("th", {}, "type"), el("th", {}, "status"), el("th", {}, "label"), el("th", {}, "seen (UTC)"))), list), info)),
    el("h2", {}, "Tasks"), tnote, taskForm(),
    el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "kind"),
      el("th", {}, "assignee"), el("th", {}, "precedence"), el("th", {}, "state"), el("th", {}, "updated (UTC)"),
      el("th", {}, ""))), tasks));
  const map = L.map("pc-map", { worldCopyJump: true, attributionControl: false }).setView([35, 135], 3);
  L.geoJSON(feature(land, land.objects.land), { style: { color: "#4a6", weight: 1, fillColor: "#1d2a22", fillOpacity: 1 } })
    .addTo(map);
  const layer = L.layerGroup().addTo(map);
  const trails = new Map(); // entity id -> its recent positions seen on this page (a track's trail)
  async function load() {
    const q = new URLSearchParams({ limit: "500", status: "live,stale" });
    if (fType.value.trim()) q.set("type", fType.value.trim());
    if (fOrigin.value.trim()) q.set("origin", fOrigin.value.trim());
    try {
      const r = await api(`/api/v1/entities?${q}`);
      const want = fLabel.value.trim();
      const shown = r.entities.filter((e) => !want || (e.label || "").includes(want));
      layer.clearLayers();
      list.replaceChildren();
      for (const e of shown) {
        const stale = e.status === "stale";
        const tr = el("tr", { tabindex: 0, class: stale ? "stale" : "" }, el("td", {}, e.name || e.id),
          el("td", {}, e.type || "-"), el("td", {}, e.status), el("td", { class: "label" }, e.label || "-"),
          el("td", {}, utc(e.received_time)));
        const show = async () => {
          const te = $("#tk-entity");
          if (te) te.value = e.id;
          try {
            const h = await api(`/api/v1/entities/${encodeURIComponent(e.id)}/history?limit=20`);
            info.textContent = JSON.stringify({ entity: e, history: h.history }, null, 1);
          } catch (err) {
            info.textContent = err.message;
          }
        };
        tr.addEventListener("click", show);
        tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") show(); });
        list.append(tr);
        if (e.position) {
          const t = trails.get(e.id) || [];
          const last = t[t.length - 1];
          if (!last || last[0] !== e.position.lat || last[1] !== e.position.lon) t.push([e.position.lat, e.position.lon]);
          while (t.length > 20) t.shift();
          trails.set(e.id, t);
          if (t.length > 1) L.polyline(t, { color: stale ? "#777" : "#6cf", weight: 2, opacity: 0.7 }).addTo(layer);
          const sidc = e.symbol || sidcOf(e.type);
          const sym = new ms.Symbol(sidc, { size: 22, uniqueDesignation: e.name || "" });
          const icon = L.divIcon({ className: stale ? "sym stale" : "sym", html: sym.asSVG(),
            iconAnchor: [sym.getAnchor().x, sym.getAnchor().y] });
          L.marker([e.position.lat, e.position.lon], { icon, title: e.name || e.id, keyboard: true }).addTo(layer)
            .on("click", show);
        }
      }
      if (!shown.length) list.append(el("tr", {}, el("td", { colspan: 5 }, "no entities you may see")));
    } catch (err) {
      list.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, failed("entities", err))));
    }
  }
  function taskForm() {
    const agent = el("select", { id: "tk-assignee", "aria-label": "Assignee" });
    const kind = el("input", { id: "tk-kind", size: 10, placeholder: "observe", "aria-label": "Kind" });
    const prec = el("select", { id: "tk-precedence", "aria-label": "Precedence" },
      ...["ROUTINE", "PRIORITY", "IMMEDIATE", "FLASH"].map((p) => el("option", { value: p }, p)));
    const params = el("input", { id: "tk-params", size: 24, value: "{}", "aria-label": "Parameters (JSON)" });
    const ent = el("input", { id: "tk-entity", size: 16, placeholder: "select an entity", "aria-label": "Entity" });
    api("/api/v1/agents").then((r) => {
      for (const a of r.agents) agent.append(el("option", { value: a.id }, `${a.id} (${a.kinds.join(", ")})`));
      if (r.agents.length && !kind.value) kind.value = r.agents[0].kinds[0] || "";
    }).catch((e) => { tnote.textContent = `agents: ${e.message}`; });
    return el("form", { class: "bar", id: "tk-form", onsubmit: async (ev) => {
      ev.preventDefault();
      let p;
      try { p = JSON.parse(params.value || "{}"); } catch { tnote.textContent = "parameters must be a JSON object"; return; }
      const body = { assignee: agent.value, kind: kind.value.trim(), precedence: prec.value, parameters: p };
      if (ent.value.trim()) body.entities = [ent.value.trim()];
      const r = await fetch("/api/v1/tasks", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) });
      const b = await r.json();
      tnote.textContent = r.ok ? `task ${b.id} created (${b.state})` : `not created: ${b.description}`;
      loadTasks();
    } }, el("label", { for: "tk-assignee" }, "task"), agent, el("label", { for: "tk-kind" }, "kind"), kind,
    el("label", { for: "tk-entity" }, "entity"), ent, el("label", { for: "tk-params" }, "parameters"), params,
    prec, el("button", { type: "submit", id: "tk-create" }, "Create task"));
  }
  const FINAL = ["DONE_OK", "DONE_FAILED", "REJECTED", "CANCELLED", "EXPIRED"];
  // A cancel chosen from the row's state: CREATED and SENT are cancelled at once, later states
  // get a cancel request for the agent to confirm. The task may have moved since the row was
  // drawn (the node sends it, its agent takes it): a 409 or 403 is then read again from the
  // task's state now, a few times.
  async function cancelTask(t0) {
    let t = t0;
    for (let i = 0; ; i++) {
      const state = t.state === "CREATED" || t.state === "SENT" ? "CANCELLED" : "CANCEL_REQUESTED";
      const r = await fetch(`/api/v1/tasks/${encodeURIComponent(t.id)}/state`, { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ state, version: t.version, reason: "from the console" }) });
      const b = await r.json();
      if (!r.ok && (r.status === 409 || r.status === 403) && i < 4) {
        const now = await fetch(`/api/v1/tasks/${encodeURIComponent(t.id)}`);
        if (now.ok) {
          const n = await now.json();
          if (n.version !== t.version && !FINAL.includes(n.state) && n.state !== "CANCEL_REQUESTED") {
            t = n;
            continue;
          }
        }
      }
      tnote.textContent = r.ok ? `task ${t.id}: ${b.state}` : `task ${t.id} not moved: ${b.description}`;
      break;
    }
    loadTasks();
  }
  async function loadTasks() {
    try {
      const r = await api("/api/v1/tasks?limit=100");
      tasks.replaceChildren(...r.tasks.reverse().map((t) => {
        const cell = el("td");
        if (!FINAL.includes(t.state) && t.state !== "CANCEL_REQUESTED") {
          const early = t.state === "CREATED" || t.state === "SENT";
          cell.append(el("button", { type: "button", "data-cancel": t.id, onclick: () => cancelTask(t) },
            early ? "Cancel" : "Ask to cancel"));
        }
        const tr = el("tr", { tabindex: 0 }, el("td", { class: "payload" }, t.id), el("td", {}, t.kind),
          el("td", {}, t.assignee), el("td", {}, t.precedence), el("td", { "data-state": t.id }, t.state),
          el("td", {}, utc(t.updated)), cell);
        const open = () => { info.textContent = JSON.stringify(t, null, 1); };
        tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "BUTTON") open(); });
        tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
        return tr;
      }));
      if (!r.tasks.length) tasks.append(el("tr", {}, el("td", { colspan: 7 }, "no tasks you may see")));
    } catch (err) {
      tasks.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, failed("tasks", err))));
    }
  }
  await Promise.all([load(), loadTasks()]);
  const timer = setInterval(() => { load(); loadTasks(); }, 5000);
  return () => { clearInterval(timer); map.remove(); };
}

// ---------- Sharing ----------
const TAXII = "application/taxii+json;version=2.1";
// TLP 2.0 marking definitions (the node stores every TLP as these, docs/TAXII.md)
const TLP = {
  "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "CLEAR",
  "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "GREEN",
  "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "AMBER",
  "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "AMBER+STRICT",
  "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "RED",
};
const tlpOf = (o) => (o.object_marking_refs || []).map((m) => TLP[m]).find(Boolean) || "-";

async function sharing(root) {
  const cols = el("ul", { id: "sh-cols", class: "cols" });
  const objs = el("tbody", { id: "sh-rows" });
  const type = el("input", { id: "sh-type", placeholder: "indicator", size: 14, "aria-label": "STIX type" });
  const after = el("input", { id: "sh-after", placeholder: "2026-01-01T00:00:00Z", size: 20, "aria-label": "Added after" });
  const tlp = el("select", { id: "sh-tlp", "aria-label": "TLP" }, el("option", { value: "" }, "any TLP"),
    ...["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"].map((t) => el("option", { value: t }, t)));
  const text = el("input", { id: "sh-search", placeholder: "search", size: 16, "aria-label": "Search" });
  const aud = el("input", { id: "sh-aud", placeholder: "org:mod", size: 14, "aria-label": "Audience names" });
  const all = el("input", { id: "sh-versions", type: "checkbox" });
  const file = el("input", { id: "sh-file", type: "file", accept: ".json,application/json" });
  const audience = el("input", { id: "sh-audience", placeholder: "org:mod, id:spiffe://…", size: 22, "aria-label": "Audience" });
  const note = el("p", { id: "sh-note", role: "status" });
  const detail = el("pre", { id: "sh-detail", class: "detail" });
  const versions = el("ul", { id: "sh-vers", class: "cols" });
  let cursor = null, count = 0;
  const more = el("button", { type: "button", id: "sh-more", disabled: true, onclick: () => current && show(current.root, current.c, cursor) },
    "More");
  root.append(el("h1", {}, "Sharing"), note, el("div", { class: "split" },
    el("div", {}, el("h2", {}, "Collections"), cols,
      el("h2", {}, "Import a STIX bundle into the collection shown"),
      el("div", { class: "bar" }, file, el("label", { for: "sh-audience" }, "audience"), audience,
        el("button", { type: "button", id: "sh-import", onclick: () => importFile() }, "Import")),
      el("h2", {}, "Object"), detail, el("h2", {}, "Versions and sightings"), versions),
    el("div", {}, el("form", { class: "bar", onsubmit: (ev) => { ev.preventDefault(); if (current) show(current.root, current.c); } },
      el("label", { for: "sh-type" }, "type"), type, el("label", { for: "sh-after" }, "added after"), after, tlp, text,
      el("label", { for: "sh-aud" }, "audience"), aud,
      el("label", { for: "sh-versions" }, all, " all versions"), el("button", { type: "submit" }, "Show")),
      el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "type"), el("th", {}, "name / id"),
        el("th", {}, "TLP"), el("th", {}, "modified (UTC)"))), objs), more)));
  let current = null;
  const base = () => `${current.root}collections/${current.c.id}/`;
  async function open(o) {
    detail.textContent = JSON.stringify(o, null, 1);
    versions.replaceChildren();
    try {
      const v = await api(`${base()}objects/${encodeURIComponent(o.id)}/versions/`, TAXII);
      for (const t of v.versions || []) versions.append(el("li", {}, `version ${utc(t)}`));
      if (o.type === "indicator") {
        const s = await api(`${base()}objects/?match[type]=sighting&limit=1000`, TAXII);
        const mine = (s.objects || []).filter((x) => x.sighting_of_ref === o.id);
        versions.append(el("li", { id: "sh-sightings" }, `${mine.length} sighting(s) in this collection`));
        for (const x of mine)
          versions.append(el("li", {}, `seen ${x.count || 1}× ${utc(x.first_seen || x.created)}–${utc(x.last_seen || x.modified)}`));
      }
    } catch (err) {
      versions.append(el("li", {}, failed("versions", err)));
    }
  }
  async function show(root_, c, next) {
    current = { root: root_, c };
    if (!next) {
      objs.replaceChildren();
      count = 0;
    }
    const q = new URLSearchParams({ limit: "500" });
    if (type.value.trim()) q.set("match[type]", type.value.trim());
    if (after.value.trim()) q.set("added_after", after.value.trim());
    if (all.checked) q.set("match[version]", "all");
    if (aud.value.trim()) q.set("match[audience]", aud.value.trim());
    if (next) q.set("next", next);
    try {
      const r = await api(`${root_}collections/${c.id}/objects/?${q}`, TAXII);
      const words = text.value.trim().toLowerCase();
      const shown = (r.objects || []).filter((o) => (!tlp.value || tlpOf(o) === tlp.value) &&
        (!words || JSON.stringify(o).toLowerCase().includes(words)));
      for (const o of shown) {
        const tr = el("tr", { tabindex: 0 }, el("td", {}, o.type), el("td", {}, o.name || o.id), el("td", {}, tlpOf(o)),
          el("td", {}, utc(o.modified)));
        tr.addEventListener("click", () => open(o));
        tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(o); });
        objs.append(tr);
      }
      count += shown.length;
      cursor = r.more ? r.next : null;
      more.disabled = !cursor;
      note.textContent = `${c.title || c.id}: ${count} shown${cursor ? " (more on the server: More)" : ""}`;
      if (!count) objs.append(el("tr", {}, el("td", { colspan: 4 }, "no objects you may see")));
    } catch (err) {
      objs.append(el("tr", {}, el("td", { colspan: 4 }, failed(c.title, err))));
    }
  }
  async function importFile() {
    if (!current) { note.textContent = "choose a collection first"; return; }
    const f = file.files[0];
    if (!f) { note.textContent = "choose a file"; return; }
    let objects;
    try {
      const j = JSON.parse(await f.text());
      objects = Array.isArray(j) ? j : j.objects;
      if (!Array.isArray(objects)) throw new Error("not a bundle, an envelope or a list of objects");
    } catch (err) {
      note.textContent = `${f.name}: ${err.message}`;
      return;
    }
    let ok = 0, bad = 0;
    const headers = { "Content-Type": TAXII, Accept: TAXII };
    if (audience.value.trim()) headers["Kizuna-Audience"] = audience.value.trim();
    for (let i = 0; i < objects.length; i += 500) {
      const r = await fetch(`${base()}objects/`, { method: "POST", headers, body: JSON.stringify({ objects: objects.slice(i, i + 500) }) });
      const b = await r.json();
      if (!r.ok) { note.textContent = `import refused: ${b.description}`; return; }
      ok += b.success_count || 0;
      bad += b.failure_count || 0;
    }
    await show(current.root, current.c);
    note.textContent = `${f.name}: ${ok} accepted, ${bad} refused. ${note.textContent}`;
  }
  try {
    const d = await api("/taxii2/", TAXII);
    for (const rootUrl of d.api_roots || []) {
      const path = new URL(rootUrl, location.href).pathname;
      const cs = await api(`${path}collections/`, TAXII);
      for (const c of cs.collections || [])
        cols.append(el("li", {}, el("button", { type: "button", "data-collection": c.id, onclick: () => show(path, c) }, c.title || c.id)));
    }
    if (!cols.children.length) cols.append(el("li", {}, "no collections"));
  } catch (err) {
    cols.append(el("li", {}, failed("TAXII", err)));
  }
  return () => {};
}

// ---------- Connections and identities ----------
async function connections(root) {
  const conns = el("tbody", { id: "cn-rows" });
  const certs = el("tbody", { id: "ce-rows" });
  const note = el("p", { id: "cn-note", role: "status" });
  root.append(el("h1", {}, "Connections and identities"), note,
    el("h2", {}, "Connected clients"),
    el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "client id"), el("th", {}, "identity"),
      el("th", {}, "address"), el("th", {}, "protocol"), el("th", {}, "TLS group"), el("th", {}, "since (UTC)"))), conns),
    el("h2", {}, "Enrolment token"),
    el("form", { class: "bar", id: "tok-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { id: $("#tok-id").value.trim(), ttl_s: Number($("#tok-ttl").value) * 60 };
      const r = await fetch("/api/v1/tokens", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const b = await r.json();
      $("#tok-out").textContent = r.ok
        ? `kizuna enroll --token ${b.token} --cafile ca.pem --out DIR    (for ${b.id}; usable once, until ${utc(b.expires)}; shown only now)`
        : `no token: ${b.description}`;
    } }, el("label", { for: "tok-id" }, "identity"), el("input", { id: "tok-id", size: 40, placeholder: "spiffe://kizuna.local/org/sensor/name" }),
    el("label", { for: "tok-ttl" }, "usable for (min)"), el("input", { id: "tok-ttl", size: 4, value: "60" }),
    el("button", { type: "submit" }, "Make token")),
    el("pre", { id: "tok-out", class: "detail", "aria-live": "polite" }),
    el("h2", {}, "Certificates issued by this node's CA"),
    el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "serial"), el("th", {}, "identity"),
      el("th", {}, "status"), el("th", {}, "valid until (UTC)"), el("th", {}, ""))), certs));
  // revoking asks first, in the page (keyboard reachable), then says what the node answered
  const ask = (c, cell) => {
    const yes = el("button", { type: "button", class: "danger", "data-confirm": c.serial }, "Revoke now");
    const no = el("button", { type: "button" }, "Cancel");
    cell.replaceChildren(`Revoke ${c.identity}? `, yes, " ", no);
    no.addEventListener("click", () => loadCerts());
    yes.addEventListener("click", async () => {
      try {
        const r = await fetch(`/api/v1/certificates/${encodeURIComponent(c.serial)}/revoke`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason: "privilegeWithdrawn" }),
        });
        const b = await r.json();
        note.textContent = r.ok ? `revoked ${b.identity} (${b.serial}); its connections close within the node's check interval`
          : `not revoked: ${b.description}`;
      } catch (e) {
        note.textContent = `not revoked: ${e.message}`;
      }
      loadCerts();
    });
    yes.focus();
  };
  const loadConns = async () => {
    try {
      const r = await api("/api/v1/connections");
      conns.replaceChildren(...r.connections.map((c) => el("tr", {}, el("td", {}, c.client_id), el("td", {}, c.identity),
        el("td", {}, c.address), el("td", {}, `${c.protocol} over ${c.transport}`), el("td", {}, c.tls_group),
        el("td", {}, utc(c.since)))));
      if (!r.connections.length) conns.append(el("tr", {}, el("td", { colspan: 6 }, "none")));
    } catch (e) {
      conns.replaceChildren(el("tr", {}, el("td", { colspan: 6 }, failed("connections", e))));
    }
  };
  const loadCerts = async () => {
    try {
      const r = await api("/api/v1/certificates");
      certs.replaceChildren(...r.certificates.reverse().map((c) => {
        const cell = el("td");
        if (c.status === "valid")
          cell.append(el("button", { type: "button", "data-revoke": c.serial, "aria-label": `Revoke ${c.identity}` }, "Revoke"));
        const tr = el("tr", {}, el("td", { class: "payload" }, c.serial), el("td", {}, c.identity),
          el("td", { class: c.status === "valid" ? "st-ok" : "st-failing" }, c.status), el("td", {}, utc(c.not_after)), cell);
        cell.querySelector("button")?.addEventListener("click", () => ask(c, cell));
        return tr;
      }));
    } catch (e) {
      certs.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, failed("certificates", e))));
    }
  };
  await Promise.all([loadConns(), loadCerts()]);
  const timer = setInterval(loadConns, 2000);
  return () => clearInterval(timer);
}

// ---------- Audit ----------
async function audit(root) {
  const f = (id, label, attrs = {}) => [el("label", { for: id }, label), el("input", { id, size: 18, ...attrs })];
  const rows = el("tbody", { id: "au-rows" });
  const verdict = el("p", { id: "au-verdict", role: "status" }, "chain not checked yet");
  const decision = el("select", { id: "au-decision", "aria-label": "Decision" },
    el("option", { value: "" }, "any"), el("option", { value: "allow" }, "allow"), el("option", { value: "deny" }, "deny"));
  const form = el("form", { class: "bar", onsubmit: (ev) => { ev.preventDefault(); load(); } },
    ...f("au-subject", "subject", { size: 30 }), ...f("au-action", "action", { placeholder: "connect, publish, http…" }),
    el("label", { for: "au-decision" }, "decision"), decision,
    ...f("au-since", "since (UTC)", { placeholder: "2026-01-01T00:00:00Z" }), el("button", { type: "submit" }, "Show"),
    el("button", { type: "button", id: "au-verify", onclick: () => verify() }, "Verify the chain"),
    el("button", { type: "button", id: "au-older", onclick: () => load(oldest) }, "Older"));
  let oldest = 0;
  root.append(el("h1", {}, "Audit"), form, verdict,
    el("table", { class: "records" }, el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "time (UTC)"),
      el("th", {}, "subject"), el("th", {}, "action"), el("th", {}, "resource"), el("th", {}, "decision"),
      el("th", {}, "reason"))), rows));
  async function load(before) {
    const q = new URLSearchParams({ limit: "200" });
    if (before) q.set("before", String(before));
    for (const [k, id] of [["subject", "au-subject"], ["action", "au-action"], ["decision", "au-decision"], ["since", "au-since"]]) {
      const v = $(`#${id}`).value.trim();
      if (v) q.set(k, v);
    }
    try {
      const r = await api(`/api/v1/audit?${q}`);
      rows.replaceChildren(...r.entries.filter((e) => e.action).map((e) => el("tr", { tabindex: 0 },
        el("td", {}, e.n), el("td", {}, utc(e.t)), el("td", {}, e.subject || "-"), el("td", {}, e.action),
        el("td", { class: "payload" }, e.resource || ""), el("td", { class: e.decision === "allow" ? "st-ok" : "st-failing" }, e.decision),
        el("td", {}, e.reason || ""))));
      if (!r.entries.length) rows.append(el("tr", {}, el("td", { colspan: 7 }, "no entries match")));
      oldest = r.entries.length ? r.entries[r.entries.length - 1].n : oldest;
      $("#au-older").disabled = !r.more;
    } catch (err) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, failed("audit", err))));
    }
  }
  async function verify() {
    verdict.textContent = "checking…";
    try {
      const r = await api("/api/v1/audit/verify");
      verdict.textContent = `chain ${r.verdict}: ${r.report.join(" ")}`;
      verdict.className = r.intact ? "st-ok" : "st-failing";
    } catch (err) {
      verdict.textContent = `not checked: ${err.message}`;
    }
  }
  await load();
  return () => {};
}

// ---------- the frame ----------
const pages = { overview, live, picture, sharing, connections, audit };

async function route() {
  stopPage();
  stopPage = () => {};
  const name = (location.hash.replace(/^#\//, "") || "overview").split("/")[0];
  const page = pages[name] ? name : "overview";
  for (const a of document.querySelectorAll("nav a"))
    a.toggleAttribute("aria-current", a.dataset.page === page) && a.setAttribute("aria-current", "page");
  const root = main();
  root.replaceChildren();
  document.title = `kizuna — ${page}`;
  const stop = await pages[page](root);
  stopPage = typeof stop === "function" ? stop : () => {};
  root.focus();
}

function clock() {
  $("#clock").textContent = `${utc(Date.now())} (local ${offset})`;
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  clock();
  setInterval(clock, 1000);
  try {
    const me = await api("/api/v1/whoami");
    $("#who").textContent = me.identity;
  } catch (e) {
    $("#who").textContent = e.message;
  }
  route();
});
