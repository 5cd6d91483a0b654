// Meridian dashboard: a live stream of server-sent events (/api/v1/stream) brings each view
// whole when it changes, and only that view is drawn again; when the stream drops the page
// polls every 2 s until the browser has reconnected it. Writes send the token from the
// header field and what the operator fills in the action form (reason, expiry, state).
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

// One endpoint: its dot (which keeps its size however long the error beside it), address,
// RTT or the probe's error on a line of its own, the RTT history and the action.
function endpointRow(r, e) {
  const p = e.probe;
  const rtt = p && p.rtt_ms != null ? `${p.rtt_ms.toFixed(1)} ms` : "";
  const forced = e.forced ? `<b>forced ${e.forced.up ? "up" : "down"}</b>` : "";
  const err = p && p.last_error && !p.up ? `<span class="err" title="${esc(p.last_error)}">${esc(p.last_error)}</span>` : "";
  const key = `${r.zone}/${r.region}/${e.address}`;
  const btn = e.forced
    ? `<button data-act="unforce" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}" data-addr="${esc(e.address)}">release</button>`
    : `<button data-act="force" data-zone="${esc(r.zone)}" data-region="${esc(r.region)}" data-addr="${esc(e.address)}">force…</button>`;
  return `<li class="${e.up ? "up" : "down"}"><span class="dot ${e.up ? "up" : "down"}" title="${e.up ? "up" : "down"}"></span>
    <span class="addr">${esc(e.address)}</span><span class="rtt">${esc(rtt)} ${forced}</span>
    <span class="spark">${spark(key, p && p.rtt_last_ms)}</span>${btn}${err}</li>`;
}

// How far a drain has got: answers already given stay in resolvers' caches until their TTL
// runs out, and only then is the region safe to switch off.
function drainProgress(p) {
  if (!p) return "";
  const expiry = p.cached_answers_expire_at_ms
    ? `last cached answer expire${p.cached_answers_expire_at_ms > Date.now() ? "s" : "d"} ${when(p.cached_answers_expire_at_ms)}`
    : "never answered by this node";
  const state = p.complete ? `<b class="done">safe to switch off</b>` : `<b>still in caches</b>`;
  return `<p class="note drain-progress">${state}: ${expiry}; answers since the drain: ${p.answers_since_drain}</p>${clusterDrain(p.cluster)}`;
}

// In a cluster the region is safe only when every nameserver's last answer has expired.
function clusterDrain(c) {
  if (!c) return "";
  const expiry = c.cached_answers_expire_at_ms
    ? `last cached answer of any node expire${c.cached_answers_expire_at_ms > Date.now() ? "s" : "d"} ${when(c.cached_answers_expire_at_ms)} (${esc(c.latest_node)})`
    : "never answered by any node";
  const missing = c.not_reporting.length ? `; not reporting yet: ${c.not_reporting.map(esc).join(", ")}` : "";
  // A node gone (its lease expired) may have answers in caches until its bound.
  const gone = c.departed.length
    ? `; gone, its answers may be cached: ${c.departed.map((d) => `${esc(d.node)} (last seen ${when(d.last_seen_ms)}, until ${when(d.until_ms)})`).join(", ")}`
    : "";
  const state = c.complete ? `<b class="done">cluster: safe to switch off</b>` : `<b>cluster: still in caches</b>`;
  return `<p class="note drain-progress cluster-drain">${state}: ${expiry}; answers since the drain: ${c.answers_since_drain} over ${Object.keys(c.nodes).length} nodes${missing}${gone}</p>`;
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

// Region markers; a label near the map's right edge goes to the left of its dot, so that
// it is never cut off.
function markers(regions) {
  $("#markers").innerHTML = regions.map((r) => {
    const x = r.location.lon + 180, y = Math.min(175, Math.max(5, 90 - r.location.lat));
    const left = x > 300;
    return `<g class="marker ${look(r)}" data-region="${esc(r.region)}"><circle cx="${x}" cy="${y}" r="3.2" fill="var(--${look(r)})" stroke="#fff" stroke-width="0.8">
      <title>${esc(r.region)}: ${look(r)}</title></circle>
      <text x="${left ? x - 4.5 : x + 4.5}" y="${y + 1.5}" text-anchor="${left ? "end" : "start"}" font-size="5" fill="#1d2430"
        stroke="#fff" stroke-width="1.2" paint-order="stroke">${esc(r.region)}</text></g>`;
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

// Every view of the stream and how it is drawn; the poll fetches the same views.
const views = {
  regions: { path: "/regions", draw: drawRegions },
  zones: { path: "/zones", draw: drawZones },
  steering: { path: "/steering", draw: drawSteering },
  events: { path: "/events?limit=25", draw: drawEvents },
  audit: { path: "/audit?limit=25", draw: drawAudit },
  traffic: { path: "/traffic", draw: drawTraffic },
};
let lastRegions = [];

function drawRegions(regions) {
  lastRegions = regions;
  markers(regions);
  $("#regions").innerHTML = regions.map(card).join("");
}

function drawZones(zones) {
  $("#zones tbody").innerHTML = zones.map((z) => `<tr><td>${esc(z.zone)}</td><td>${z.serial ?? ""}</td>
    <td>${esc(z.steered.join(", "))}</td><td>${dnssecOf(z.dnssec)}</td></tr>`).join("");
}

function drawAudit(audit) {
  rows("#audit", audit, (e) => `<tr><td>${when(e.at_ms)}</td><td>${esc(e.by)}</td><td>${esc(e.action)}</td>
    <td>${esc([e.zone, e.region, e.endpoint].filter(Boolean).join(" "))}</td><td>${esc(e.reason)}</td></tr>`);
}

function drawEvents(events) {
  rows("#events", events, (e) => `<tr><td>${when(e.at_ms)}</td><td>${esc([e.region, e.endpoint].filter(Boolean).join(" "))}</td>
    <td>${esc(e.from)} → ${esc(e.to)}</td><td>${esc(e.reason)}</td></tr>`);
}

// A colour per region name, the same on the map's flows and in the rate chart.
const PALETTE = ["#4a78c2", "#c26a3a", "#3f9a5c", "#8a5ac2", "#b8932a", "#2f9fb0", "#c24a8a", "#6b7280"];
const regionColours = new Map();
function colourOf(region) {
  if (!regionColours.has(region)) regionColours.set(region, PALETTE[regionColours.size % PALETTE.length]);
  return regionColours.get(region);
}

// Steered names: TTL and trouble, fallback, and the regions in rank order per city.
function drawSteering(names) {
  const verdict = { chosen: "answers", farther: "farther", degraded: "degraded, skipped", down: "down, skipped",
    drained: "drained, skipped", "no-endpoints": "no endpoints" };
  $("#steering").innerHTML = names.map((n) => {
    const ttl = n.in_trouble ? `<b class="trouble">TTL ${n.ttl_now} s (trouble; normally ${n.ttl} s)</b>` : `TTL ${n.ttl_now} s`;
    const fb = n.fallback === "all" ? "every region's endpoints" : `static ${esc((n.fallback.static || []).map((e) => e.address ?? e).join(", "))}`;
    const fallback = n.fallback_answering ? `<b class="fallback">answering its fallback (${fb})</b>` : `fallback: ${fb}, not in use`;
    const places = n.places.map((p) => `<tr><th>${esc(p.place)}</th>${p.ranking.map((r, i) =>
      `<td class="rank ${esc(r.verdict)}" title="${esc(verdict[r.verdict] || r.verdict)}${r.estimated_rtt_ms != null ? `, ~${r.estimated_rtt_ms.toFixed(0)} ms` : ""}">
        <span class="n">${i + 1}</span> ${esc(r.region)}<span class="why">${esc(verdict[r.verdict] || r.verdict)}</span></td>`).join("")}</tr>`).join("");
    return `<article class="name" data-name="${esc(n.name)}"><h3>${esc(n.name)} <span class="muted">${esc(n.policy)}</span></h3>
      <p class="note">${ttl}; ${fallback}</p><table class="ranks"><tbody>${places}</tbody></table></article>`;
  }).join("");
  const down = names.filter((n) => n.fallback_answering);
  const banner = $("#fallback-banner");
  banner.hidden = down.length === 0;
  banner.textContent = down.length ? `Every region down: ${down.map((n) => n.name).join(", ")} answer${down.length === 1 ? "s" : ""} the fallback` : "";
  const select = $("#route-name");
  const chosen = select.value;
  select.innerHTML = names.map((n) => `<option>${esc(n.name)}</option>`).join("");
  if (chosen) select.value = chosen;
  route();
}

// Where clients went: a curve from each client area (a grid cell) to the region that
// answered it, as wide as its share of the largest flow; and the answers per region over
// the last hour.
function drawTraffic(t) {
  const where = new Map(lastRegions.map((r) => [`${r.zone}/${r.region}`, r.location]));
  const flows = t.flows.flows.filter((f) => f.cell && where.has(`${f.zone}/${f.region}`)).slice(0, 200);
  const max = Math.max(1, ...flows.map((f) => f.queries));
  const half = t.flows.cell_degrees / 2;
  $("#flows").innerHTML = flows.map((f) => {
    const to = where.get(`${f.zone}/${f.region}`);
    const x1 = f.cell.lon + half + 180, y1 = 90 - (f.cell.lat + half);
    const x2 = to.lon + 180, y2 = 90 - to.lat;
    const mx = (x1 + x2) / 2, my = Math.min(y1, y2) - Math.abs(x2 - x1) / 6 - 2;
    const w = (0.35 + 2.2 * Math.sqrt(f.queries / max)).toFixed(2);
    return `<g class="flow" data-region="${esc(f.region)}"><path d="M${x1},${y1} Q${mx},${my} ${x2},${y2}" fill="none"
      stroke="${colourOf(f.region)}" stroke-opacity="0.55" stroke-width="${w}" stroke-linecap="round"/>
      <circle cx="${x1}" cy="${y1}" r="0.9" fill="${colourOf(f.region)}"/>
      <title>${esc(f.cell.country || "")} ${f.cell.lat}°, ${f.cell.lon}° → ${esc(f.region)}: ${f.queries} answers</title></g>`;
  }).join("");
  const total = t.flows.flows.reduce((n, f) => n + f.queries, 0);
  $("#flows-note").textContent = total ? `curves: where ${total} answers of the last ${t.flows.window_minutes} min sent clients` : "";
  drawRates(t.rates);
}

function drawRates(r) {
  const W = 600, H = 150, step = r.step_seconds;
  const series = r.series.filter((s) => s.counts.length > 0);
  // An hour wide, the newest step at the right edge, however long the server has run.
  const n = Math.max(Math.round(3600 / step), ...series.map((s) => s.counts.length));
  const max = Math.max(1, ...series.flatMap((s) => s.counts)) / step;
  const x = (i, len) => ((n - len + i) * W) / (n - 1);
  const y = (c) => H - (c / step / max) * (H - 8);
  const lines = series.map((s) => `<polyline class="rate" data-region="${esc(s.region)}" fill="none" stroke="${colourOf(s.region)}"
    stroke-width="1.6" points="${s.counts.map((c, i) => `${x(i, s.counts.length).toFixed(1)},${y(c).toFixed(1)}`).join(" ")}"/>
    <circle cx="${x(s.counts.length - 1, s.counts.length).toFixed(1)}" cy="${y(s.counts[s.counts.length - 1]).toFixed(1)}" r="3"
      fill="${colourOf(s.region)}"/>`).join("");
  const minutes = Math.round((n * step) / 60);
  $("#rates").innerHTML = `<svg viewBox="-34 -4 ${W + 40} ${H + 22}" role="img" aria-label="answers per second per region">
    <line x1="0" y1="${H}" x2="${W}" y2="${H}" stroke="#c7cdd8"/><line x1="0" y1="8" x2="${W}" y2="8" stroke="#eef0f4"/>
    <text x="-4" y="11" text-anchor="end">${max.toFixed(max < 10 ? 1 : 0)}/s</text><text x="-4" y="${H}" text-anchor="end">0</text>
    <text x="0" y="${H + 15}">${minutes} min ago</text><text x="${W / 2}" y="${H + 15}" text-anchor="middle">${minutes / 2} min ago</text><text x="${W}" y="${H + 15}" text-anchor="end">now</text>${lines}</svg>
    <p class="legend">${series.map((s) => `<span class="swatch" style="background:${colourOf(s.region)}"></span>${esc(s.region)}
      <span class="muted">${(s.counts[s.counts.length - 1] / step).toFixed(1)}/s</span>`).join(" ")}</p>`;
}

// The live stream, and the poll that stands in while it is down.
let pollTimer = null;
let stream = null;

async function poll() {
  try {
    const got = await Promise.all(Object.values(views).map((v) => api(v.path)));
    Object.values(views).forEach((v, i) => v.draw(got[i]));
    status(`polling (live stream down), updated ${new Date().toLocaleTimeString()}`);
    $("#error").textContent = "";
  } catch (err) {
    status("cannot reach the admin API");
    $("#error").textContent = err.message;
  }
}

function status(text) {
  $("#status").textContent = text;
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

function connect() {
  stream = new EventSource("/api/v1/stream");
  stream.onopen = () => {
    stopPolling();
    status("live");
    $("#error").textContent = "";
  };
  // The browser reconnects by itself (it waits a few seconds between tries); meanwhile, and
  // if the server refuses the stream (reads that need a token), the page polls.
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, POLL_MS * 2);
    startPolling();
  };
  for (const [name, v] of Object.entries(views)) {
    stream.addEventListener(name, (ev) => {
      v.draw(JSON.parse(ev.data));
      if (!pollTimer) status(`live, updated ${new Date().toLocaleTimeString()}`);
    });
  }
}

// Route a client: the decision DNS makes for it now, as `meridian route` prints it; asked
// again whenever the steering view changes, so that it stays true.
let routed = null;
$("#route").addEventListener("submit", (ev) => {
  ev.preventDefault();
  routed = { name: $("#route-name").value, client: $("#route-client").value.trim() };
  route();
});

async function route() {
  if (!routed) return;
  const { name, client } = routed;
  const out = $("#route-out");
  try {
    const r = await api(`/route?name=${encodeURIComponent(name)}&client=${encodeURIComponent(client)}`);
    const verdict = { chosen: "answers", farther: "farther", degraded: "degraded past the limit", down: "down",
      drained: "drained", "no-endpoints": "no endpoints of this family" };
    const loc = r.location;
    const place = loc.point ? `${loc.country || "??"} at ${loc.point.lat.toFixed(2)}, ${loc.point.lon.toFixed(2)}` : "location unknown";
    const fam = (label, a) => `<h4>${label}: ${a.chosen ? `<b>${esc(a.chosen)}</b>` : "no region"} <span class="muted">(${esc(a.basis)}, TTL ${a.ttl} s, ECS scope /${a.scope})</span></h4>
      <ol>${a.candidates.map((c) => `<li class="${esc(c.verdict)}">${esc(c.region)}: ${esc(verdict[c.verdict] || c.verdict)}${c.distance_km != null ? `, ${c.distance_km.toFixed(0)} km` : ""}${c.estimated_rtt_ms != null ? `, ~${c.estimated_rtt_ms.toFixed(0)} ms` : ""}${c.degradation_ms ? `, +${c.degradation_ms.toFixed(0)} ms degradation` : ""}</li>`).join("")}</ol>
      <p class="note">answer: ${a.addresses.length ? esc(a.addresses.join(", ")) : "NODATA"}</p>`;
    out.innerHTML = `<p class="note">${esc(r.name)} for ${esc(r.client.network)} → ${esc(place)} (GeoIP network ${esc(loc.network)}),
      as of ${new Date().toLocaleTimeString()}</p>${fam("A", r.a)}${fam("AAAA", r.aaaa)}`;
  } catch (err) {
    out.innerHTML = `<p class="error">${esc(err.message)}</p>`;
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

// The latency map (GET /latency): per region, the client networks whose lowest measured RTT
// is to it, grouped by country; those of them the distance model would send elsewhere; and
// how many samples stand behind its estimates.
async function refreshLatency() {
  let m;
  try {
    // The group estimates only to count them: the count alone.
    m = await api("/latency?groups=0");
  } catch (err) {
    $("#latency-note").textContent = `cannot read the latency map: ${err.message}`;
    return;
  }
  const byRegion = new Map();
  const row = (r) => {
    if (!byRegion.has(r)) byRegion.set(r, { best: new Map(), differ: [], samples: 0, networks: 0 });
    return byRegion.get(r);
  };
  for (const n of m.listed) {
    for (const e of n.regions) {
      const x = row(e.region);
      x.samples += e.samples;
      x.networks += 1;
    }
    if (!n.measured_best) continue;
    const best = row(n.measured_best);
    const area = n.country || "unlocated";
    best.best.set(area, [...(best.best.get(area) || []), n.network]);
    if (n.nearest && n.nearest !== n.measured_best) {
      const rtt = (r) => n.regions.find((e) => e.region === r);
      best.differ.push({ n, here: rtt(n.measured_best), there: rtt(n.nearest) });
    }
  }
  const ms = (e) => (e ? `${e.rtt_ms.toFixed(0)} ms` : "?");
  const rows = [...byRegion.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([region, x]) => {
    const best = [...x.best.entries()].sort((a, b) => b[1].length - a[1].length)
      .map(([area, nets]) => `<span class="area" title="${esc(nets.join(", "))}">${esc(area)} ×${nets.length}</span>`).join(" ");
    const differ = x.differ.map(({ n, here, there }) =>
      `<div class="differ"><code>${esc(n.network)}</code> ${esc(n.country || "")}: ${ms(here)} here, ${ms(there)} at ${esc(n.nearest)} (nearest)</div>`).join("");
    return `<tr data-region="${esc(region)}"><td><span class="swatch" style="background:${colourOf(region)}"></span>${esc(region)}</td>
      <td>${best || `<span class="muted">none</span>`}</td><td>${differ || `<span class="muted">none</span>`}</td>
      <td>${x.samples.toFixed(0)} <span class="muted">over ${x.networks} network${x.networks === 1 ? "" : "s"}</span></td></tr>`;
  });
  $("#latency tbody").innerHTML = rows.join("") ||
    `<tr><td colspan="4" class="muted">no measured client latency yet (see docs/latency-map.md)</td></tr>`;
  $("#latency-note").textContent = `${m.networks} client networks measured well enough to steer by` +
    (m.more ? `; the first ${m.listed.length} shown` : "") +
    `; half-life ${m.half_life_secs} s, ${m.group_estimates} ASN and country estimates`;
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
    // The stream brings the change; while it is down, the poll does.
    if (pollTimer) await poll();
  } catch (err) {
    $("#error").textContent = `${act} ${what}: ${err.message}`;
  }
});

connect();
refreshCluster();
setInterval(refreshCluster, POLL_MS);
refreshLatency();
// The map is published every few seconds at most: a slower look is enough.
setInterval(refreshLatency, POLL_MS * 5);
