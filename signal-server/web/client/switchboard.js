// Switchboard browser client, v1: end-to-end encrypted WebRTC signaling over a
// Switchboard signal-server.
//
//   import { SignalClient, connect, deriveKeyFromSecret, newLinkSecret } from "/client/v1/switchboard.js";
//
// The server only ever stores opaque blobs in short-lived rooms. Everything a peer writes
// (SDP offer/answer, ICE candidates) is encrypted here with a key the server never sees:
// derived from a passphrase (PBKDF2) or from a random secret carried in the link's
// #fragment (HKDF), which browsers do not send to servers.
//
// No build step and no dependencies: WebCrypto, fetch, EventSource and RTCPeerConnection.
// The module touches no DOM and no window at import time, so Node >= 20 can import it
// (crypto and SignalClient work there; `connect` needs an RTCPeerConnection).

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/** A blob failed authentication: the key (passphrase or link) is wrong, or the bytes were
 * tampered with or moved to another slot/room. The two are indistinguishable by design. */
export class WrongKeyError extends Error {
  static {
    this.prototype.name = "WrongKeyError"; // on the prototype, so stack traces show it too
  }
  /** @param {string} [message] */
  constructor(message = "cannot decrypt: wrong passphrase or link") {
    super(message);
  }
}

/** Bytes that are not a Switchboard v1 blob at all (too short, unknown version byte). */
export class BlobFormatError extends Error {
  static {
    this.prototype.name = "BlobFormatError";
  }
}

/** An error answer of the signaling API: `code` is the API's `error.code` (`room_not_found`,
 * `rate_limited`, ...), `status` the HTTP status (0: network failure), `retryAfter` the
 * seconds a 429/503 asked us to wait (or null). */
export class SignalError extends Error {
  static {
    this.prototype.name = "SignalError";
  }
  /** @param {string} code @param {string} message @param {number} status
   * @param {{retryAfter?: number|null, cause?: unknown}} [extra] */
  constructor(code, message, status, { retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    Object.assign(this, { code, status, retryAfter });
  }
}

/** `connect` could not finish. `reason`: `timeout`, `ice_failed`, `no_turn` (relay-only
 * without a TURN server), `room_busy` (someone else already offered/answered in this
 * room), `room_gone` (deleted or expired). */
export class ConnectError extends Error {
  static {
    this.prototype.name = "ConnectError";
  }
  /** @param {"timeout"|"ice_failed"|"no_turn"|"room_busy"|"room_gone"} reason @param {string} message */
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------
// Crypto
// ---------------------------------------------------------------------------------------

/** OWASP's current recommendation for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet). */
export const PBKDF2_ITERATIONS = 600000;
/** First byte of every encrypted blob; bump when the format changes. */
export const BLOB_VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_INFO = "switchboard/v1/blob-key";

const utf8 = new TextEncoder();
const subtle = () => {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  // Browsers hide WebCrypto outside secure contexts (plain http on a non-loopback host).
  if (!s) throw new Error("WebCrypto is unavailable: serve the page over https (or from localhost)");
  return s;
};

/** The salt binds every key to its room: the same passphrase gives other keys elsewhere. */
function roomSalt(roomCode) {
  return utf8.encode("switchboard/v1/room/" + roomCode);
}

/** @param {string} roomCode @param {string} passphrase @param {number} iterations */
async function pbkdf2Setup(roomCode, passphrase, iterations) {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError("iterations must be a positive integer");
  // NFC so that the "same" passphrase typed on two keyboards/OSes gives the same bytes.
  const raw = utf8.encode(String(passphrase).normalize("NFC"));
  const base = await subtle().importKey("raw", raw, "PBKDF2", false, ["deriveKey", "deriveBits"]);
  return { base, params: { name: "PBKDF2", hash: "SHA-256", salt: roomSalt(roomCode), iterations } };
}

/** @param {string} roomCode @param {Uint8Array} secretBytes */
async function hkdfSetup(roomCode, secretBytes) {
  if (!(secretBytes instanceof Uint8Array) || secretBytes.length < 16) {
    throw new RangeError("the link secret must be at least 16 random bytes");
  }
  const base = await subtle().importKey("raw", secretBytes, "HKDF", false, ["deriveKey", "deriveBits"]);
  return { base, params: { name: "HKDF", hash: "SHA-256", salt: roomSalt(roomCode), info: utf8.encode(HKDF_INFO) } };
}

const AES_KEY = { name: "AES-GCM", length: 256 };

/**
 * Room key from a typed passphrase: PBKDF2-SHA-256, salt "switchboard/v1/room/<code>".
 * Deliberately slow (600k iterations): the room's blobs are readable by anyone who knows
 * the room code, so the passphrase must withstand offline guessing.
 * @param {string} roomCode
 * @param {string} passphrase
 * @param {{iterations?: number}} [options]
 * @returns {Promise<CryptoKey>} non-extractable AES-GCM-256 key
 */
export async function deriveKeyFromPassphrase(roomCode, passphrase, { iterations = PBKDF2_ITERATIONS } = {}) {
  const { base, params } = await pbkdf2Setup(roomCode, passphrase, iterations);
  return subtle().deriveKey(params, base, AES_KEY, false, ["encrypt", "decrypt"]);
}

/**
 * Room key from a high-entropy link secret: HKDF-SHA-256 (salt as above, info
 * "switchboard/v1/blob-key"). Fast, because the secret is random, not guessable.
 * @param {string} roomCode
 * @param {Uint8Array} secretBytes at least 16 bytes (newLinkSecret gives 32)
 * @returns {Promise<CryptoKey>} non-extractable AES-GCM-256 key
 */
export async function deriveKeyFromSecret(roomCode, secretBytes) {
  const { base, params } = await hkdfSetup(roomCode, secretBytes);
  return subtle().deriveKey(params, base, AES_KEY, false, ["encrypt", "decrypt"]);
}

/** The raw 32 key bytes `deriveKeyFromPassphrase` would use. For tests and interop with
 * other implementations only; apps should keep the non-extractable CryptoKey.
 * @param {string} roomCode @param {string} passphrase @param {{iterations?: number}} [options]
 * @returns {Promise<Uint8Array>} */
export async function deriveKeyBytesFromPassphrase(roomCode, passphrase, { iterations = PBKDF2_ITERATIONS } = {}) {
  const { base, params } = await pbkdf2Setup(roomCode, passphrase, iterations);
  return new Uint8Array(await subtle().deriveBits(params, base, 256));
}

/** The raw 32 key bytes `deriveKeyFromSecret` would use (tests and interop only).
 * @param {string} roomCode @param {Uint8Array} secretBytes @returns {Promise<Uint8Array>} */
export async function deriveKeyBytesFromSecret(roomCode, secretBytes) {
  const { base, params } = await hkdfSetup(roomCode, secretBytes);
  return new Uint8Array(await subtle().deriveBits(params, base, 256));
}

/** 32 random bytes for a share link. @returns {Uint8Array} */
export function newLinkSecret() {
  return globalThis.crypto.getRandomValues(new Uint8Array(32));
}

/** base64url without padding (safe in a URL fragment). @param {Uint8Array} bytes @returns {string} */
export function encodeSecret(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of encodeSecret; throws TypeError on anything that is not base64url.
 * @param {string} text @returns {Uint8Array} */
export function decodeSecret(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new TypeError("not a base64url string");
  }
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Encrypt with AES-256-GCM. Output: 0x01 || 12-byte random IV || ciphertext+16-byte tag.
 * `aad` should be `roomCode + "/" + slot`: it is authenticated, so a blob copied into
 * another slot or room no longer decrypts (no replaying an old offer as an answer).
 * @param {CryptoKey} key @param {Uint8Array} plaintext @param {string} aad
 * @returns {Promise<Uint8Array>}
 */
export async function encryptBlob(key, plaintext, aad) {
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = await subtle().encrypt({ name: "AES-GCM", iv, additionalData: utf8.encode(aad) }, key, plaintext);
  const out = new Uint8Array(1 + IV_BYTES + sealed.byteLength);
  out[0] = BLOB_VERSION;
  out.set(iv, 1);
  out.set(new Uint8Array(sealed), 1 + IV_BYTES);
  return out;
}

/**
 * Decrypt what encryptBlob wrote.
 * @param {CryptoKey} key @param {Uint8Array} bytes @param {string} aad
 * @returns {Promise<Uint8Array>}
 * @throws {WrongKeyError} authentication failed (wrong key, tampered, wrong aad)
 * @throws {BlobFormatError} too short or unknown version byte
 */
export async function decryptBlob(key, bytes, aad) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("decryptBlob wants a Uint8Array");
  if (bytes.length < 1 + IV_BYTES + TAG_BYTES) throw new BlobFormatError(`blob too short (${bytes.length} bytes)`);
  if (bytes[0] !== BLOB_VERSION) {
    throw new BlobFormatError(`unknown blob version 0x${bytes[0].toString(16).padStart(2, "0")}`);
  }
  const params = { name: "AES-GCM", iv: bytes.subarray(1, 1 + IV_BYTES), additionalData: utf8.encode(aad) };
  try {
    return new Uint8Array(await subtle().decrypt(params, key, bytes.subarray(1 + IV_BYTES)));
  } catch (err) {
    // WebCrypto reports every GCM tag mismatch as a bare OperationError.
    if (err && err.name === "OperationError") throw new WrongKeyError();
    throw err;
  }
}

async function sealJson(key, value, aad) {
  return encryptBlob(key, utf8.encode(JSON.stringify(value)), aad);
}

async function openJson(key, bytes, aad) {
  const plain = await decryptBlob(key, bytes, aad);
  return JSON.parse(new TextDecoder().decode(plain));
}

// ---------------------------------------------------------------------------------------
// Signaling API client
// ---------------------------------------------------------------------------------------

/** @typedef {{name: string, version: number, size: number, content_type: string, expires_at?: number}} SlotInfo */
/** @typedef {{code: string, version: number, created_at: number, expires_at: number, slots: SlotInfo[]}} RoomInfo */
/** @typedef {{type: string, version?: number, op?: string, slot?: string, size?: number, resync?: boolean}} WatchEvent */
/** `ended` carries `reason`: room_deleted, room_expired or room_gone (vanished between two
 * polls); `failed` carries the `error` (a SignalError that retrying will not fix).
 * @typedef {{state: "connecting"|"live"|"reconnecting"|"ended"|"failed", transport: "sse"|"poll", reason?: string, error?: unknown}} WatchStatus */

const WATCH_EVENT_TYPES = ["ready", "change", "resync", "room_expired", "unavailable", "shutdown"];

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Exponential backoff with jitter, so many clients do not reconnect in lockstep. */
function backoffMs(attempt) {
  const base = Math.min(10000, 250 * 2 ** Math.min(attempt, 6));
  return base / 2 + Math.random() * (base / 2);
}

function isTurnServer(server) {
  const urls = Array.isArray(server.urls) ? server.urls : [server.urls];
  return urls.some((u) => /^turns?:/i.test(String(u)));
}

/** Worth retrying: network failures, overload (429) and server-side trouble (5xx). */
function isTransient(err) {
  return err instanceof SignalError && (err.status === 0 || err.status === 429 || err.status >= 500);
}

/** Client of the signal-server HTTP API (`/v1/...`). */
export class SignalClient {
  /** @param {string} [baseUrl] e.g. "https://signal.example.com"; "" means this page's origin */
  constructor(baseUrl = "") {
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
  }

  /** @param {string} code @param {string} [rest] @returns {string} */
  roomUrl(code, rest = "") {
    return `${this.baseUrl}/v1/rooms/${encodeURIComponent(code)}${rest}`;
  }

  /** fetch, turning network failures and non-2xx answers into SignalError.
   * @param {string} method @param {string} url
   * @param {{body?: BodyInit, headers?: Record<string, string>, signal?: AbortSignal}} [init]
   * @returns {Promise<Response>} */
  async request(method, url, { body, headers, signal } = {}) {
    let res;
    try {
      res = await fetch(url, { method, body, headers, signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new SignalError("network_error", `cannot reach the signaling server (${err && err.message})`, 0, { cause: err });
    }
    if (res.ok) return res;
    let code = `http_${res.status}`;
    let message = `${method} ${url}: HTTP ${res.status}`;
    try {
      const j = await res.json();
      if (j && j.error) ({ code = code, message = message } = j.error);
    } catch {
      // Not our JSON (a proxy's HTML page, say): keep the generic message.
    }
    const ra = Number(res.headers.get("retry-after"));
    throw new SignalError(code, message, res.status, { retryAfter: Number.isFinite(ra) && ra > 0 ? ra : null });
  }

  /** New room under a server-allocated code. @returns {Promise<RoomInfo>} */
  async createRoom() {
    return (await this.request("POST", `${this.baseUrl}/v1/rooms`)).json();
  }

  /** Create a room under our own code, or get the live one of that code.
   * @param {string} code @returns {Promise<{room: RoomInfo, created: boolean}>} */
  async openRoom(code) {
    const res = await this.request("PUT", this.roomUrl(code));
    return { room: await res.json(), created: res.status === 201 };
  }

  /** @param {string} code @param {{signal?: AbortSignal}} [opts] @returns {Promise<RoomInfo>} */
  async getRoom(code, { signal } = {}) {
    return (await this.request("GET", this.roomUrl(code), { signal })).json();
  }

  /** @param {string} code @returns {Promise<void>} */
  async deleteRoom(code) {
    await this.request("DELETE", this.roomUrl(code));
  }

  /**
   * Write a blob. With `ifNoneMatch` the write only succeeds if the slot is empty
   * (otherwise SignalError `precondition_failed`, status 412).
   * @param {string} code @param {string} slot @param {Uint8Array} bytes
   * @param {{ifNoneMatch?: boolean, contentType?: string, signal?: AbortSignal}} [opts]
   * @returns {Promise<{version: number, room_expires_at: number, expires_at: number|null}>}
   */
  async putBlob(code, slot, bytes, { ifNoneMatch = false, contentType = "application/octet-stream", signal } = {}) {
    const headers = { "Content-Type": contentType };
    if (ifNoneMatch) headers["If-None-Match"] = "*";
    const res = await this.request("PUT", this.roomUrl(code, `/blobs/${encodeURIComponent(slot)}`), { body: bytes, headers, signal });
    return res.json();
  }

  /**
   * Read a blob: its bytes, or null when the slot does not exist. A missing *room* is
   * still an error (SignalError `room_not_found`): callers usually want to say so.
   * @param {string} code @param {string} slot @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<Uint8Array|null>}
   */
  async getBlob(code, slot, { signal } = {}) {
    try {
      const res = await this.request("GET", this.roomUrl(code, `/blobs/${encodeURIComponent(slot)}`), { signal });
      return new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      if (err instanceof SignalError && err.status === 404 && err.code !== "room_not_found") return null;
      throw err;
    }
  }

  /**
   * Fresh STUN/TURN servers for RTCPeerConnection, or null when the server has none.
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{iceServers: RTCIceServer[], ttl: number}|null>}
   */
  async turnCredentials({ signal } = {}) {
    try {
      return await (await this.request("GET", `${this.baseUrl}/v1/turn-credentials`, { signal })).json();
    } catch (err) {
      if (err instanceof SignalError && err.code === "turn_not_configured") return null;
      throw err;
    }
  }

  /**
   * Follow a room's changes until closed. Tries Server-Sent Events first and falls back to
   * long-polling when SSE cannot be opened (no EventSource, or a proxy that breaks it).
   * After a network blip it reconnects with backoff and resumes after the last version
   * seen, so no change is missed; on `resync` it re-reads the room and reports its slots
   * as `put` changes (flagged `resync: true`). Changes may thus repeat: dedupe by
   * slot + version.
   * @param {string} code
   * @param {{after?: number, onChange?: (ev: WatchEvent) => void,
   *          onStatus?: (s: WatchStatus) => void, signal?: AbortSignal,
   *          transport?: "auto"|"poll"}} [opts]
   *   after: deliver changes after this room version (0 = everything since creation);
   *   default: from now. transport: "poll" skips SSE (a proxy known to buffer streams).
   * @returns {{close: () => void, readonly version: number|undefined}}
   */
  watch(code, { after, onChange = () => {}, onStatus = () => {}, signal, transport: want = "auto" } = {}) {
    const client = this;
    const stop = new AbortController();
    let last = after;
    let transport = want !== "poll" && typeof EventSource === "function" ? "sse" : "poll";
    let attempt = 0;
    let es = null;
    let live = false;
    let everLive = false;
    let queue = Promise.resolve();
    const isClosed = () => stop.signal.aborted;

    const status = (state, extra = {}) => {
      if (!isClosed() || state === "ended" || state === "failed") onStatus({ state, transport, ...extra });
    };
    const setLive = () => {
      attempt = 0;
      if (!live) status("live");
      live = everLive = true;
    };
    const setReconnecting = (error) => {
      live = false;
      status("reconnecting", error ? { error } : {});
    };
    const close = () => {
      if (isClosed()) return;
      stop.abort();
      es?.close();
      signal?.removeEventListener("abort", close);
    };
    const end = (state, extra) => {
      if (isClosed()) return;
      status(state, extra);
      close();
    };
    if (signal?.aborted) stop.abort();
    signal?.addEventListener("abort", close, { once: true });

    // Synthesize `put`s for slots written after `since`: the change log no longer has them.
    async function resync(ev) {
      const room = await client.getRoom(code, { signal: stop.signal });
      const since = last ?? -1;
      for (const s of [...room.slots].sort((a, b) => a.version - b.version)) {
        if (s.version > since) onChange({ type: "change", op: "put", room: code, slot: s.name, version: s.version, size: s.size, resync: true });
      }
      last = Math.max(ev.version, since);
    }

    // Returns "final" when the stream is over, "reconnect" when it must be reopened.
    async function handle(ev) {
      switch (ev.type) {
        case "ready":
          // A `ready` later than our `after` means the log no longer reaches back: a resync
          // follows, and needs the old version to know which slots are news.
          if (last === undefined) last = ev.version;
          setLive();
          return null;
        case "change":
          if (last !== undefined && ev.version <= last) return null; // replayed after a reconnect
          last = ev.version;
          onChange(ev);
          if (ev.op === "room_deleted") {
            end("ended", { reason: "room_deleted" });
            return "final";
          }
          return null;
        case "resync":
          await resync(ev);
          return null;
        case "room_expired":
          end("ended", { reason: "room_expired" });
          return "final";
        case "unavailable":
        case "shutdown":
          return "reconnect";
        default:
          return null; // a newer server's event type: ignore
      }
    }

    function fail(err) {
      end("failed", { error: err });
    }

    // One long-poll round; returns what handle() said about its events.
    async function pollOnce(wait) {
      // Without `after` a poll waits for the next change; wait=0 first learns the version.
      const q = last === undefined ? "?wait=0" : `?after=${last}&wait=${wait}`;
      const res = await client.request("GET", client.roomUrl(code, "/changes" + q), { signal: stop.signal });
      const body = await res.json();
      setLive();
      let verdict = null;
      for (const ev of body.events) {
        const next = await handle(ev);
        if (next === "final") return "final";
        if (next === "reconnect") verdict = "reconnect";
      }
      if (last === undefined || body.version > last) last = body.version;
      return verdict;
    }

    // A failed request ends the watch, fails it, or (transient) waits; true = try again.
    async function onRequestError(err) {
      if (isClosed()) return false;
      // Between two requests the room may have gone, change log and all: it ended.
      if (everLive && err instanceof SignalError && err.code === "room_not_found") {
        end("ended", { reason: "room_gone" });
        return false;
      }
      if (!isTransient(err)) {
        fail(err);
        return false;
      }
      setReconnecting(err);
      await sleep(err.retryAfter ? err.retryAfter * 1000 : backoffMs(attempt++), stop.signal);
      return !isClosed();
    }

    async function poll() {
      while (!isClosed()) {
        try {
          const verdict = await pollOnce(30);
          if (verdict === "final") return;
          if (verdict === "reconnect") await sleep(backoffMs(attempt++), stop.signal);
        } catch (err) {
          if (!(await onRequestError(err))) return;
        }
      }
    }

    let sseWorked = false;
    function openSse() {
      const url = client.roomUrl(code, "/events") + (last !== undefined ? `?after=${last}` : "");
      let opened = false;
      let retired = false;
      const source = new EventSource(url);
      es = source;
      // Both a final event and the stream's end (onerror) ask for a reconnect: once is enough.
      const reopen = async (probe) => {
        if (retired) return;
        retired = true;
        source.close();
        if (isClosed()) return;
        setReconnecting();
        await sleep(backoffMs(attempt++), stop.signal);
        if (probe) {
          // EventSource hides HTTP statuses. One quick poll tells a blip from a room that
          // is gone (404), and catches up on what happened meanwhile.
          try {
            if ((await pollOnce(0)) === "final") return;
          } catch (err) {
            if (!(await onRequestError(err))) return;
          }
        }
        if (!isClosed()) openSse();
      };
      source.onopen = () => {
        opened = sseWorked = true;
      };
      source.onerror = () => {
        if (es !== source || retired || isClosed()) return;
        if (opened) {
          // The stream broke. EventSource would retry by itself, but without backoff and
          // forever; we resume with our own `after` instead.
          reopen(false);
        } else if (sseWorked) {
          reopen(true); // it worked before: a blip, or the room is gone
        } else {
          // Never opened: long-poll shows why (room_not_found...), and it also works where
          // a proxy buffers event streams. Stay with it.
          retired = true;
          source.close();
          transport = "poll";
          poll();
        }
      };
      const onMessage = (m) => {
        let ev;
        try {
          ev = JSON.parse(m.data);
        } catch {
          return;
        }
        queue = queue
          .then(async () => {
            if (isClosed() || es !== source || retired) return;
            const next = await handle(ev);
            if (next === "final") source.close();
            else if (next === "reconnect") await reopen(false);
          })
          .catch((err) => (isTransient(err) ? reopen(true) : fail(err))); // a resync's read failed
      };
      for (const t of WATCH_EVENT_TYPES) source.addEventListener(t, onMessage);
      source.addEventListener("message", onMessage);
    }

    if (!isClosed()) {
      status("connecting");
      if (transport === "sse") openSse();
      else poll();
    }
    return {
      close,
      get version() {
        return last;
      },
    };
  }
}

// ---------------------------------------------------------------------------------------
// connect(): one WebRTC data channel through a room
// ---------------------------------------------------------------------------------------
//
// Room layout (every blob encrypted with the room key, aad = "<room>/<slot>"):
//   offer          {type:"offer", sdp}    offerer, write-once
//   answer         {type:"answer", sdp}   answerer, write-once (a second answerer gets 412)
//   cand-o-<n>     {c:[RTCIceCandidateInit...], end?:true}   offerer's trickled candidates
//   cand-a-<n>     the same for the answerer
// Candidates gathered while a write is in flight go out together in the next blob, which
// keeps well under the room's slot limit.

/**
 * @typedef {Object} ConnectOptions
 * @property {string} [baseUrl] signal-server origin ("" = this page's)
 * @property {string} room room code
 * @property {CryptoKey} key room key (deriveKeyFromSecret / deriveKeyFromPassphrase)
 * @property {"offerer"|"answerer"} role the offerer must be in the room first or later; either order works
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces TURN
 * @property {RTCIceServer[]} [iceServers] default: fetched from /v1/turn-credentials
 * @property {(s: {phase: string, detail?: string}) => void} [onStatus] progress for a UI
 * @property {AbortSignal} [signal] abort (closes the peer connection)
 * @property {number} [timeoutMs] give up after this long (default 30000)
 * @property {SignalClient} [client] reuse a client instead of one made from baseUrl
 */

/**
 * Connect to the other peer of a room and return an open, ordered data channel
 * (binaryType "arraybuffer").
 * @param {ConnectOptions} options
 * @returns {Promise<{pc: RTCPeerConnection, channel: RTCDataChannel}>}
 * @throws {WrongKeyError} the other peer's offer/answer does not decrypt with our key
 * @throws {ConnectError} timeout, ICE failure, room busy or gone
 * @throws {SignalError} the signaling server refused (room_not_found, rate_limited, ...)
 */
export async function connect({
  baseUrl = "",
  room,
  key,
  role,
  iceTransportPolicy = "all",
  iceServers,
  onStatus = () => {},
  signal,
  timeoutMs = 30000,
  client = new SignalClient(baseUrl),
}) {
  if (role !== "offerer" && role !== "answerer") throw new TypeError(`role must be "offerer" or "answerer", not ${role}`);
  if (!room || !key) throw new TypeError("connect needs a room code and a key");
  if (typeof RTCPeerConnection !== "function") throw new Error("this environment has no RTCPeerConnection");
  const isOfferer = role === "offerer";
  const mine = isOfferer ? "o" : "a";
  const theirs = isOfferer ? "a" : "o";
  const theirSdpSlot = isOfferer ? "answer" : "offer";
  const theirCandSlot = new RegExp(`^cand-${theirs}-\\d+$`);
  const aad = (slot) => `${room}/${slot}`;
  const stop = new AbortController(); // ends the watch, pending requests and writers

  let phase = isOfferer ? "preparing" : "joining";
  const report = (p, detail) => {
    phase = p;
    try {
      onStatus({ phase: p, detail });
    } catch {
      // A broken UI callback must not break the connection.
    }
  };

  let settle;
  const outcome = new Promise((resolve, reject) => (settle = { resolve, reject }));
  outcome.catch(() => {}); // always awaited below; this only keeps it from counting as unhandled
  let finished = false;
  const fail = (err) => {
    if (!finished) settle.reject(err);
    finished = true;
  };

  const timer = setTimeout(() => {
    const secs = Math.round(timeoutMs / 100) / 10;
    fail(
      phase === "waiting" || phase === "joining"
        ? new ConnectError("timeout", `timed out after ${secs} s waiting for the other peer in room ${room}`)
        : new ConnectError(
            "timeout",
            `timed out after ${secs} s connecting to the other peer (ICE ${pc ? pc.iceConnectionState : "not started"})` +
              (iceTransportPolicy === "relay" ? ": is the TURN server reachable?" : ": try forcing a TURN relay"),
          ),
    );
  }, timeoutMs);
  const onAbort = () => fail(signal.reason ?? new DOMException("connect aborted", "AbortError"));
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });

  /** @type {RTCPeerConnection|null} */
  let pc = null;
  let pcReady;
  const pcCreated = new Promise((resolve) => (pcReady = resolve));
  let remoteSdpApplied = false;
  const appliedCandSlots = new Set();
  const pendingCandidates = [];
  let applyChain = Promise.resolve();

  // Fetch + decrypt as soon as a slot shows up (in parallel), apply strictly in order.
  function onSlot(slot) {
    const isSdp = slot === theirSdpSlot;
    if (!isSdp && !theirCandSlot.test(slot)) return;
    if (isSdp ? remoteSdpApplied : appliedCandSlots.has(slot)) return;
    const fetched = (async () => {
      const bytes = await client.getBlob(room, slot, { signal: stop.signal });
      if (!bytes) return null;
      try {
        return await openJson(key, bytes, aad(slot));
      } catch (err) {
        // A wrong key shows on the offer/answer first: fail at once, never hang. Garbage in
        // a candidate slot (someone else who knows the code) is just skipped.
        if (isSdp) throw err;
        report(phase, `ignored undecryptable ${slot}`);
        return null;
      }
    })();
    fetched.catch(fail);
    applyChain = applyChain
      .then(async () => {
        const value = await fetched;
        if (!value || finished) return;
        await pcCreated;
        if (isSdp) await applyRemoteSdp(value);
        else await applyCandidates(slot, value);
      })
      .catch(fail);
  }

  async function applyRemoteSdp(desc) {
    if (remoteSdpApplied) return;
    remoteSdpApplied = true;
    report("negotiating", isOfferer ? "answer received" : "offer received");
    await pc.setRemoteDescription({ type: desc.type, sdp: desc.sdp });
    for (const c of pendingCandidates.splice(0)) await addCandidate(c);
    if (!isOfferer) {
      await pc.setLocalDescription(await pc.createAnswer());
      await writeOnce("answer", { type: "answer", sdp: pc.localDescription.sdp });
    }
  }

  async function applyCandidates(slot, value) {
    if (appliedCandSlots.has(slot)) return;
    appliedCandSlots.add(slot);
    const list = Array.isArray(value.c) ? value.c : [];
    report(phase, `${slot}: ${list.length} remote candidate(s)${value.end ? ", end" : ""}`);
    if (value.end) list.push(null);
    for (const c of list) {
      if (remoteSdpApplied) await addCandidate(c);
      else pendingCandidates.push(c);
    }
  }

  async function addCandidate(c) {
    try {
      if (c === null) await pc.addIceCandidate();
      else await pc.addIceCandidate(c);
    } catch (err) {
      // One bad candidate (e.g. an address family we lack) must not end the attempt.
      report(phase, `candidate rejected: ${err && err.message}`);
    }
  }

  async function writeOnce(slot, value) {
    const bytes = await sealJson(key, value, aad(slot));
    try {
      await putWithRetry(slot, bytes, true);
    } catch (err) {
      if (err instanceof SignalError && err.code === "precondition_failed") {
        throw new ConnectError("room_busy", `room ${room} already has an ${slot}: it is in use, create a new room`);
      }
      throw err;
    }
  }

  // Transient failures (network blip, 429, 5xx) are retried with backoff for as long as
  // the attempt lives: the overall timeout bounds it, and giving up early would lose a
  // candidate the other side may need.
  async function putWithRetry(slot, bytes, ifNoneMatch) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await client.putBlob(room, slot, bytes, { ifNoneMatch, signal: stop.signal });
      } catch (err) {
        // A write-once PUT retried after its first try did land (the answer got lost)
        // answers 412: fine if the slot holds our very bytes.
        if (attempt > 0 && err instanceof SignalError && err.code === "precondition_failed" && (await holds(slot, bytes))) return null;
        if (!isTransient(err) || stop.signal.aborted) throw err;
        report(phase, `writing ${slot} failed (${err.message}); retrying`);
        await sleep(err.retryAfter ? err.retryAfter * 1000 : backoffMs(attempt), stop.signal);
      }
    }
  }

  async function holds(slot, bytes) {
    const stored = await client.getBlob(room, slot, { signal: stop.signal }).catch(() => null);
    return !!stored && stored.length === bytes.length && stored.every((b, i) => b === bytes[i]);
  }

  // Trickle: one write in flight at a time; whatever gathers meanwhile goes in the next.
  const outgoing = { queue: [], end: false, n: 0, busy: false };
  async function flushCandidates() {
    if (outgoing.busy) return;
    outgoing.busy = true;
    try {
      while (!finished && (outgoing.queue.length || outgoing.end)) {
        const value = { c: outgoing.queue.splice(0) };
        if (outgoing.end) value.end = true;
        outgoing.end = false;
        const slot = `cand-${mine}-${outgoing.n++}`;
        await putWithRetry(slot, await sealJson(key, value, aad(slot)), true);
        report(phase, `${slot}: wrote ${value.c.length} candidate(s)${value.end ? ", end" : ""}`);
      }
    } catch (err) {
      if (!finished) fail(err);
    } finally {
      outgoing.busy = false;
    }
  }

  let watcher = null;
  try {
    // Watch from version 0: the room's whole history replays, so it does not matter who
    // arrived first. (A room whose log no longer reaches back resyncs from its slot list.)
    watcher = client.watch(room, {
      after: 0,
      signal: stop.signal,
      onChange: (ev) => {
        if (ev.op === "put" && ev.slot) onSlot(ev.slot);
        else if (ev.op === "room_deleted") fail(new ConnectError("room_gone", `room ${room} was deleted`));
      },
      onStatus: (s) => {
        report(phase, `watch ${s.state} (${s.transport})`);
        if (s.state === "failed") fail(s.error);
        else if (s.state === "ended") fail(new ConnectError("room_gone", `room ${room} ${s.reason === "room_expired" ? "expired" : "is gone (deleted or expired)"}`));
      },
    });
    // The answerer also asks for the offer directly: a missing room or a wrong key then
    // shows in one round trip, without waiting for the watch to open.
    if (!isOfferer) onSlot("offer");

    report(phase, "started");
    const servers = iceServers ?? (await raceOutcome(fetchIceServers()));
    if (finished) await outcome;
    report(phase, `${servers.length} ICE server(s)`);
    if (iceTransportPolicy === "relay" && !servers.some(isTurnServer)) {
      throw new ConnectError("no_turn", "relay-only was asked for, but there is no TURN server to relay through");
    }
    pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy });
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate && e.candidate.candidate) outgoing.queue.push(e.candidate.toJSON());
      else if (!e.candidate) outgoing.end = true;
      else return;
      flushCandidates();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") {
        fail(new ConnectError("ice_failed", "no network path to the other peer (ICE failed)" +
          (iceTransportPolicy === "relay" ? "; is the TURN server reachable?" : "; try forcing a TURN relay")));
      }
    });
    pc.addEventListener("iceconnectionstatechange", () => finished || report(phase, `ICE ${pc.iceConnectionState}`));

    const channelOpen = (ch) => {
      ch.binaryType = "arraybuffer";
      const opened = () => {
        report("open");
        finished || settle.resolve(ch);
        finished = true;
      };
      if (ch.readyState === "open") opened();
      else ch.addEventListener("open", opened, { once: true });
      ch.addEventListener("close", () => fail(new ConnectError("ice_failed", "the data channel closed before opening")), { once: true });
    };

    if (isOfferer) {
      channelOpen(pc.createDataChannel("switchboard", { ordered: true }));
      await raceOutcome(pc.setLocalDescription(await pc.createOffer()));
      pcReady();
      await raceOutcome(writeOnce("offer", { type: "offer", sdp: pc.localDescription.sdp }));
      if (!remoteSdpApplied) report("waiting", "waiting for the other peer");
    } else {
      pc.addEventListener("datachannel", (e) => channelOpen(e.channel));
      pcReady();
    }
    const channel = await outcome;
    return { pc, channel };
  } catch (err) {
    finished = true;
    pc?.close();
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    watcher?.close();
    stop.abort();
  }

  // No STUN/TURN is fine for a direct connection on one network; only "relay" needs TURN.
  async function fetchIceServers() {
    try {
      return (await client.turnCredentials({ signal: stop.signal }))?.iceServers ?? [];
    } catch (err) {
      if (iceTransportPolicy === "relay" || (err && err.name === "AbortError")) throw err;
      report(phase, `no TURN credentials (${err && err.message}); trying without`);
      return [];
    }
  }

  // Await a step, but give up as soon as the attempt as a whole has failed.
  function raceOutcome(p) {
    return Promise.race([p, outcome]);
  }
}
