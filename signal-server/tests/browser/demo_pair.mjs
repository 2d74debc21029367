#!/usr/bin/env node
// Drive the Switchboard demo page (/demo/, served by signal-server) in two headless
// Chromium pages: A creates a room, B joins; they connect, chat both ways and A sends a
// 1 MiB file whose SHA-256 both pages must show. Also a small join-latency bench.
//
// Setup (once, in this folder):   npm ci
// Needs a Chromium binary (Debian: apt-get install -y chromium); playwright-core only
// drives it over CDP and never downloads a browser.
//
// Usage:
//   SB_BASE=http://127.0.0.1:8080 node demo_pair.mjs [-v]
//
// Environment:
//   SB_BASE            signal-server base URL (required), e.g. http://127.0.0.1:8080
//   SB_MODE            link (default): A creates a room with a secret link, B opens the link
//                      passphrase: A creates with a passphrase, B joins with code + passphrase
//                      wrong-passphrase: B uses another passphrase; success = B's page shows
//                      the "wrong passphrase" error (and A is still waiting)
//   SB_RELAY           "1": tick "Force relay (TURN)" on both pages; both paths must be relay
//                      (the signal-server needs --turn-secrets/--turn-urls and a turn-server)
//   SB_SCREENSHOT_DIR  save a.png and b.png there at the end (also on failure)
//   SB_VIEWPORT        page size WxH (default 1280x800; e.g. 390x844 for a phone)
//   SB_TIMEOUT_MS      overall budget (default 60000, at least 15000 per bench run)
//   SB_BENCH_RUNS      default 1. N > 1: connect N times (new room and new browser contexts
//                      each time, no chat or file) and report joinToOpenMs median/p90/min/max
//   SB_LOOPBACK_ONLY   "1" (default): each page ignores remote ICE candidates whose address
//                      is not 127.0.0.1 / ::1 (an init script wraps addIceCandidate; the
//                      module is untouched), so connectivity checks only go to loopback
//   SB_WATCH           "poll": remove EventSource from the pages (init script), so the
//                      module watches rooms with its long-poll fallback (default: SSE)
//   CHROMIUM           Chromium binary (default /usr/bin/chromium)
//
// joinToOpenMs: from B's join (the click on Join, or the navigation to the link) to B's
// page entering state "connected". Opening a link loads the page fresh (the time includes
// loading it: "pageLoadIncluded": true), except with SB_RELAY=1 or SB_BENCH_RUNS > 1: then
// B first loads /demo/ (and ticks the checkbox) and then navigates to the link's #fragment,
// which joins without a reload. The passphrase modes click Join on a loaded page (the time
// includes B's PBKDF2).
//
// Output / exit codes:
//   0  success; stdout gets exactly one JSON line:
//      {ok, mode, relay, path: {a, b}, sha256, expectedSha256, received: {a, b}, joinToOpenMs, ...}
//   1  failure: reason, page states and console logs on stderr; {"ok": false, "error"} on stdout
//   2  usage / environment problem (bad env, Chromium or node_modules missing)
//
// Chromium flags and permissions for host candidates on 127.0.0.1: see peerjs_pair.mjs
// (--allow-loopback-in-peer-connection, camera+microphone granted, no mDNS hiding).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { CHROMIUM_ARGS } from "./chromium_args.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const started = Date.now();
const verbose = process.argv.includes("-v") || process.argv.includes("--verbose");

function usageFail(msg) {
  process.stderr.write(`demo_pair: ${msg}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: msg }) + "\n");
  process.exit(2);
}

const MODES = ["link", "passphrase", "wrong-passphrase"];
const base = (process.env.SB_BASE || "").replace(/\/+$/, "");
if (!base) usageFail("SB_BASE is required (the signal-server base URL, e.g. http://127.0.0.1:8080)");
let baseUrl;
try {
  baseUrl = new URL(base);
} catch {
  usageFail(`SB_BASE=${base} is not a URL`);
}
const mode = process.env.SB_MODE || "link";
if (!MODES.includes(mode)) usageFail(`SB_MODE must be one of ${MODES.join(", ")}`);
const relay = process.env.SB_RELAY === "1";
const screenshotDir = process.env.SB_SCREENSHOT_DIR || "";
const benchRuns = Number(process.env.SB_BENCH_RUNS || 1);
if (!Number.isInteger(benchRuns) || benchRuns < 1) usageFail("SB_BENCH_RUNS must be a positive integer");
const timeoutMs = Number(process.env.SB_TIMEOUT_MS || Math.max(60000, 15000 * benchRuns));
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) usageFail("SB_TIMEOUT_MS must be > 0");
const loopbackOnly = (process.env.SB_LOOPBACK_ONLY ?? "1") !== "0";
const watchMode = process.env.SB_WATCH || "sse";
if (!["sse", "poll"].includes(watchMode)) usageFail("SB_WATCH must be sse or poll");
const viewportMatch = /^(\d+)x(\d+)$/.exec(process.env.SB_VIEWPORT || "1280x800");
if (!viewportMatch) usageFail("SB_VIEWPORT must look like 1280x800");
const viewport = { width: Number(viewportMatch[1]), height: Number(viewportMatch[2]) };
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(chromiumPath)) usageFail(`Chromium not found at ${chromiumPath} (set CHROMIUM, or apt-get install -y chromium)`);
const FILE_BYTES = 1024 * 1024;
// Opening a link: B loads /demo/ first and then follows the link's #fragment (no reload)
// when it must tick "Force relay" first, and in bench runs, so that the figure is the
// connection setup and not a fresh renderer's page load. Otherwise the link loads fresh.
const preloadLink = relay || benchRuns > 1;

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  usageFail(`node_modules missing or incomplete (run \`npm ci\` in ${HERE}): ${e.message}`);
}

const logs = [];
function log(line) {
  logs.push(`[${((Date.now() - started) / 1000).toFixed(3)}s] ${line}`);
  if (verbose) process.stderr.write(logs[logs.length - 1] + "\n");
}

// Problems that fail the run even if the flow worked.
const problems = [];

// Runs in every page before its scripts: records body[data-state] changes with wall-clock
// times, the moment Join is clicked, and (optionally) drops non-loopback remote candidates.
function pageInit({ loopbackOnly, noEventSource }) {
  const t = (window.__sbTest = { states: [], dropped: [], joinAt: null });
  if (noEventSource) delete window.EventSource;
  const record = () => {
    const s = document.body && document.body.dataset.state;
    const last = t.states[t.states.length - 1];
    if (s && (!last || last.state !== s)) t.states.push({ state: s, at: Date.now() });
  };
  new MutationObserver(record).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  document.addEventListener(
    "submit",
    (e) => {
      if (e.target && e.target.id === "join-form") t.joinAt = Date.now();
    },
    true,
  );
  if (!loopbackOnly) return;
  const orig = RTCPeerConnection.prototype.addIceCandidate;
  RTCPeerConnection.prototype.addIceCandidate = function (c, ...rest) {
    const s = c && (c.candidate !== undefined ? c.candidate : c);
    if (typeof s === "string" && s) {
      const addr = s.split(" ")[4];
      if (addr !== "127.0.0.1" && addr !== "::1") {
        t.dropped.push(s);
        return Promise.resolve();
      }
    }
    return orig.call(this, c, ...rest);
  };
}

let browser = null;
let finished = false;
let tmpDir = null;
const contexts = new Set();
const pages = {};
const T = (id) => `[data-testid="${id}"]`;

function remaining() {
  return Math.max(1000, timeoutMs - (Date.now() - started) - 2000);
}

async function openPage(name) {
  const ctx = await browser.newContext({ viewport });
  contexts.add(ctx);
  // Camera/microphone permission makes Chromium enumerate all interfaces (incl. loopback)
  // for host candidates; nothing is captured.
  await ctx.grantPermissions(["camera", "microphone"], { origin: baseUrl.origin });
  await ctx.addInitScript(pageInit, { loopbackOnly, noEventSource: watchMode === "poll" });
  const page = await ctx.newPage();
  page.on("console", (m) => {
    const text = m.text();
    log(`${name} console.${m.type()}: ${text}`);
    if (/Content.Security.Policy/i.test(text)) problems.push(`${name}: CSP violation: ${text}`);
  });
  page.on("pageerror", (e) => {
    log(`${name} pageerror: ${e.message}`);
    problems.push(`${name}: uncaught page error: ${e.message}`);
  });
  page.on("requestfailed", (r) => log(`${name} requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    const u = new URL(r.url());
    if ((u.protocol === "http:" || u.protocol === "https:") && !["127.0.0.1", "[::1]", "localhost"].includes(u.hostname)) {
      problems.push(`${name}: non-loopback request ${r.url()}`);
    }
  });
  page.on("crash", () => problems.push(`${name}: page crashed`));
  pages[name] = page;
  return page;
}

async function closeContexts() {
  await Promise.all([...contexts].map((c) => c.close().catch(() => {})));
  contexts.clear();
}

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    const msg = String((e && e.message) || e).split("\n")[0].replace(/^page\.\w+: (Error: )?/, "");
    throw new Error(`${what}: ${msg}`);
  }
}

/** Wait until the page's state is one of `states`; returns it. */
async function waitState(page, states, what) {
  await step(
    what,
    page.waitForFunction((want) => want.includes(document.body && document.body.dataset.state), states, { timeout: remaining(), polling: 20 }),
  );
  return page.evaluate(() => document.body.dataset.state);
}

async function pageInfo(page) {
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    status: document.querySelector('[data-testid="status"]')?.textContent,
    states: window.__sbTest?.states,
    joinAt: window.__sbTest?.joinAt,
    droppedRemote: window.__sbTest?.dropped?.length,
  }));
}

async function loadDemo(page) {
  await step("load /demo/", page.goto(`${base}/demo/`, { waitUntil: "load", timeout: remaining() }));
  if (relay) await page.check(T("relay"));
  else await page.uncheck(T("relay"));
}

/** A creates a room; returns {code, link}. */
async function createRoom(page, passphrase) {
  await loadDemo(page);
  if (passphrase) {
    await page.check(T("use-passphrase"));
    await page.fill(T("create-passphrase"), passphrase);
  }
  await page.click(T("create"));
  const state = await waitState(page, ["waiting", "error"], "A: create room");
  if (state !== "waiting") throw new Error(`A: create room failed: ${(await pageInfo(page)).status}`);
  const code = (await page.textContent(T("room-code"))).trim();
  const link = passphrase ? null : await page.inputValue(T("link"));
  return { code, link };
}

/** B joins; returns the wall-clock time the join started. */
async function join(page, room, passphrase) {
  if (room.link) {
    if (preloadLink) {
      await loadDemo(page); // tick "Force relay" first, then follow the link without a reload
      const t0 = Date.now();
      await step("B: open link", page.goto(room.link, { timeout: remaining() }));
      return t0;
    }
    const t0 = Date.now();
    await step("B: open link", page.goto(room.link, { waitUntil: "commit", timeout: remaining() }));
    return t0;
  }
  await loadDemo(page);
  await page.fill(T("join-code"), room.code);
  await page.fill(T("join-passphrase"), passphrase);
  await page.click(T("join"));
  return page.evaluate(() => window.__sbTest.joinAt);
}

/** The time B's page entered `state` after t0. */
async function stateTime(page, state, t0) {
  const states = await page.evaluate(() => window.__sbTest.states);
  const hit = states.find((s) => s.state === state && s.at >= t0 - 5);
  return hit ? hit.at : null;
}

async function readPath(page) {
  // The page polls getStats every 2 s; the first value lands right after connecting.
  await step(
    "path indicator",
    page.waitForFunction(() => {
      const p = document.querySelector('[data-testid="path"]')?.dataset.path;
      return p && p !== "unknown";
    }, null, { timeout: Math.min(10000, remaining()), polling: 50 }),
  );
  return page.getAttribute(T("path"), "data-path");
}

/** One A/B connection; returns timings and paths. */
async function connectPair() {
  const a = await openPage("A");
  const b = await openPage("B");
  const passA = mode === "link" ? null : `correct horse ${crypto.randomBytes(4).toString("hex")}`;
  const passB = mode === "wrong-passphrase" ? `${passA}-typo` : passA;
  const room = await createRoom(a, passA);
  log(`A created room ${room.code}${room.link ? " (link)" : " (passphrase)"}`);
  const t0 = await join(b, room, passB);
  const bState = await waitState(b, ["connected", "error"], "B: connect");
  const tB = await stateTime(b, bState, t0);
  if (mode === "wrong-passphrase") {
    const info = await pageInfo(b);
    if (bState !== "error") throw new Error(`B connected with a wrong passphrase (state ${bState})`);
    if (!/wrong passphrase/i.test(info.status || "")) throw new Error(`B shows an error, but not the wrong-passphrase one: ${info.status}`);
    const aState = await a.evaluate(() => document.body.dataset.state);
    if (aState !== "waiting") throw new Error(`A should still be waiting, is ${aState}`);
    return { room, a, b, joinToErrorMs: tB - t0, errorShown: info.status, aState };
  }
  if (bState !== "connected") throw new Error(`B failed to connect: ${(await pageInfo(b)).status}`);
  const aState = await waitState(a, ["connected", "error"], "A: connect");
  if (aState !== "connected") throw new Error(`A failed to connect: ${(await pageInfo(a)).status}`);
  const path = { a: await readPath(a), b: await readPath(b) };
  if (relay && (path.a !== "relay" || path.b !== "relay")) throw new Error(`Force relay is on, but the path is A=${path.a} B=${path.b}`);
  return { room, a, b, joinToOpenMs: tB - t0, path };
}

async function chat(from, to, text) {
  await from.fill(T("chat-input"), text);
  await from.click(T("chat-send"));
  await step(
    `message "${text}" to arrive`,
    to.waitForFunction(
      (want) => [...document.querySelectorAll('[data-testid="messages"] li[data-from="them"] .text')].some((n) => n.textContent === want),
      text,
      { timeout: remaining(), polling: 20 },
    ),
  );
}

async function received(page) {
  return page.evaluate(() => [...document.querySelectorAll('[data-testid="messages"] li[data-from="them"] .text')].map((n) => n.textContent));
}

/** Deterministic pseudo-random bytes: SHA-256 in counter mode over a fixed seed. */
function makeTestFile() {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-demo-pair-"));
  const file = path.join(tmpDir, "switchboard-test-1MiB.bin");
  const buf = Buffer.alloc(FILE_BYTES);
  for (let i = 0; i * 32 < FILE_BYTES; i++) {
    crypto.createHash("sha256").update(`switchboard demo_pair ${i}`).digest().copy(buf, i * 32);
  }
  fs.writeFileSync(file, buf);
  return { file, sha256: crypto.createHash("sha256").update(buf).digest("hex") };
}

async function sendFile(a, b) {
  const { file, sha256 } = makeTestFile();
  await a.setInputFiles(T("file-input"), file);
  await a.click(T("file-send"));
  const done = (dir) =>
    `[data-testid="transfer"][data-direction="${dir}"][data-done="true"]`;
  await step("B: file received", b.waitForSelector(done("in"), { timeout: remaining() }));
  await step("A: file delivered", a.waitForSelector(done("out"), { timeout: remaining() }));
  const shaOf = (page, dir) => page.textContent(`${done(dir)} ${T("transfer-sha256")}`).then((s) => s.trim());
  const shaA = await shaOf(a, "out");
  const shaB = await shaOf(b, "in");
  const linkSel = `${done("in")} ${T("transfer-download")}`;
  const href = await b.getAttribute(linkSel, "href");
  if (!href || !href.startsWith("blob:")) throw new Error(`B offers no blob: download link (href ${href})`);
  // The download link must hold the very bytes: download it as a user would, hash it here.
  const [download] = await step("B: download", Promise.all([b.waitForEvent("download", { timeout: remaining() }), b.click(linkSel)]));
  const saved = path.join(tmpDir, "downloaded.bin");
  await download.saveAs(saved);
  const shaLink = crypto.createHash("sha256").update(fs.readFileSync(saved)).digest("hex");
  if (shaA !== sha256 || shaB !== sha256 || shaLink !== sha256) {
    throw new Error(`SHA-256 mismatch: file ${sha256}, A shows ${shaA}, B shows ${shaB}, B's download ${shaLink}`);
  }
  return { sha256: shaB, expectedSha256: sha256 };
}

async function screenshots() {
  if (!screenshotDir) return;
  fs.mkdirSync(screenshotDir, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    try {
      await page.screenshot({ path: path.join(screenshotDir, `${name.toLowerCase()}.png`), fullPage: true, timeout: 5000 });
    } catch (e) {
      log(`screenshot ${name} failed: ${e.message}`);
    }
  }
}

async function cleanup() {
  const closing = [];
  if (browser) closing.push(browser.close().catch(() => {}));
  await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 10000).unref())]);
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}

async function fail(message) {
  if (finished) return;
  finished = true;
  process.stderr.write(`demo_pair: FAILED: ${message}\n`);
  for (const [name, page] of Object.entries(pages)) {
    const st = await Promise.race([pageInfo(page).catch((e) => ({ unavailable: e.message })), new Promise((r) => setTimeout(() => r({ unavailable: "timeout" }), 3000))]);
    process.stderr.write(`--- page ${name} ---\n${JSON.stringify(st, null, 2)}\n`);
  }
  await Promise.race([screenshots(), new Promise((r) => setTimeout(r, 8000))]);
  process.stderr.write(`--- browser console / harness log (${logs.length} lines) ---\n`);
  const tail = logs.slice(-400);
  if (tail.length < logs.length) process.stderr.write(`(first ${logs.length - tail.length} lines omitted)\n`);
  process.stderr.write(tail.join("\n") + "\n");
  process.stdout.write(JSON.stringify({ ok: false, mode, relay, error: message, elapsedMs: Date.now() - started }) + "\n");
  await cleanup();
  process.exit(1);
}

setTimeout(() => {
  fail(`overall timeout of ${timeoutMs} ms exceeded`).finally(() => process.exit(1));
  setTimeout(() => process.exit(1), 20000).unref();
}, timeoutMs); // not unref'd: the process must never exit silently
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => fail(`got ${sig}`));

function stats(values) {
  const v = [...values].sort((x, y) => x - y);
  const q = (p) => v[Math.min(v.length - 1, Math.ceil(p * v.length) - 1)];
  const median = v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  return { median, p90: q(0.9), min: v[0], max: v[v.length - 1], runs: values };
}

async function main() {
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
  const chromiumVersion = browser.version();
  log(`chromium ${chromiumVersion}; base ${base}; mode ${mode}; relay ${relay}; runs ${benchRuns}`);
  let summary;

  if (benchRuns > 1) {
    const times = [];
    let last = null;
    for (let i = 0; i < benchRuns; i++) {
      await closeContexts();
      last = await connectPair();
      const ms = mode === "wrong-passphrase" ? last.joinToErrorMs : last.joinToOpenMs;
      times.push(ms);
      log(`run ${i + 1}/${benchRuns}: room ${last.room.code} ${ms} ms${last.path ? ` path ${last.path.a}/${last.path.b}` : ""}`);
    }
    const key = mode === "wrong-passphrase" ? "joinToErrorMs" : "joinToOpenMs";
    summary = { ok: true, mode, relay, bench: benchRuns, path: last.path ?? null, [key]: stats(times), pageLoadIncluded: false };
  } else {
    const r = await connectPair();
    if (mode === "wrong-passphrase") {
      summary = {
        ok: true, mode, relay, path: { a: null, b: null }, sha256: null, expectedSha256: null,
        received: { a: [], b: [] }, joinToOpenMs: null, joinToErrorMs: r.joinToErrorMs, errorShown: r.errorShown, aState: r.aState,
      };
    } else {
      await chat(r.a, r.b, "hello from A");
      await chat(r.b, r.a, "hello from B");
      const file = await sendFile(r.a, r.b);
      summary = {
        ok: true, mode, relay, path: r.path, ...file,
        received: { a: await received(r.a), b: await received(r.b) }, joinToOpenMs: r.joinToOpenMs,
      };
      if (JSON.stringify(summary.received) !== JSON.stringify({ a: ["hello from B"], b: ["hello from A"] })) {
        throw new Error(`unexpected messages: ${JSON.stringify(summary.received)}`);
      }
    }
    summary.room = r.room.code;
    summary.pageLoadIncluded = mode === "link" && !preloadLink;
    const infoB = await pageInfo(r.b);
    summary.droppedRemoteCandidates = infoB.droppedRemote;
  }
  if (problems.length) throw new Error(problems.join("; "));
  await screenshots();
  Object.assign(summary, { watch: watchMode, chromium: chromiumVersion, loopbackOnly, viewport: `${viewport.width}x${viewport.height}`, elapsedMs: Date.now() - started });
  finished = true;
  await cleanup();
  process.stdout.write(JSON.stringify(summary) + "\n");
  process.exit(0);
}

main().catch((e) => fail(String((e && e.message) || e)));
