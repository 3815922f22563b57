/* console.js: the kinesd web console. A static page that calls the ordinary Kinesis API of
 * the server that served it (POST / with X-Amz-Target and application/x-amz-json-1.1), signed
 * with SigV4 (sigv4.js). Views: the streams list (#/streams), one stream (#/stream/NAME:
 * summary, shard map, throughput, live tail, put form, delete) and the taxi hot-spot heat map
 * (#/taxi/STREAM). Every poller belongs to the current view and stops when the view changes;
 * everything kept in memory has a bound (tail lines, chart points, windows). */
"use strict";

const TARGET = "Kinesis_20131202.";
const TAIL_MAX = 200;          // records kept in the live tail
const CHART_POINTS = 60;       // seconds of throughput history
const CHART_SHARDS = 16;       // open shards sampled for throughput
const TAXI_WINDOWS = 120;      // hot-spot windows kept
const AUTH_ERRORS = new Set(["UnrecognizedClientException", "InvalidSignatureException",
  "IncompleteSignatureException", "MissingAuthenticationTokenException", "AccessDeniedException",
  "ExpiredTokenException", "InvalidClientTokenId"]);

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const svg = ["svg", "rect", "line", "polyline", "polygon", "path", "text", "g", "title", "circle"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.setAttribute("class", v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- credentials and the API

const PLACEHOLDER = { accessKeyId: "console", secretAccessKey: "console", sessionToken: "", region: "us-east-1" };
function loadCreds() {
  try { return Object.assign({}, PLACEHOLDER, JSON.parse(localStorage.getItem("kinesd.creds") || "{}")); }
  catch (e) { return Object.assign({}, PLACEHOLDER); }
}
let creds = loadCreds();

function showCreds() {
  $("creds-key").value = creds.accessKeyId;
  $("creds-secret").value = creds.secretAccessKey;
  $("creds-token").value = creds.sessionToken || "";
  $("creds-region").value = creds.region;
  if (!$("creds").open) $("creds").showModal();
}
function whoami() {
  $("whoami").textContent = `${creds.accessKeyId} · ${creds.region} · SigV4 via ${SigV4.webcrypto ? "WebCrypto" : "JavaScript SHA-256"}`;
}

class ApiError extends Error {
  constructor(type, message, status) { super(`${type}: ${message}`); this.type = type; this.status = status; }
}

function banner(text) {
  const b = $("banner");
  b.textContent = text || "";
  b.hidden = !text;
}

async function api(op, payload) {
  const body = JSON.stringify(payload || {});
  const headers = await SigV4.sign({ host: location.host, region: creds.region, service: "kinesis",
    accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
  { "content-type": "application/x-amz-json-1.1", "x-amz-target": TARGET + op }, body);
  let r;
  try {
    r = await fetch("/", { method: "POST", headers, body, cache: "no-store" });
  } catch (e) {
    throw new ApiError("NetworkError", "the server cannot be reached", 0);
  }
  const text = await r.text();
  let j = {};
  try { j = text ? JSON.parse(text) : {}; } catch (e) { j = { message: text }; }
  if (!r.ok) {
    const type = String(j.__type || "HTTP" + r.status).split("#").pop();
    const err = new ApiError(type, j.message || j.Message || "", r.status);
    if (AUTH_ERRORS.has(type)) {
      banner(`The server refused the signature (${type}). Enter credentials it accepts.`);
      showCreds();
    }
    throw err;
  }
  return j;
}

const b64 = {
  decode(s) { const bin = atob(s); const u = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i); return u; },
  encode(u) { let s = ""; for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000)); return btoa(s); },
};
const utf8 = new TextDecoder("utf-8");

async function listAllShards(stream) {
  let out = [], r = await api("ListShards", { StreamName: stream });
  out = out.concat(r.Shards || []);
  for (let i = 0; r.NextToken && i < 100; i++) {
    r = await api("ListShards", { NextToken: r.NextToken });
    out = out.concat(r.Shards || []);
  }
  return out;
}
const isOpen = (s) => !(s.SequenceNumberRange && s.SequenceNumberRange.EndingSequenceNumber);

// ---------------------------------------------------------------- views and their pollers

let current = null; // { alive } of the view on screen

function loop(run, ms, fn) {
  (async () => {
    while (run.alive) {
      try { await fn(); } catch (e) { if (run.onError) run.onError(e); }
      await sleep(ms);
    }
  })();
}

function route() {
  if (current) current.alive = false;
  const run = (current = { alive: true });
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  for (const a of document.querySelectorAll("header nav a")) a.classList.remove("active");
  if (parts[0] === "stream" && parts[1]) streamView(run, parts[1]);
  else if (parts[0] === "taxi") taxiView(run, parts[1] || localStorage.getItem("kinesd.taxi") || "taxi-hotspots");
  else streamsView(run);
}

// ---- streams

function streamsView(run) {
  $("view-streams").hidden = false;
  $("nav-streams").classList.add("active");
  const cache = new Map();
  run.onError = (e) => { $("streams-status").textContent = e.message; };
  loop(run, 3000, async () => {
    let names = [], r = await api("ListStreams", { Limit: 100 });
    names = names.concat(r.StreamNames || []);
    for (let i = 0; r.HasMoreStreams && r.NextToken && i < 10; i++) {
      r = await api("ListStreams", { Limit: 100, NextToken: r.NextToken });
      names = names.concat(r.StreamNames || []);
    }
    const rows = [];
    for (const name of names.slice(0, 200)) {
      if (!run.alive) return;
      try {
        cache.set(name, (await api("DescribeStreamSummary", { StreamName: name })).StreamDescriptionSummary);
      } catch (e) {
        if (e.type === "ResourceNotFoundException") { cache.delete(name); continue; }
      }
      const d = cache.get(name);
      if (!d) continue;
      rows.push(el("tr", { "data-stream": name },
        el("td", {}, el("a", { href: "#/stream/" + encodeURIComponent(name), "data-stream": name }, name)),
        el("td", {}, el("span", { class: "badge " + d.StreamStatus }, d.StreamStatus)),
        el("td", {}, (d.StreamModeDetails || {}).StreamMode || "PROVISIONED"),
        el("td", {}, d.OpenShardCount),
        el("td", {}, d.RetentionPeriodHours + " h"),
        el("td", {}, d.EncryptionType || "NONE"),
        el("td", {}, d.ConsumerCount || 0),
        el("td", {}, d.StreamCreationTimestamp ? new Date(d.StreamCreationTimestamp * 1000).toLocaleString() : "")));
    }
    if (!run.alive) return;
    $("streams-table").tBodies[0].replaceChildren(...rows);
    $("streams-status").textContent = `${names.length} stream${names.length === 1 ? "" : "s"} · ${new Date().toLocaleTimeString()}`;
  });
}

// ---- one stream

function streamView(run, name) {
  $("view-stream").hidden = false;
  $("stream-name").textContent = name;
  $("tail").replaceChildren();
  $("put-result").textContent = "";
  $("delete-result").textContent = "";
  $("delete-confirm").hidden = true;
  run.stream = name;
  run.onError = (e) => {
    if (e.type === "ResourceNotFoundException") $("stream-status").textContent = "not found";
  };
  let shardsKey = "";
  loop(run, 3000, async () => {
    const d = (await api("DescribeStreamSummary", { StreamName: name })).StreamDescriptionSummary;
    if (!run.alive) return;
    $("stream-status").textContent = d.StreamStatus;
    $("stream-status").className = "badge " + d.StreamStatus;
    const kv = [["ARN", d.StreamARN], ["Mode", (d.StreamModeDetails || {}).StreamMode || "PROVISIONED"],
      ["Open shards", d.OpenShardCount], ["Retention", d.RetentionPeriodHours + " h"],
      ["Encryption", d.EncryptionType || "NONE"], ["Consumers", d.ConsumerCount || 0],
      ["Created", d.StreamCreationTimestamp ? new Date(d.StreamCreationTimestamp * 1000).toLocaleString() : ""]];
    $("stream-summary").replaceChildren(...kv.map(([k, v]) => el("div", {}, el("span", {}, k), v)));
    const shards = await listAllShards(name);
    const key = shards.map((s) => s.ShardId + (isOpen(s) ? "o" : "c")).join(",");
    if (key !== shardsKey && run.alive) {
      shardsKey = key;
      run.shards = shards;
      drawShardMap(shards);
      fillTailShards(run, shards);
    }
  });
  throughput(run, name);
}

function hashFraction(s) { return Number((BigInt(s) * 1000000n) / (1n << 128n)) / 1000000; }

function drawShardMap(shards) {
  const byId = new Map(shards.map((s) => [s.ShardId, s]));
  const depth = new Map();
  const depthOf = (s, guard = 0) => {
    if (depth.has(s.ShardId)) return depth.get(s.ShardId);
    let d = 0;
    for (const p of [s.ParentShardId, s.AdjacentParentShardId]) {
      if (p && byId.has(p) && guard < 64) d = Math.max(d, depthOf(byId.get(p), guard + 1) + 1);
    }
    depth.set(s.ShardId, d);
    return d;
  };
  shards.forEach((s) => depthOf(s));
  const rows = Math.max(...depth.values(), 0) + 1, W = 800, rowH = 34, gap = 14, H = rows * (rowH + gap) + 6;
  const svg = $("shardmap");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.style.height = Math.min(420, H + 4) + "px";
  const pos = new Map();
  const items = [];
  for (const s of shards) {
    const x0 = hashFraction(s.HashKeyRange.StartingHashKey) * W, x1 = hashFraction(s.HashKeyRange.EndingHashKey) * W;
    const y = 3 + depth.get(s.ShardId) * (rowH + gap);
    pos.set(s.ShardId, { x: (x0 + x1) / 2, top: y, bottom: y + rowH });
    const open = isOpen(s);
    items.push(el("g", { class: "shard", "data-shard": s.ShardId },
      el("rect", { x: x0 + 1, y, width: Math.max(1, x1 - x0 - 2), height: rowH, rx: 3,
        fill: open ? "#48bb78" : "#cbd5e0", stroke: open ? "#2f855a" : "#a0aec0" }),
      x1 - x0 > 46 ? el("text", { x: (x0 + x1) / 2, y: y + rowH / 2 + 4, "text-anchor": "middle", "font-size": 11,
        fill: open ? "#fff" : "#4a5568" }, "#" + parseInt(s.ShardId.replace(/^shardId-/, ""), 10)) : null,
      el("title", {}, `${s.ShardId} (${open ? "open" : "closed"})\nhash ${s.HashKeyRange.StartingHashKey} .. ` +
        `${s.HashKeyRange.EndingHashKey}\nsequence ${s.SequenceNumberRange.StartingSequenceNumber}` +
        (open ? "" : ` .. ${s.SequenceNumberRange.EndingSequenceNumber}`) +
        (s.ParentShardId ? `\nparent ${s.ParentShardId}` : "") + (s.AdjacentParentShardId ? `, ${s.AdjacentParentShardId}` : ""))));
  }
  const links = [];
  for (const s of shards) {
    for (const p of [s.ParentShardId, s.AdjacentParentShardId]) {
      if (p && pos.has(p)) {
        const a = pos.get(p), b = pos.get(s.ShardId);
        links.push(el("line", { x1: a.x, y1: a.bottom, x2: b.x, y2: b.top, stroke: "#718096", "stroke-width": 1.2 }));
      }
    }
  }
  svg.replaceChildren(...links, ...items);
  const open = shards.filter(isOpen).length;
  $("shard-legend").textContent = `${shards.length} shards, ${open} open (green), ${shards.length - open} closed (grey); hover for ranges and lineage`;
}

// Throughput: sample every open shard (up to CHART_SHARDS) from LATEST once a second.
function throughput(run, name) {
  const pts = [];
  const its = new Map();
  $("tp-note").textContent = "records/s and KiB/s read from the shards' tips";
  loop(run, 1000, async () => {
    const open = (run.shards || []).filter(isOpen).slice(0, CHART_SHARDS);
    let recs = 0, bytes = 0;
    for (const s of open) {
      if (!run.alive) return;
      try {
        if (!its.has(s.ShardId)) {
          its.set(s.ShardId, (await api("GetShardIterator", { StreamName: name, ShardId: s.ShardId, ShardIteratorType: "LATEST" })).ShardIterator);
          continue;
        }
        const r = await api("GetRecords", { ShardIterator: its.get(s.ShardId), Limit: 10000 });
        for (const rec of r.Records) { recs++; bytes += Math.floor(rec.Data.length * 3 / 4) + rec.PartitionKey.length; }
        if (r.NextShardIterator) its.set(s.ShardId, r.NextShardIterator); else its.delete(s.ShardId);
      } catch (e) {
        its.delete(s.ShardId);
      }
    }
    for (const id of [...its.keys()]) if (!open.some((s) => s.ShardId === id)) its.delete(id);
    pts.push({ t: Date.now(), recs, kib: bytes / 1024 });
    while (pts.length > CHART_POINTS) pts.shift();
    drawChart(pts, open.length, (run.shards || []).filter(isOpen).length);
  });
}

function drawChart(pts, sampled, open) {
  const W = 800, H = 160, L = 44, B = 20;
  const maxR = Math.max(1, ...pts.map((p) => p.recs)), maxK = Math.max(1, ...pts.map((p) => p.kib));
  const x = (i) => L + (i + CHART_POINTS - pts.length) * (W - L - 8) / (CHART_POINTS - 1);
  const line = (vals, max, color, dash) => el("polyline", { fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash,
    points: vals.map((v, i) => `${x(i).toFixed(1)},${(H - B - v / max * (H - B - 10)).toFixed(1)}`).join(" ") });
  const axis = [el("line", { x1: L, y1: H - B, x2: W - 8, y2: H - B, stroke: "#cbd5e0" }),
    el("text", { x: 4, y: 16, "font-size": 11, fill: "#2b6cb0" }, `${maxR} rec/s`),
    el("text", { x: 4, y: 30, "font-size": 11, fill: "#dd6b20" }, `${maxK.toFixed(1)} KiB/s`),
    el("text", { x: L, y: H - 4, "font-size": 11, fill: "#718096" }, "-60 s"),
    el("text", { x: W - 30, y: H - 4, "font-size": 11, fill: "#718096" }, "now")];
  $("throughput").replaceChildren(...axis, line(pts.map((p) => p.recs), maxR, "#2b6cb0"), line(pts.map((p) => p.kib), maxK, "#dd6b20", "5 3"));
  const last = pts[pts.length - 1] || { recs: 0, kib: 0 };
  $("tp-legend").textContent = `now ${last.recs} records/s, ${last.kib.toFixed(1)} KiB/s` +
    (sampled < open ? ` (sampling ${sampled} of ${open} open shards)` : ` over ${open} open shard${open === 1 ? "" : "s"}`);
}

// ---- live tail

function fillTailShards(run, shards) {
  const sel = $("tail-shard");
  const keep = sel.value;
  sel.replaceChildren(...shards.map((s) => el("option", { value: s.ShardId }, s.ShardId + (isOpen(s) ? "" : " (closed)"))));
  if (shards.some((s) => s.ShardId === keep)) sel.value = keep;
  else if (shards.some(isOpen)) sel.value = shards.find(isOpen).ShardId;
  if (!run.tail || run.tail.shard !== sel.value) startTail(run);
}

function renderData(bytes, fmt) {
  if (fmt === "hex") {
    const lines = [];
    for (let o = 0; o < bytes.length && o < 4096; o += 16) {
      const row = bytes.subarray(o, o + 16);
      const hx = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const asc = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(`${o.toString(16).padStart(6, "0")}  ${hx.padEnd(47)}  ${asc}`);
    }
    if (bytes.length > 4096) lines.push(`… ${bytes.length - 4096} more bytes`);
    return lines.join("\n");
  }
  const text = utf8.decode(bytes);
  if (fmt === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text + "\n(not JSON)"; }
  }
  return text;
}

function renderTail(run) {
  const fmt = $("tail-format").value;
  const items = run.tail.records.map((r) => el("li", { "data-seq": r.SequenceNumber },
    el("div", { class: "meta" }, `${new Date(r.ApproximateArrivalTimestamp * 1000).toLocaleTimeString()}  key ${r.PartitionKey}  ` +
      `seq …${r.SequenceNumber.slice(-12)}  ${r.bytes.length} B`),
    el("pre", {}, renderData(r.bytes, fmt))));
  $("tail").replaceChildren(...items.reverse());
}

function startTail(run) {
  if (run.tail) run.tail.alive = false;
  const shard = $("tail-shard").value;
  if (!shard) return;
  const tail = (run.tail = { alive: true, shard, records: [] });
  const from = $("tail-from").value;
  $("tail").replaceChildren();
  $("tail-status").textContent = "starting…";
  (async () => {
    let it = null;
    while (run.alive && tail.alive) {
      try {
        if (!it) it = (await api("GetShardIterator", { StreamName: run.stream, ShardId: shard, ShardIteratorType: from })).ShardIterator;
        const r = await api("GetRecords", { ShardIterator: it, Limit: 500 });
        if (!run.alive || !tail.alive) return;
        for (const rec of r.Records) {
          rec.bytes = b64.decode(rec.Data);
          tail.records.push(rec);
        }
        while (tail.records.length > TAIL_MAX) tail.records.shift();
        if (r.Records.length) renderTail(run);
        if (!r.NextShardIterator) {
          const kids = (r.ChildShards || []).map((c) => c.ShardId).join(", ");
          $("tail-status").textContent = `shard closed and read to its end${kids ? "; children: " + kids : ""}`;
          return;
        }
        it = r.NextShardIterator;
        $("tail-status").textContent = `following · ${tail.records.length} record${tail.records.length === 1 ? "" : "s"} · ${r.MillisBehindLatest} ms behind`;
        $("tail-status").dataset.state = "following";
        await sleep(r.MillisBehindLatest > 0 ? 250 : 1000);
      } catch (e) {
        $("tail-status").textContent = e.message;
        if (e.type === "ExpiredIteratorException") it = null;
        await sleep(1000);
      }
    }
  })();
}

// ---------------------------------------------------------------- taxi heat map

const GH = "0123456789bcdefghjkmnpqrstuvwxyz";
function geohashBounds(cell) {
  let latLo = -90, latHi = 90, lonLo = -180, lonHi = 180, even = true;
  for (const c of cell) {
    const v = GH.indexOf(c);
    if (v < 0) return null;
    for (let s = 4; s >= 0; s--) {
      const bit = (v >> s) & 1;
      if (even) { const m = (lonLo + lonHi) / 2; if (bit) lonLo = m; else lonHi = m; }
      else { const m = (latLo + latHi) / 2; if (bit) latLo = m; else latHi = m; }
      even = !even;
    }
  }
  return { latLo, latHi, lonLo, lonHi };
}

const MAP_W = 600, MAP_H = 580;
function proj(lat, lon) {
  const b = NYC.box;
  return [(lon - b.lonMin) / (b.lonMax - b.lonMin) * MAP_W, (b.latMax - lat) / (b.latMax - b.latMin) * MAP_H];
}

function taxiView(run, stream) {
  $("view-taxi").hidden = false;
  $("nav-taxi").classList.add("active");
  $("taxi-stream").value = stream;
  localStorage.setItem("kinesd.taxi", stream);
  const windows = new Map(); // start -> {start, window, trips, parts, seen:Set, cells:[]}
  const its = new Map();
  const seen = new Set();
  run.taxi = { shown: null };
  drawHeat(null);
  run.onError = (e) => {
    $("taxi-status").textContent = e.type === "ResourceNotFoundException" ? `stream ${stream} does not exist (yet)` : e.message;
  };
  const show = (start) => { run.taxi.shown = start; drawHeat(windows.get(start)); };
  run.taxi.step = (d) => {
    const keys = [...windows.keys()].sort((a, b) => a - b);
    const i = keys.indexOf(run.taxi.shown);
    if (i >= 0 && keys[i + d] !== undefined) { $("taxi-follow").checked = false; show(keys[i + d]); }
  };
  loop(run, 1000, async () => {
    const shards = await listAllShards(stream);
    let fresh = false;
    for (const s of shards.slice(0, 64)) {
      if (!its.has(s.ShardId)) {
        its.set(s.ShardId, (await api("GetShardIterator", { StreamName: stream, ShardId: s.ShardId, ShardIteratorType: "TRIM_HORIZON" })).ShardIterator);
      }
      let it = its.get(s.ShardId);
      for (let i = 0; it && i < 20 && run.alive; i++) {
        const r = await api("GetRecords", { ShardIterator: it, Limit: 1000 });
        for (const rec of r.Records) {
          let d;
          try { d = JSON.parse(utf8.decode(b64.decode(rec.Data))); } catch (e) { continue; }
          if (typeof d.start !== "number" || !Array.isArray(d.cells)) continue;
          const id = `${d.consumer}/${d.start}/${d.part}`;
          if (seen.has(id)) continue;
          seen.add(id);
          let w = windows.get(d.start);
          if (!w) windows.set(d.start, (w = { start: d.start, window: d.window, trips: d.trips, parts: d.parts, got: 0, cells: [] }));
          w.got++;
          w.cells = w.cells.concat(d.cells);
          fresh = true;
        }
        it = r.NextShardIterator;
        if (!r.Records.length || !r.MillisBehindLatest) break;
      }
      if (it) its.set(s.ShardId, it); else its.delete(s.ShardId);
    }
    while (windows.size > TAXI_WINDOWS) {
      const oldest = Math.min(...windows.keys());
      windows.delete(oldest);
      for (const id of [...seen]) if (id.split("/")[1] === String(oldest)) seen.delete(id);
    }
    if (!run.alive) return;
    const keys = [...windows.keys()].sort((a, b) => a - b);
    if (fresh && keys.length && ($("taxi-follow").checked || run.taxi.shown === null)) show(keys[keys.length - 1]);
    $("taxi-status").textContent = `${keys.length} window${keys.length === 1 ? "" : "s"} read · ${new Date().toLocaleTimeString()}`;
  });
}

function drawHeat(w) {
  const land = Object.entries(NYC.land).map(([name, pts]) => el("polygon", { class: "land", fill: "#f2f0e6", stroke: "#a0a89a",
    "stroke-width": 1, points: pts.map(([la, lo]) => proj(la, lo).map((v) => v.toFixed(1)).join(",")).join(" ") }, el("title", {}, name)));
  const cells = [];
  const rows = w ? w.cells.filter((c) => geohashBounds(c.cell)) : [];
  const max = Math.max(1, ...rows.map((c) => c.pickups));
  for (const c of rows) {
    const b = geohashBounds(c.cell);
    const [x0, y0] = proj(b.latHi, b.lonLo), [x1, y1] = proj(b.latLo, b.lonHi);
    const f = c.pickups / max;
    cells.push(el("rect", { class: "cell", "data-cell": c.cell, x: x0.toFixed(2), y: y0.toFixed(2),
      width: Math.max(1, x1 - x0).toFixed(2), height: Math.max(1, y1 - y0).toFixed(2),
      fill: `hsl(${Math.round(50 - 50 * f)}, 100%, ${Math.round(55 - 10 * f)}%)`, "fill-opacity": (0.35 + 0.65 * f).toFixed(2) },
    el("title", {}, `${c.cell}: ${c.pickups} pickups` + (c.toJFK ? `\nto JFK ${c.toJFK.trips} trips, ${(c.toJFK.avgSeconds / 60).toFixed(1)} min avg` : "") +
      (c.toLGA ? `\nto LGA ${c.toLGA.trips} trips, ${(c.toLGA.avgSeconds / 60).toFixed(1)} min avg` : ""))));
  }
  const marks = NYC.places.map(([name, la, lo]) => {
    const [x, y] = proj(la, lo);
    return el("g", {}, el("circle", { cx: x, cy: y, r: 3, fill: "#1d2b3a" }),
      el("text", { x: x + 5, y: y - 5, "font-size": 12, fill: "#1d2b3a" }, name));
  });
  $("heat").replaceChildren(...land, ...cells, ...marks);
  $("taxi-title").textContent = w ? `Window ${w.window} · ${w.trips} pickups in ${w.cells.length} cells` +
    (w.got < w.parts ? ` (part ${w.got} of ${w.parts})` : "") : "No window yet";
  const top = [...(w ? w.cells : [])].sort((a, b) => b.pickups - a.pickups || (a.cell < b.cell ? -1 : 1)).slice(0, 10);
  const dur = (x) => (x ? `${(x.avgSeconds / 60).toFixed(1)} min (${x.trips})` : "–");
  $("taxi-top").tBodies[0].replaceChildren(...top.map((c, i) => el("tr", {}, el("td", {}, i + 1), el("td", {}, c.cell),
    el("td", {}, c.pickups), el("td", {}, dur(c.toJFK)), el("td", {}, dur(c.toLGA)))));
}

// ---------------------------------------------------------------- forms

function result(id, text, err) {
  const r = $(id);
  r.textContent = text;
  r.className = "result" + (err ? " err" : "");
}

function wire() {
  $("creds-button").addEventListener("click", showCreds);
  $("creds-form").addEventListener("submit", (ev) => {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    creds = { accessKeyId: $("creds-key").value.trim(), secretAccessKey: $("creds-secret").value,
      sessionToken: $("creds-token").value.trim(), region: $("creds-region").value.trim() || "us-east-1" };
    localStorage.setItem("kinesd.creds", JSON.stringify(creds));
    banner("");
    whoami();
  });
  $("create-mode").addEventListener("change", () => { $("create-shards").disabled = $("create-mode").value === "ON_DEMAND"; });
  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("create-name").value.trim(), mode = $("create-mode").value;
    const req = { StreamName: name, StreamModeDetails: { StreamMode: mode } };
    if (mode === "PROVISIONED") req.ShardCount = Number($("create-shards").value) || 1;
    try {
      await api("CreateStream", req);
      result("create-result", `Creating ${name}…`);
    } catch (e) { result("create-result", e.message, true); }
  });
  $("put-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const req = { StreamName: current.stream, PartitionKey: $("put-key").value,
      Data: b64.encode(new TextEncoder().encode($("put-data").value)) };
    if ($("put-hash").value) req.ExplicitHashKey = $("put-hash").value;
    try {
      const r = await api("PutRecord", req);
      result("put-result", `Written to ${r.ShardId}, sequence number ${r.SequenceNumber}`);
    } catch (e) { result("put-result", e.message, true); }
  });
  $("delete-button").addEventListener("click", () => { $("delete-confirm").hidden = false; $("delete-confirm").textContent = `Really delete ${current.stream}`; });
  $("delete-confirm").addEventListener("click", async () => {
    const run = current;
    run.alive = false; // the view's pollers stop before their stream goes
    try {
      await api("DeleteStream", { StreamName: run.stream });
      location.hash = "#/streams";
    } catch (e) {
      route();
      result("delete-result", e.message, true);
    }
  });
  $("tail-restart").addEventListener("click", () => current.stream && startTail(current));
  $("tail-from").addEventListener("change", () => current.stream && startTail(current));
  $("tail-shard").addEventListener("change", () => current.stream && startTail(current));
  $("tail-format").addEventListener("change", () => current.tail && renderTail(current));
  $("taxi-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = "#/taxi/" + encodeURIComponent($("taxi-stream").value.trim());
  });
  $("taxi-prev").addEventListener("click", () => current.taxi && current.taxi.step(-1));
  $("taxi-next").addEventListener("click", () => current.taxi && current.taxi.step(1));
  window.addEventListener("hashchange", route);
  whoami();
  route();
}

wire();
