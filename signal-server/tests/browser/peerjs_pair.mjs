#!/usr/bin/env node
// Drive the stock `peerjs` npm client (pinned in package.json) in two headless
// Chromium pages against a PeerJS-protocol server, until a DataConnection opens and a
// message crosses in each direction.
//
// Setup (once, in this folder):   npm ci
// Needs a Chromium binary (Debian: apt-get install -y chromium); playwright-core only
// drives it over CDP and never downloads a browser.
//
// Usage:
//   SB_PEERJS_PORT_A=9000 [SB_PEERJS_PORT_B=9001] node peerjs_pair.mjs
//
// Environment:
//   SB_PEERJS_HOST        server host for both pages (default 127.0.0.1)
//   SB_PEERJS_PORT_A      server port used by page A, the answering peer (default 9000)
//   SB_PEERJS_PORT_B      server port used by page B, the connecting peer (default: A);
//                         point it at another replica for a two-replica test
//   SB_PEERJS_PATH        server path (default "/"); peerjs normalises it to "/x/"
//   SB_PEERJS_KEY         API key (default "peerjs")
//   CHROMIUM              Chromium binary (default /usr/bin/chromium)
//   SB_PEERJS_TIMEOUT_MS  overall budget in ms (default 60000)
//   SB_PEERJS_DEBUG       peerjs debug level 0-3 for the pages (default 3; the console
//                         output is only printed on failure, or always with -v)
//   SB_PEERJS_SERVER_IDS  "1": create both Peers without an id, so peerjs first asks the
//                         server for one (GET {path}{key}/id, cross-origin fetch);
//                         default "0": random client-chosen ids (no /id request)
//   SB_PEERJS_HOLD_MS     keep both pages connected this long after the exchange, e.g.
//                         to watch HEARTBEATs (default 0; counts against the timeout)
//   SB_PEERJS_LOOPBACK_ONLY  "1" (default): each page ignores remote ICE candidates whose
//                         address is not 127.0.0.1 / ::1, so connectivity checks only go
//                         to loopback. "0" leaves candidates untouched.
//
// Output / exit codes:
//   0  success; stdout gets exactly one JSON line (ids, messages, selected ICE pair...)
//   1  connection or exchange failed: reason + page console logs on stderr, and a JSON
//      line with "ok": false and "error" on stdout
//   2  usage / environment problem (bad env, Chromium or node_modules missing)
//
// Network: pages load peerjs from a local http server on 127.0.0.1:0 (nothing
// external); iceServers is [] (no STUN/TURN). Getting host candidates on 127.0.0.1 in
// headless Chromium (verified with Chromium 156) takes all of:
//   --allow-loopback-in-peer-connection   else the loopback interface is never gathered;
//   camera+microphone permission granted  else Chromium does not enumerate interfaces
//     (context.grantPermissions; nothing    and offers only the default-route address
//     is captured)                          (eth0 here), never 127.0.0.1;
//   --disable-features=WebRtcHideLocalIpsWithMdns  belt and braces: with the permission
//     granted Chromium already shows raw IPs; without either, host IPs become
//     <uuid>.local mDNS names (multicast, unresolvable here).
// With SB_PEERJS_LOOPBACK_ONLY=1 the selected pair is udp 127.0.0.1 <-> 127.0.0.1.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { CHROMIUM_ARGS } from "./chromium_args.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const started = Date.now();
const verbose = process.argv.includes("-v") || process.argv.includes("--verbose");

function usageFail(msg) {
  process.stderr.write(`peerjs_pair: ${msg}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: msg }) + "\n");
  process.exit(2);
}

function envPort(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) usageFail(`${name}=${raw} is not a port`);
  return n;
}

const host = process.env.SB_PEERJS_HOST || "127.0.0.1";
const portA = envPort("SB_PEERJS_PORT_A", 9000);
const portB = envPort("SB_PEERJS_PORT_B", portA);
const serverPath = process.env.SB_PEERJS_PATH || "/";
const key = process.env.SB_PEERJS_KEY || "peerjs";
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeoutMs = Number(process.env.SB_PEERJS_TIMEOUT_MS || 60000);
const debugLevel = Number(process.env.SB_PEERJS_DEBUG ?? 3);
const loopbackOnly = (process.env.SB_PEERJS_LOOPBACK_ONLY ?? "1") !== "0";
const serverIds = process.env.SB_PEERJS_SERVER_IDS === "1";
const holdMs = Number(process.env.SB_PEERJS_HOLD_MS || 0);
if (!Number.isFinite(holdMs) || holdMs < 0) usageFail("SB_PEERJS_HOLD_MS must be >= 0");
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) usageFail("SB_PEERJS_TIMEOUT_MS must be > 0");
if (!fs.existsSync(chromiumPath)) usageFail(`Chromium not found at ${chromiumPath} (set CHROMIUM, or apt-get install -y chromium)`);

let peerjsBundle, peerjsVersion, chromium;
try {
  const pkgDir = path.dirname(require.resolve("peerjs/package.json"));
  peerjsVersion = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
  // The UMD/IIFE browser bundle: defines window.peerjs = { Peer, util }.
  peerjsBundle = fs.readFileSync(path.join(pkgDir, "dist", "peerjs.min.js"));
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  usageFail(`node_modules missing or incomplete (run \`npm ci\` in ${HERE}): ${e.message}`);
}

// Browser-side helpers, injected into the page. The page itself only loads peerjs;
// everything else is driven from here with page.evaluate.
const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard peerjs pair</title>
<script>
  window.__sb = { events: [], received: [], localCandidates: [], droppedRemote: [] };
  // Optional loopback-only filter on *remote* candidates (see SB_PEERJS_LOOPBACK_ONLY).
  // It does not touch what peerjs sends to the server: all candidates still go on the wire.
  (function () {
    if (!/[?&]loopbackOnly=1/.test(location.search)) return;
    const orig = RTCPeerConnection.prototype.addIceCandidate;
    RTCPeerConnection.prototype.addIceCandidate = function (c, ...rest) {
      const s = c && (c.candidate !== undefined ? c.candidate : c);
      if (typeof s === "string" && s) {
        const addr = s.split(" ")[4];
        if (addr !== "127.0.0.1" && addr !== "::1") {
          window.__sb.droppedRemote.push(s);
          return Promise.resolve();
        }
      }
      return orig.call(this, c, ...rest);
    };
  })();
</script>
<script src="/peerjs.min.js"></script>
</head><body>peerjs pair</body></html>`;

function serveAssets() {
  return new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => {
      const url = new URL(req.url, "http://x");
      if (url.pathname === "/" || url.pathname === "/index.html") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
        res.end(PAGE_HTML);
      } else if (url.pathname === "/favicon.ico") {
        res.writeHead(204);
        res.end();
      } else if (url.pathname === "/peerjs.min.js") {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" });
        res.end(peerjsBundle);
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found");
      }
    });
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

const logs = [];
function log(line) {
  logs.push(`[${((Date.now() - started) / 1000).toFixed(3)}s] ${line}`);
  if (verbose) process.stderr.write(logs[logs.length - 1] + "\n");
}

function randomId(tag) {
  // peerjs validateId: /^[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*$/
  return `sb-${tag}-${crypto.randomBytes(6).toString("hex")}`;
}

// Runs in the page: create the Peer and resolve once the server said OPEN.
async function pageCreatePeer({ id, opts, role }) {
  const sb = window.__sb;
  const ev = (e) => sb.events.push(`${(performance.now() / 1000).toFixed(3)} ${e}`);
  const peer = id ? new window.peerjs.Peer(id, opts) : new window.peerjs.Peer(opts);
  window.__peer = peer;
  peer.on("error", (err) => {
    sb.error = `${err && err.type}: ${err && err.message}`;
    ev(`peer error ${sb.error}`);
  });
  peer.on("disconnected", () => ev("peer disconnected"));
  peer.on("close", () => ev("peer close"));
  const trackConn = (conn) => {
    window.__conn = conn;
    conn.on("error", (err) => {
      sb.error = `conn ${err && err.type}: ${err && err.message}`;
      ev(`conn error ${sb.error}`);
    });
    conn.on("close", () => ev("conn close"));
    conn.on("iceStateChanged", (s) => ev(`ice ${s}`));
    const watchPc = () => {
      const pc = conn.peerConnection;
      if (!pc || pc.__sbWatched) return;
      pc.__sbWatched = true;
      pc.addEventListener("icecandidate", (e) => {
        if (e.candidate && e.candidate.candidate) sb.localCandidates.push(e.candidate.candidate);
      });
    };
    watchPc();
    setTimeout(watchPc, 0);
  };
  if (role === "answerer") {
    peer.on("connection", (conn) => {
      ev(`incoming connection from ${conn.peer} (${conn.connectionId}, ${conn.serialization})`);
      trackConn(conn);
      conn.on("open", () => ev("conn open"));
      conn.on("data", (data) => {
        ev(`data ${JSON.stringify(data)}`);
        sb.received.push(data);
        conn.send("hello from A");
        sb.replied = true;
      });
    });
  }
  window.__sbTrackConn = trackConn;
  await new Promise((resolve, reject) => {
    peer.on("open", (got) => {
      ev(`peer open ${got}`);
      resolve();
    });
    peer.on("error", (err) => reject(new Error(`${err && err.type}: ${err && err.message}`)));
  });
  return peer.id;
}

// Runs in page B: connect to A, send on open, resolve on A's reply.
async function pageConnect({ target }) {
  const sb = window.__sb;
  const ev = (e) => sb.events.push(`${(performance.now() / 1000).toFixed(3)} ${e}`);
  const conn = window.__peer.connect(target);
  window.__sbTrackConn(conn);
  ev(`connect -> ${target} (${conn.connectionId}, ${conn.serialization})`);
  conn.on("open", () => {
    ev("conn open");
    conn.send("hello from B");
  });
  await new Promise((resolve, reject) => {
    conn.on("data", (data) => {
      ev(`data ${JSON.stringify(data)}`);
      sb.received.push(data);
      resolve();
    });
    conn.on("error", (err) => reject(new Error(`conn ${err && err.type}: ${err && err.message}`)));
    window.__peer.on("error", (err) => reject(new Error(`${err && err.type}: ${err && err.message}`)));
  });
  return true;
}

// Runs in either page: the selected ICE candidate pair of the DataConnection.
async function pageSelectedPair() {
  const pc = window.__conn && window.__conn.peerConnection;
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  if (!pair) return null;
  const c = (id) => { const x = stats.get(id); return x && `${x.protocol} ${x.address || "(hidden)"}:${x.port} ${x.candidateType}`; };
  return { local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId) };
}

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    const msg = String((e && e.message) || e).split("\n")[0].replace(/^page\.evaluate: (Error: )?/, "");
    throw new Error(`${what}: ${msg}`);
  }
}

async function dumpPageState(page) {
  try {
    return await page.evaluate(() => ({
      events: window.__sb.events,
      error: window.__sb.error || null,
      received: window.__sb.received,
      localCandidates: window.__sb.localCandidates,
      droppedRemote: window.__sb.droppedRemote,
    }));
  } catch (e) {
    return { unavailable: String(e.message || e) };
  }
}

let browser = null;
let assetServer = null;
let finished = false;
const pages = {};

async function cleanup() {
  const closing = [];
  if (browser) closing.push(browser.close().catch(() => {}));
  if (assetServer) {
    closing.push(new Promise((r) => assetServer.close(() => r())));
    assetServer.closeAllConnections?.();
  }
  // Never hang in cleanup: give it 10 s, then move on.
  await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 10000).unref())]);
}

async function fail(message) {
  if (finished) return;
  finished = true;
  process.stderr.write(`peerjs_pair: FAILED: ${message}\n`);
  for (const [name, page] of Object.entries(pages)) {
    const st = await Promise.race([dumpPageState(page), new Promise((r) => setTimeout(() => r({ unavailable: "timeout" }), 3000))]);
    process.stderr.write(`--- page ${name} state ---\n${JSON.stringify(st, null, 2)}\n`);
  }
  process.stderr.write(`--- browser console / harness log (${logs.length} lines) ---\n`);
  const tail = logs.slice(-400);
  if (tail.length < logs.length) process.stderr.write(`(first ${logs.length - tail.length} lines omitted)\n`);
  process.stderr.write(tail.join("\n") + "\n");
  process.stdout.write(
    JSON.stringify({
      ok: false,
      error: message,
      server: { host, portA, portB, path: serverPath, key },
      elapsed_ms: Date.now() - started,
    }) + "\n",
  );
  await cleanup();
  process.exit(1);
}

// Hard overall deadline; also fires if something (even cleanup) hangs.
setTimeout(() => {
  fail(`overall timeout of ${timeoutMs} ms exceeded`).finally(() => process.exit(1));
  setTimeout(() => process.exit(1), 15000).unref();
}, timeoutMs); // not unref'd: the process must never exit silently with nothing printed
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => fail(`got ${sig}`));

async function main() {
  assetServer = await serveAssets();
  const origin = `http://127.0.0.1:${assetServer.address().port}`;
  log(`assets served at ${origin}; peerjs ${peerjsVersion}`);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  const browserVersion = browser.version();
  log(`chromium ${browserVersion} launched`);

  const peerOpts = (port) => ({
    host,
    port,
    path: serverPath,
    key,
    secure: false,
    config: { iceServers: [] },
    debug: debugLevel,
  });

  // Two isolated contexts = two independent "users".
  for (const name of ["A", "B"]) {
    const ctx = await browser.newContext();
    // With camera/microphone permission granted, Chromium's WebRTC network manager may
    // enumerate all interfaces (incl. loopback); without it only the default-route
    // address is used (192.0.2.2-like), never 127.0.0.1. No media is captured.
    await ctx.grantPermissions(["camera", "microphone"], { origin });
    const page = await ctx.newPage();
    page.on("console", (m) => log(`${name} console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => log(`${name} pageerror: ${e.message}`));
    page.on("requestfailed", (r) => log(`${name} requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("websocket", (ws) => {
      log(`${name} websocket open ${ws.url()}`);
      ws.on("close", () => log(`${name} websocket closed`));
      ws.on("socketerror", (e) => log(`${name} websocket error ${e}`));
    });
    page.on("crash", () => log(`${name} page crashed`));
    pages[name] = page;
    await page.goto(`${origin}/?loopbackOnly=${loopbackOnly ? 1 : 0}`, { waitUntil: "load", timeout: 15000 });
    const ok = await page.evaluate(() => typeof window.peerjs?.Peer === "function");
    if (!ok) throw new Error(`page ${name}: window.peerjs.Peer missing after loading the bundle`);
  }

  let idA = serverIds ? null : randomId("a");
  let idB = serverIds ? null : randomId("b");
  log(`page A peer ${idA ?? "(server-assigned)"} -> ${host}:${portA}${serverPath}; page B peer ${idB ?? "(server-assigned)"} -> ${host}:${portB}${serverPath}`);

  const t0 = Date.now();
  idA = await step("page A: Peer open", pages.A.evaluate(pageCreatePeer, { id: idA, opts: peerOpts(portA), role: "answerer" }));
  idB = await step("page B: Peer open", pages.B.evaluate(pageCreatePeer, { id: idB, opts: peerOpts(portB), role: "caller" }));
  if (!idA || !idB || idA === idB) throw new Error(`bad peer ids: A=${idA} B=${idB}`);
  const tOpen = Date.now();
  log("both peers OPEN");

  await step("page B: connect to A and exchange", pages.B.evaluate(pageConnect, { target: idA }));
  const tExchange = Date.now();
  const stA = await dumpPageState(pages.A);
  const stB = await dumpPageState(pages.B);
  const mdns = [...stA.localCandidates, ...stB.localCandidates].filter((c) => /\.local /.test(c));
  if (mdns.length) throw new Error(`Chromium still hides host IPs behind mDNS: ${mdns[0]}`);
  if (stA.received[0] !== "hello from B") throw new Error(`A received ${JSON.stringify(stA.received)}, expected ["hello from B"]`);
  if (stB.received[0] !== "hello from A") throw new Error(`B received ${JSON.stringify(stB.received)}, expected ["hello from A"]`);

  const pairB = await pages.B.evaluate(pageSelectedPair).catch(() => null);
  if (holdMs > 0) {
    log(`holding ${holdMs} ms`);
    await new Promise((r) => setTimeout(r, holdMs));
  }
  const summary = {
    ok: true,
    peerjs: peerjsVersion,
    chromium: browserVersion,
    server: { host, portA, portB, path: serverPath, key },
    idA,
    idB,
    serverIds,
    receivedByA: stA.received[0],
    receivedByB: stB.received[0],
    selectedPairB: pairB,
    loopbackOnly,
    droppedRemoteCandidates: stA.droppedRemote.length + stB.droppedRemote.length,
    open_ms: tOpen - t0,
    exchange_ms: tExchange - tOpen,
    elapsed_ms: Date.now() - started,
  };
  if (verbose) {
    process.stderr.write(`--- page A ---\n${JSON.stringify(stA, null, 2)}\n--- page B ---\n${JSON.stringify(stB, null, 2)}\n`);
  }
  finished = true;
  await cleanup();
  process.stdout.write(JSON.stringify(summary) + "\n");
  process.exit(0);
}

main().catch((e) => fail(String((e && e.message) || e)));
