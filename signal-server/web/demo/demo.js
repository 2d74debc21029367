// Switchboard demo page: two browsers meet in a room, then chat and send files over an
// RTCDataChannel. Everything here is ordinary use of the public client module.
//
// State for tests and styling: document.body.dataset.state is
//   idle | waiting (room created, nobody joined yet) | connecting | connected | error.
import {
  ConnectError,
  SignalClient,
  SignalError,
  WrongKeyError,
  connect,
  decodeSecret,
  deriveKeyFromPassphrase,
  deriveKeyFromSecret,
  encodeSecret,
  newLinkSecret,
} from "/client/v1/switchboard.js";

const CHUNK_BYTES = 16 * 1024; // safe message size for every browser's SCTP stack
const HIGH_WATER = 1024 * 1024; // pause sending above this much queued in the channel...
const LOW_WATER = 256 * 1024; // ...and resume when it drains below this
const MAX_FILE_BYTES = 256 * 1024 * 1024; // files are hashed and assembled in memory
const MIN_PASSPHRASE = 8;
// The creator waits for as long as the room lives (10 min idle by default); whoever joins
// an existing room should hear back quickly.
const OFFERER_TIMEOUT_MS = 15 * 60 * 1000;
const ANSWERER_TIMEOUT_MS = 30 * 1000;
const RELAY_PREF = "switchboard-demo-relay";

const $ = (id) => document.getElementById(id);
const client = new SignalClient(location.origin);

/** The one attempt/session of this page. */
let session = null;

// ---------------------------------------------------------------------------------------
// Page state
// ---------------------------------------------------------------------------------------

function setStatus(message, kind = "info") {
  const box = $("status");
  box.textContent = message;
  box.dataset.kind = kind;
}

/** Which parts of the page show in which state. */
function setState(state, message, kind) {
  document.body.dataset.state = state;
  const role = session && session.role;
  const hadSession = !!(session && session.connected); // its chat stays on screen after it ends
  $("setup").hidden = hadSession || !(state === "idle" || state === "error");
  $("invite").hidden = !(role === "offerer" && session.room && (state === "waiting" || state === "connecting"));
  $("session").hidden = !(session && session.connected);
  const restart = $("restart");
  restart.hidden = !(state === "error" && session && session.connected) && !(state === "connecting" && role === "answerer");
  restart.textContent = state === "connecting" ? "Cancel" : "Start over";
  if (message !== undefined) setStatus(message, kind ?? (state === "error" ? "error" : "info"));
}

function newSession(role, room) {
  session = { role, room, abort: new AbortController(), connected: false, pc: null, channel: null, pathTimer: 0 };
  return session;
}

function relayWanted() {
  return $("relay").checked;
}

// ---------------------------------------------------------------------------------------
// Create, join, connect
// ---------------------------------------------------------------------------------------

async function onCreate(event) {
  event.preventDefault();
  if (session) return;
  const usePassphrase = $("use-passphrase").checked;
  const passphrase = $("create-passphrase").value;
  if (usePassphrase && !checkPassphrase($("create-passphrase"))) return;

  const s = newSession("offerer", null);
  setState("connecting", "Creating a room…");
  try {
    const room = await client.createRoom();
    s.room = room.code;
    let key;
    let link = null;
    if (usePassphrase) {
      setStatus("Deriving the room key from your passphrase…");
      key = await deriveKeyFromPassphrase(room.code, passphrase);
    } else {
      const secret = newLinkSecret();
      key = await deriveKeyFromSecret(room.code, secret);
      // The secret lives only in the fragment: browsers never send it to any server.
      link = `${location.origin}/demo/#room=${encodeURIComponent(room.code)}&k=${encodeSecret(secret)}`;
    }
    showInvite(room.code, link);
    setState(
      "waiting",
      link
        ? `Room ${room.code} is ready. Send the link to the other person; waiting for them to open it.`
        : `Room ${room.code} is ready. Give the other person the room code and the passphrase; waiting for them to join.`,
    );
    (link ? $("copy-link") : $("cancel")).focus();
    await runConnect(s, key);
  } catch (err) {
    onFailure(s, err);
  }
}

async function onJoin(event) {
  event.preventDefault();
  if (session) return;
  const codeInput = $("join-code");
  const room = codeInput.value.trim().toUpperCase();
  codeInput.value = room;
  if (!/^[A-Za-z0-9_-]{4,32}$/.test(room)) {
    invalid(codeInput, "Enter the room code: 4 to 32 letters, digits, - or _.");
    return;
  }
  codeInput.removeAttribute("aria-invalid");
  const passInput = $("join-passphrase");
  if (!passInput.value) {
    invalid(passInput, "Enter the passphrase of the room.");
    return;
  }
  passInput.removeAttribute("aria-invalid");
  const s = newSession("answerer", room);
  setState("connecting", `Deriving the key and joining room ${room}…`);
  try {
    const key = await deriveKeyFromPassphrase(room, passInput.value);
    await runConnect(s, key);
  } catch (err) {
    onFailure(s, err);
  }
}

/** A share link `#room=CODE&k=SECRET` joins at once; `#room=CODE` only fills the form. */
async function joinFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const room = params.get("room");
  if (!room || session) return;
  const k = params.get("k");
  $("join-code").value = room;
  if (!k) {
    setState("idle", `Enter the passphrase for room ${room} and press Join.`);
    $("join-passphrase").focus();
    return;
  }
  const s = newSession("answerer", room);
  setState("connecting", `Joining room ${room}…`);
  try {
    const key = await deriveKeyFromSecret(room, decodeSecret(k));
    await runConnect(s, key);
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      err = Object.assign(new Error("This link is damaged: its key part is not valid. Ask for the link again."), { forPeople: true });
    }
    onFailure(s, err);
  }
}

async function runConnect(s, key) {
  const { pc, channel } = await connect({
    baseUrl: location.origin,
    room: s.room,
    key,
    role: s.role,
    iceTransportPolicy: relayWanted() ? "relay" : "all",
    signal: s.abort.signal,
    timeoutMs: s.role === "offerer" ? OFFERER_TIMEOUT_MS : ANSWERER_TIMEOUT_MS,
    onStatus: ({ phase, detail }) => {
      if (detail) console.debug(`switchboard ${performance.now().toFixed(1)}: ${phase}: ${detail}`);
      if (phase === "negotiating" && session === s) {
        setState("connecting", s.role === "offerer" ? "The other person is here. Connecting…" : "Found the room. Connecting…");
      }
    },
  });
  if (session !== s) {
    pc.close();
    return;
  }
  onConnected(s, pc, channel);
}

function onFailure(s, err) {
  if (session !== s) return;
  s.abort.abort();
  s.pc?.close();
  if (err && err.name === "AbortError") return; // cancelled on purpose; already handled
  console.warn("switchboard demo:", err);
  if (s.role === "offerer" && s.room && !s.connected) deleteRoomQuietly(s.room);
  const wasConnected = s.connected;
  if (!wasConnected) session = null;
  setState("error", describeError(err, s.room));
  if (err instanceof WrongKeyError && !wasConnected) {
    const field = $("join-passphrase");
    field.setAttribute("aria-invalid", "true");
    if (s.role === "answerer" && !location.hash.includes("k=")) field.focus();
  }
}

/** A message a person can act on, for every error `connect` and the API can produce. */
function describeError(err, room) {
  if (err instanceof WrongKeyError) {
    return "Cannot decrypt: wrong passphrase or link. Check the passphrase (or ask for a new link) and try again.";
  }
  if (err instanceof SignalError) {
    switch (err.code) {
      case "room_not_found":
        return `Room ${room ?? ""} was not found: it may have expired, or the code is mistyped.`;
      case "rate_limited":
      case "too_many_watchers":
        return "The server is busy (too many requests). Wait a moment and try again.";
      case "network_error":
        return "Cannot reach the signaling server. Check your connection and try again.";
      default:
        return `The signaling server refused: ${err.message} (${err.code}, HTTP ${err.status}).`;
    }
  }
  if (err instanceof ConnectError) {
    const m = err.message.charAt(0).toUpperCase() + err.message.slice(1);
    if (err.reason === "room_busy") return `${m}.`;
    if (err.reason === "no_turn") return "Force relay (TURN) is on, but this server offers no TURN relay. Untick it and try again.";
    if (err.reason === "room_gone") return `${m}. Create a new room to try again.`;
    return `${m}.`;
  }
  if (err && err.forPeople) return err.message;
  return `Something went wrong: ${(err && err.message) || err}`;
}

function checkPassphrase(input) {
  if (input.value.length >= MIN_PASSPHRASE) {
    input.removeAttribute("aria-invalid");
    return true;
  }
  invalid(input, `The passphrase must be at least ${MIN_PASSPHRASE} characters long.`);
  return false;
}

function invalid(input, message) {
  input.setAttribute("aria-invalid", "true");
  setStatus(message, "error");
  input.focus();
}

function showInvite(code, link) {
  $("room-code").textContent = code;
  $("link-row").hidden = !link;
  $("link").value = link ?? "";
  $("passphrase-note").hidden = !!link;
}

async function copyLink() {
  const input = $("link");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // No async clipboard (insecure context, permission): the old way still works in a click.
    input.select();
    if (!document.execCommand("copy")) {
      setStatus("Could not copy: select the link and copy it yourself.", "error");
      return;
    }
  }
  setStatus("Link copied. Waiting for the other person to open it.");
}

function cancel() {
  const s = session;
  if (!s) return;
  s.abort.abort();
  if (s.role === "offerer" && s.room && !s.connected) deleteRoomQuietly(s.room);
  session = null;
  setState("idle", "Cancelled. Create a room, or join one.");
}

function deleteRoomQuietly(room) {
  // keepalive: also works while the page unloads. The room would expire anyway.
  fetch(client.roomUrl(room), { method: "DELETE", keepalive: true }).catch(() => {});
}

function startOver() {
  leave(false);
  location.replace(location.pathname); // a clean page, and no key left in the address bar
}

function leave(reload = true) {
  const s = session;
  if (s && s.channel && s.channel.readyState === "open") {
    try {
      s.channel.send(JSON.stringify({ t: "bye" }));
    } catch {
      // closing anyway
    }
  }
  if (s) {
    s.abort.abort();
    clearInterval(s.pathTimer);
    s.channel?.close();
    s.pc?.close();
    if (s.role === "offerer" && s.room && !s.connected) deleteRoomQuietly(s.room);
  }
  if (reload) location.replace(location.pathname);
}

// ---------------------------------------------------------------------------------------
// Connected: chat, files, path indicator
// ---------------------------------------------------------------------------------------

function onConnected(s, pc, channel) {
  Object.assign(s, { pc, channel, connected: true, incoming: null, sendQueue: Promise.resolve() });
  // The key has done its job: keep it out of the address bar (screen sharing, history).
  if (location.hash) history.replaceState(null, "", location.pathname);
  setState("connected", "Connected. Messages and files are encrypted end to end by WebRTC; the path in use is shown below.", "ok");
  channel.bufferedAmountLowThreshold = LOW_WATER;
  channel.addEventListener("message", (e) => onChannelMessage(s, e.data));
  channel.addEventListener("close", () => onClosed(s, s.peerLeft ? "The other person left." : "The connection was lost."));
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed") onClosed(s, "The connection was lost (network path failed).");
  });
  updatePath(s);
  s.pathTimer = setInterval(() => updatePath(s), 2000);
  $("chat-input").focus();
}

function onClosed(s, message) {
  if (session !== s || s.closed) return;
  s.closed = true;
  clearInterval(s.pathTimer);
  for (const id of ["chat-input", "chat-send", "file-input", "file-send", "leave"]) $(id).disabled = true;
  if (s.peerLeft) setState("idle", `${message} Start over to connect again.`);
  else setState("error", `${message} Start over to connect again.`);
  $("restart").hidden = false;
  $("restart").textContent = "Start over";
}

const PATH_LABELS = {
  host: "direct (host)",
  srflx: "direct through NAT (server-reflexive, srflx)",
  prflx: "direct (peer-reflexive, prflx)",
  relay: "relayed through TURN (relay)",
};

/** The selected ICE candidate pair's local candidate type: how our packets leave. */
async function updatePath(s) {
  let type = "unknown";
  let detail = "";
  try {
    const stats = await s.pc.getStats();
    let pair = null;
    stats.forEach((r) => {
      if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
    });
    // Firefox marks the pair itself instead of naming it on the transport.
    if (!pair) stats.forEach((r) => r.type === "candidate-pair" && r.selected && (pair = r));
    if (!pair) stats.forEach((r) => r.type === "candidate-pair" && r.nominated && r.state === "succeeded" && (pair = r));
    const local = pair && stats.get(pair.localCandidateId);
    if (local) {
      type = local.candidateType;
      detail = local.protocol ? ` over ${local.protocol.toUpperCase()}` : "";
    }
  } catch {
    // the connection closed under us: keep the last value
    return;
  }
  const el = $("path");
  if (el.dataset.path === type && el.dataset.detail === detail) return;
  el.dataset.path = type;
  el.dataset.detail = detail;
  el.textContent = (PATH_LABELS[type] ?? type) + detail;
}

function onChannelMessage(s, data) {
  if (typeof data !== "string") return onChunk(s, data);
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  switch (msg.t) {
    case "chat":
      addMessage("them", String(msg.text ?? ""));
      break;
    case "file":
      startIncoming(s, msg);
      break;
    case "file-end":
      finishIncoming(s, msg);
      break;
    case "file-ack":
      s.acks?.get(msg.id)?.(msg);
      break;
    case "bye":
      s.peerLeft = true;
      break;
  }
}

function addMessage(who, text) {
  const li = document.createElement("li");
  li.className = `msg ${who}`;
  li.dataset.from = who;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who === "me" ? "You" : "Them";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text; // never innerHTML: the peer's text is untrusted
  li.append(label, body);
  const list = $("messages");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function onChatSubmit(event) {
  event.preventDefault();
  const s = session;
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !s || !s.channel || s.channel.readyState !== "open") return;
  s.channel.send(JSON.stringify({ t: "chat", text }));
  addMessage("me", text);
  input.value = "";
  input.focus();
}

// --- files -----------------------------------------------------------------------------

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function sha256Hex(buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One row of the transfers list, with small setters. */
function addTransfer(direction, name, size) {
  const node = $("transfer-template").content.firstElementChild.cloneNode(true);
  node.dataset.direction = direction;
  node.querySelector(".dir").textContent = direction === "out" ? "Sending" : "Receiving";
  node.querySelector(".name").textContent = name;
  node.querySelector(".size").textContent = `(${formatBytes(size)})`;
  const bar = node.querySelector("progress");
  bar.max = Math.max(size, 1);
  bar.setAttribute("aria-label", `${direction === "out" ? "Sending" : "Receiving"} ${name}`);
  $("transfers").prepend(node);
  return {
    node,
    progress(n) {
      bar.value = Math.min(n, bar.max);
    },
    state(text, kind = "info") {
      const p = node.querySelector(".transfer-state");
      p.textContent = text;
      p.dataset.kind = kind;
    },
    done(hash, verified) {
      bar.value = bar.max;
      node.querySelector(".sha256").textContent = hash;
      node.dataset.done = "true";
      node.dataset.verified = String(verified);
      node.querySelector(".dir").textContent = direction === "out" ? "Sent" : "Received";
    },
  };
}

function onFileSubmit(event) {
  event.preventDefault();
  const s = session;
  const input = $("file-input");
  const file = input.files && input.files[0];
  if (!file || !s || !s.connected) return;
  input.value = "";
  // One file at a time keeps the receiver's bookkeeping trivial (the channel is ordered).
  s.sendQueue = s.sendQueue.then(() => sendFile(s, file)).catch((err) => {
    console.warn("switchboard demo: send failed", err);
  });
}

async function sendFile(s, file) {
  const item = addTransfer("out", file.name, file.size);
  if (file.size > MAX_FILE_BYTES) {
    item.state(`Too large: this demo sends files up to ${formatBytes(MAX_FILE_BYTES)}.`, "error");
    return;
  }
  item.state("Reading and hashing…");
  const buffer = await file.arrayBuffer();
  const hash = await sha256Hex(buffer);
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  s.acks ??= new Map();
  const acked = new Promise((resolve) => s.acks.set(id, resolve));
  const ch = s.channel;
  ch.send(JSON.stringify({ t: "file", id, name: file.name, size: file.size, mime: file.type }));
  item.state("Sending…");
  for (let off = 0; off < buffer.byteLength; off += CHUNK_BYTES) {
    if (ch.bufferedAmount > HIGH_WATER) await drained(ch);
    if (ch.readyState !== "open") {
      item.state("Failed: the connection closed.", "error");
      return;
    }
    ch.send(buffer.slice(off, off + CHUNK_BYTES));
    item.progress(off + CHUNK_BYTES - ch.bufferedAmount);
  }
  ch.send(JSON.stringify({ t: "file-end", id, sha256: hash }));
  item.state("Sent; waiting for the other side to confirm…");
  const ack = await acked;
  s.acks.delete(id);
  item.done(hash, ack.sha256 === hash);
  item.state(ack.sha256 === hash ? "Delivered: the other side's SHA-256 matches." : "Delivered, but the other side computed a different SHA-256!", ack.sha256 === hash ? "ok" : "error");
}

/** Resolves when the channel's queue drops below bufferedAmountLowThreshold (or it closes). */
function drained(ch) {
  return new Promise((resolve) => {
    const done = () => {
      ch.removeEventListener("bufferedamountlow", done);
      ch.removeEventListener("close", done);
      resolve();
    };
    ch.addEventListener("bufferedamountlow", done);
    ch.addEventListener("close", done);
  });
}

function startIncoming(s, msg) {
  const size = Number(msg.size);
  const name = String(msg.name || "file").slice(0, 255);
  const item = addTransfer("in", name, size);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_FILE_BYTES) {
    item.state("Refused: file too large for this demo.", "error");
    s.incoming = { id: msg.id, refused: true };
    return;
  }
  s.incoming = { id: msg.id, name, size, mime: String(msg.mime || ""), chunks: [], received: 0, item };
  item.state("Receiving…");
}

function onChunk(s, data) {
  const inc = s.incoming;
  if (!inc || inc.refused) return;
  inc.received += data.byteLength;
  if (inc.received > inc.size) {
    inc.item.state("Failed: more data than announced.", "error");
    inc.refused = true;
    return;
  }
  inc.chunks.push(data);
  inc.item.progress(inc.received);
}

async function finishIncoming(s, msg) {
  const inc = s.incoming;
  if (!inc || inc.id !== msg.id || inc.refused) return;
  s.incoming = null;
  const blob = new Blob(inc.chunks, { type: inc.mime || "application/octet-stream" });
  const hash = await sha256Hex(await blob.arrayBuffer());
  const ok = hash === msg.sha256 && inc.received === inc.size;
  s.channel.send(JSON.stringify({ t: "file-ack", id: inc.id, sha256: hash }));
  inc.item.done(hash, ok);
  inc.item.state(ok ? "Received; SHA-256 matches the sender's." : "Received, but the SHA-256 does not match the sender's!", ok ? "ok" : "error");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = inc.name; // the browser sanitises the name
  a.textContent = `Download ${inc.name}`;
  a.dataset.testid = "transfer-download";
  inc.item.node.querySelector(".download-row").append(a);
}

// ---------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------

function init() {
  $("create-form").addEventListener("submit", onCreate);
  $("join-form").addEventListener("submit", onJoin);
  $("chat-form").addEventListener("submit", onChatSubmit);
  $("file-form").addEventListener("submit", onFileSubmit);
  $("copy-link").addEventListener("click", copyLink);
  $("cancel").addEventListener("click", cancel);
  $("leave").addEventListener("click", () => leave(true));
  $("restart").addEventListener("click", () => (document.body.dataset.state === "connecting" ? cancel() : startOver()));
  const usePass = $("use-passphrase");
  const syncPassRow = () => {
    $("create-passphrase-row").hidden = !usePass.checked;
    $("use-passphrase").setAttribute("aria-expanded", String(usePass.checked));
  };
  usePass.addEventListener("change", () => {
    syncPassRow();
    if (usePass.checked) $("create-passphrase").focus();
  });
  syncPassRow();
  // A remembered preference, so whoever always wants TURN need not tick it before a link joins.
  const relay = $("relay");
  try {
    relay.checked = localStorage.getItem(RELAY_PREF) === "1";
    relay.addEventListener("change", () => localStorage.setItem(RELAY_PREF, relay.checked ? "1" : "0"));
  } catch {
    // storage disabled: no memory, no problem
  }
  addEventListener("hashchange", joinFromFragment);
  addEventListener("pagehide", () => leave(false));
  setState("idle");
  joinFromFragment();
}

init();
