// Meridian latency beacon: times a tiny object from each region with Resource Timing and
// posts the round trips to the Meridian admin API that served this script.
//
// <script async src="https://meridian-admin.example.net/beacon.js"
//   data-token="FEED-TOKEN"
//   data-targets='{"us-east": "https://us-east.example.net/meridian-pixel.gif",
//                  "eu-west": "https://eu-west.example.net/meridian-pixel.gif"}'></script>
//
// Each object must send `Timing-Allow-Origin: *` (else the browser hides its timings) and
// may be cached by no one (a query string changes on every fetch). The client's address is
// the connection's, as the admin listener sees it. See docs/latency-map.md.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.performance || !navigator.sendBeacon) return;
  var token = script.getAttribute("data-token");
  var targets;
  try {
    targets = JSON.parse(script.getAttribute("data-targets") || "{}");
  } catch (e) {
    return;
  }
  var endpoint = new URL("/api/v1/rtt", script.src);
  endpoint.searchParams.set("token", token || "");

  // One round trip from a resource's timing: the TCP handshake when this fetch opened a
  // connection (up to the TLS start), else the wait for the first byte.
  function sample(entry) {
    if (entry.connectEnd > entry.connectStart && entry.connectStart > 0) {
      var end = entry.secureConnectionStart > 0 ? entry.secureConnectionStart : entry.connectEnd;
      return { kind: "tcp", rtt: end - entry.connectStart };
    }
    if (entry.responseStart > entry.requestStart && entry.requestStart > 0) {
      return { kind: "ttfb", rtt: entry.responseStart - entry.requestStart };
    }
    return null;
  }

  function time(region, url) {
    var u = new URL(url);
    u.searchParams.set("meridian", Math.random().toString(36).slice(2));
    var name = u.toString();
    return fetch(name, { mode: "no-cors", cache: "no-store", credentials: "omit" })
      .then(function () {
        var entries = performance.getEntriesByName(name);
        var s = entries.length ? sample(entries[entries.length - 1]) : null;
        return s && s.rtt > 0
          ? JSON.stringify({ region: region, rtt_ms: s.rtt, kind: s.kind, time: Date.now() / 1000 })
          : null;
      })
      .catch(function () {
        return null;
      });
  }

  function run() {
    var regions = Object.keys(targets);
    Promise.all(regions.map(function (r) { return time(r, targets[r]); })).then(function (lines) {
      var body = lines.filter(Boolean).join("\n");
      if (body) {
        navigator.sendBeacon(endpoint.toString(), new Blob([body + "\n"], { type: "text/plain" }));
      }
    });
  }

  // After the page's own load, so the beacon never competes with it.
  if (document.readyState === "complete") {
    setTimeout(run, 1000);
  } else {
    window.addEventListener("load", function () { setTimeout(run, 1000); });
  }
})();
