// Meridian dashboard: polls the admin API every 2 s and redraws; writes send the token from
// the header field and what the operator fills in the action form (reason, expiry, state).
"use strict";

const POLL_MS = 2000;
const SPARK_POINTS = 30;
const rttHistory = new Map(); // "zone/region/address" -> recent RTTs (ms)
const $ = (sel) => document.querySelector(sel);

const tokenField = $("#token");
tokenField.value = sessionStorage.getItem("meridian-token") || "";
tokenField.addEventListener("change", () => sessionStorage.setItem("meridian-token", tokenField.value));

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function when(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (tokenField.value) headers.Authorization = "Bearer " + tokenField.value;
  const r = await fetch("/api/v1" + path, { ...options, headers });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

// The state shown for a region: drained and down win over degraded.
function look(r) {
  if (r.state === "drained") return "drained";
  if (r.state === "down") return "down";
  if (r.over_limit) return "degraded";
  return "up";
}

function spark(key, rtt) {
  const h = rttHistory.get(key) || [];
  if (rtt != null) h.push(rtt);
  while (h.length > SPARK_POINTS) h.shift();
  rttHistory.set(key, h);
  if (h.length < 2) return "";
  const max = Math.max(...h), min = Math.min(...h), span = max - min || 1;
  const pts = h.map((v, i) => `${(i * 80) / (SPARK_POINTS - 1)},${18 - ((v - min) / span) * 16}`).join(" ");
  return `<svg viewBox="0 0 80 20" aria-label="RTT history"><polyline fill="none" stroke="#4a78c2" stroke-width="1.2" points="${pts}"/></svg>`;
}

function endpointRow(r, e) {
  const p = e.probe;
  const rtt = p && p.rtt_ms != null ? `${p.rtt_ms.toFixed(1)} ms` : "";
  const forced = e.forced ? ` <b>forced ${e.forced.up ? "up" : "down"}</b>` : "";
  const err = p && p.last_error && !p.up ? `<span class="err">${esc(p.last_error)}</span>` : "";
  const key = `${r.zone}/${r.region}/${e.address}`;
  const btn = e.forced
    ? `<button data-act="unforce" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}" data-addr="${esc(e.address)}">release</button>`
    : `<button data-act="force" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}" data-addr="${esc(e.address)}">force…</button>`;
  return `<li><span class="dot ${e.up ? "up" : "down"}"></span><span class="addr">${esc(e.address)}</span>
    <span>${esc(rtt)}${forced} ${err}</span>${spark(key, p && p.rtt_last_ms)}${btn}</li>`;
}

// How far a drain has got: answers already given stay in resolvers' caches until their TTL
// runs out, and only then is the region safe to switch off.
function drainProgress(p) {
  if (!p) return "";
  const expiry = p.cached_answers_expire_at_ms
    ? `last cached answer expire${p.cached_answers_expire_at_ms > Date.now() ? "s" : "d"} ${when(p.cached_answers_expire_at_ms)}`
    : "never answered by this node";
  const state = p.complete ? `<b class="done">safe to switch off</b>` : `<b>still in caches</b>`;
  return `<p class="note drain-progress">${state}: ${expiry}; answers since the drain: ${p.answers_since_drain}</p>`;
}

function card(r) {
  const s = look(r);
  const t = r.traffic;
  const pct = (x) => `${(x * 100).toFixed(0)}%`;
  const drainBtn = r.state === "drained"
    ? `<button data-act="undrain" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}">undrain</button>`
    : `<button class="danger" data-act="drain" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}">drain</button>`;
  const drained = r.drained ? `<p class="note">drained by ${esc(r.drained.by)} at ${when(r.drained.at_ms)}: ${esc(r.drained.reason)}${r.drained.expires_at_ms ? " (until " + when(r.drained.expires_at_ms) + ")" : ""}</p>${drainProgress(r.drain_progress)}` : "";
  return `<article class="card ${s}" data-region="${esc(r.region)}" data-zone="${esc(r.zone)}">
    <h3>${esc(r.region)} <span class="badge ${s}">${s}</span><span class="zone">${esc(r.zone)}</span></h3>
    <div class="stats"><span>check <b>${esc(r.check)}</b></span><span>degradation <b>${r.degradation_ms.toFixed(1)} ms</b></span>
      <span>traffic <b>${pct(t.share_last_minute)}</b> last min, <b>${pct(t.share_total)}</b> since start (${t.answers_total})</span></div>
    <div class="share" title="share of answers, last minute"><div style="width:${pct(t.share_last_minute)}"></div></div>
    <ul class="endpoints">${r.endpoints.map((e) => endpointRow(r, e)).join("")}</ul>
    ${drained}<div class="actions">${drainBtn}</div></article>`;
}

function markers(regions) {
  $("#markers").innerHTML = regions.map((r) => {
    const x = r.location.lon + 180, y = 90 - r.location.lat;
    return `<g class="marker ${look(r)}"><circle cx="${x}" cy="${y}" r="3.2" fill="var(--${look(r)})" stroke="#fff" stroke-width="0.8">
      <title>${esc(r.region)}: ${look(r)}</title></circle>
      <text x="${x + 4.5}" y="${y + 1.5}" font-size="5" fill="#1d2430">${esc(r.region)}</text></g>`;
  }).join("");
}

function rows(sel, list, render) {
  $(sel + " tbody").innerHTML = list.slice().reverse().map(render).join("");
}

// A zone's DNSSEC: its keys, the window of the signatures it makes now, and the next step
// of a key rollover under way.
function dnssecOf(d) {
  if (!d) return "unsigned";
  const at = (t) => when(t * 1000).slice(0, 16) + " UTC";
  const keys = (d.keys || []).map((k) => `${k.tag} ${esc(k.role)}`).join(", ");
  const r = d.rollover;
  const roll = r ? `; ${esc(r.kind)} rollover ${r.old} → ${r.new} at ${esc(r.step)}, next ${esc(r.next_step)} from ${at(r.next_at)}` : "";
  return `${esc(d.algorithm)} keys ${keys}; signatures ${at(d.inception)} to ${at(d.expiration)}; next window ${at(d.next_window)}${roll}`;
}

async function refresh() {
  try {
    const [regions, audit, events, zones] = await Promise.all([api("/regions"), api("/audit?limit=25"),
      api("/events?limit=25"), api("/zones")]);
    markers(regions);
    $("#regions").innerHTML = regions.map(card).join("");
    $("#zones tbody").innerHTML = zones.map((z) => `<tr><td>${esc(z.zone)}</td><td>${z.serial ?? ""}</td>
      <td>${esc(z.steered.join(", "))}</td><td>${dnssecOf(z.dnssec)}</td></tr>`).join("");
    rows("#audit", audit, (e) => `<tr><td>${when(e.at_ms)}</td><td>${esc(e.by)}</td><td>${esc(e.action)}</td>
      <td>${esc([e.zone, e.region, e.endpoint].filter(Boolean).join(" "))}</td><td>${esc(e.reason)}</td></tr>`);
    rows("#events", events, (e) => `<tr><td>${when(e.at_ms)}</td><td>${esc([e.region, e.endpoint].filter(Boolean).join(" "))}</td>
      <td>${esc(e.from)} → ${esc(e.to)}</td><td>${esc(e.reason)}</td></tr>`);
    $("#status").textContent = "updated " + new Date().toLocaleTimeString();
    $("#error").textContent = "";
  } catch (err) {
    $("#status").textContent = "cannot reach the admin API";
    $("#error").textContent = err.message;
  }
}

// A node's place and the degradation it publishes per region: the clients nearest to it are
// steered by these.
function latencyOf(n) {
  const place = n.location ? `${n.location.lat.toFixed(2)}, ${n.location.lon.toFixed(2)}` : "no location";
  const regions = Object.values(n.latency).flatMap((rs) => Object.entries(rs).map(([r, l]) =>
    `${esc(r)} +${l.degradation_ms.toFixed(0)} ms${l.over_limit ? " <strong>over limit</strong>" : ""}`));
  return [esc(place), ...regions].join("<br>");
}

// The cluster panel, only when this node runs in a cluster (GET /cluster answers 404 alone):
// the store's state, every node with its zone hashes, place and measured latency, and which
// node sees each endpoint how, with the rows where nodes disagree marked.
async function refreshCluster() {
  let c;
  try {
    c = await api("/cluster");
  } catch {
    $("#cluster").hidden = true;
    return;
  }
  $("#cluster").hidden = false;
  const store = $("#cluster-store");
  store.textContent = "store " + c.store.state;
  store.className = "badge " + (c.store.state === "up" ? "" : "down");
  $("#cluster-note").textContent = `this node: ${c.node}; quorum ${JSON.stringify(c.quorum)}` +
    (c.zones_differ.length ? `; zone content differs: ${c.zones_differ.join(", ")}` : "") +
    (c.store.state === "up" ? "" : `; serving the last known state since ${when(c.store.since_ms)}`);
  $("#cluster-nodes tbody").innerHTML = c.nodes.map((n) => `<tr><td>${esc(n.node)}</td><td>${when(n.last_seen_ms)}</td>
    <td>${Object.entries(n.zones).map(([z, s]) => `${esc(z)} ${s.serial} <code>${esc(s.hash.slice(0, 8))}</code>`).join("<br>")}</td>
    <td>${esc(n.suspect.join(", "))}</td><td>${latencyOf(n)}</td></tr>`).join("");
  const rowsOut = [];
  for (const [zone, regions] of Object.entries(c.vantage)) {
    for (const [region, endpoints] of Object.entries(regions)) {
      for (const [addr, seen] of Object.entries(endpoints)) {
        const views = Object.entries(seen);
        const split = new Set(views.map(([, up]) => up)).size > 1;
        rowsOut.push(`<tr class="${split ? "split" : ""}"><td>${esc(region)} ${esc(addr)} <span class="muted">${esc(zone)}</span></td>
          <td>${views.map(([node, up]) => `<span class="dot ${up ? "up" : "down"}"></span>${esc(node)}`).join(" ")}</td></tr>`);
      }
    }
  }
  $("#cluster-vantage tbody").innerHTML = rowsOut.join("");
}

// An operator action: drain and force take a reason and an optional expiry (and force a
// state) in the form of the #act dialog; undrain and release take a reason.
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  const { act, zone, region, addr } = b.dataset;
  const what = addr ? `${addr} in ${region}` : region;
  const dialog = $("#act");
  dialog.dataset.act = act;
  dialog.dataset.zone = zone;
  dialog.dataset.region = region;
  dialog.dataset.addr = addr || "";
  $("#act-title").textContent = `${act} ${what}`;
  $("#act-state-row").hidden = act !== "force";
  $("#act-expiry-row").hidden = act !== "drain" && act !== "force";
  $("#act-reason").value = "";
  $("#act-expiry").value = "";
  dialog.showModal();
});

$("#act").addEventListener("close", async () => {
  const dialog = $("#act");
  if (dialog.returnValue !== "ok") return;
  const { act, zone, region, addr } = dialog.dataset;
  const what = addr ? `${addr} in ${region}` : region;
  const base = `/zones/${encodeURIComponent(zone)}/regions/${encodeURIComponent(region)}`;
  const path = addr ? `${base}/endpoints/${encodeURIComponent(addr)}/${act}` : `${base}/${act}`;
  const body = { reason: $("#act-reason").value };
  if (act === "force") body.state = $("#act-state").value;
  if ((act === "drain" || act === "force") && $("#act-expiry").value) body.expires_in = Number($("#act-expiry").value);
  try {
    await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    await refresh();
  } catch (err) {
    $("#error").textContent = `${act} ${what}: ${err.message}`;
  }
});

refresh();
refreshCluster();
setInterval(refresh, POLL_MS);
setInterval(refreshCluster, POLL_MS);
