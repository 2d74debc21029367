// SignalClient against a running signal-server (skipped unless SB_BASE is set):
//   SB_BASE=http://127.0.0.1:8080 node --test signal-server/web/test/
// Node has no EventSource, so `watch` runs its long-poll fallback here; the browser driver
// (tests/browser/demo_pair.mjs) covers the SSE path.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SignalClient, SignalError } from "../client/switchboard.js";

const BASE = process.env.SB_BASE;
const skip = BASE ? false : "SB_BASE not set (needs a running signal-server)";
const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);

test("rooms and blobs", { skip }, async () => {
  const c = new SignalClient(BASE + "/");
  const room = await c.createRoom();
  assert.match(room.code, /^[2-9A-HJKMNP-Z]{6}$/);
  assert.equal(room.version, 0);

  const put = await c.putBlob(room.code, "offer", bytes("one"), { ifNoneMatch: true });
  assert.equal(put.version, 1);
  assert.equal(text(await c.getBlob(room.code, "offer")), "one");
  await assert.rejects(c.putBlob(room.code, "offer", bytes("two"), { ifNoneMatch: true }), (err) => {
    assert.ok(err instanceof SignalError);
    assert.equal(err.code, "precondition_failed");
    assert.equal(err.status, 412);
    return true;
  });
  assert.equal(await c.getBlob(room.code, "nothing-here"), null);
  await assert.rejects(c.getBlob("NOSUCHROOM", "offer"), { name: "SignalError", code: "room_not_found", status: 404 });
  await assert.rejects(c.putBlob(room.code, "-bad slot", bytes("x")), { code: "invalid_slot_name", status: 400 });

  const own = `t-${Date.now()}`;
  assert.equal((await c.openRoom(own)).created, true);
  const again = await c.openRoom(own);
  assert.equal(again.created, false);
  assert.equal(again.room.code, own);
  await c.deleteRoom(own);
  await assert.rejects(c.getRoom(own), { code: "room_not_found" });
});

test("turnCredentials: object or null", { skip }, async () => {
  const creds = await new SignalClient(BASE).turnCredentials();
  if (creds !== null) {
    assert.ok(Array.isArray(creds.iceServers));
    assert.ok(creds.ttl > 0);
  }
});

test("network failure is a SignalError with status 0", { skip }, async () => {
  await assert.rejects(new SignalClient("http://127.0.0.1:9").createRoom(), { name: "SignalError", code: "network_error", status: 0 });
});

test("watch (long-poll fallback): replay from 0, live changes, room deletion", { skip }, async () => {
  const c = new SignalClient(BASE);
  const { code } = await c.createRoom();
  await c.putBlob(code, "offer", bytes("o"));
  const seen = [];
  const statuses = [];
  let ended, live;
  const endedP = new Promise((r) => (ended = r));
  const liveP = new Promise((r) => (live = r));
  const w = c.watch(code, {
    after: 0,
    onChange: (ev) => seen.push(`${ev.op}:${ev.slot ?? ""}@${ev.version}`),
    onStatus: (s) => {
      statuses.push(s.state);
      if (s.state === "live") live();
      if (s.state === "ended" || s.state === "failed") ended(s);
    },
  });
  // Deleting the room before the first poll reaches the server would make it a 404.
  await liveP;
  await c.putBlob(code, "answer", bytes("a"));
  await c.putBlob(code, "cand-a-0", bytes("c"));
  await c.deleteRoom(code);
  const end = await Promise.race([endedP, new Promise((r) => setTimeout(() => r("timeout"), 10000))]);
  w.close();
  assert.equal(end.state, "ended");
  assert.equal(end.transport, "poll");
  // A poll that was waiting sees the deletion; one sent just after it finds no room.
  if (end.reason === "room_deleted") assert.deepEqual(seen, ["put:offer@1", "put:answer@2", "put:cand-a-0@3", "room_deleted:@4"]);
  else {
    assert.equal(end.reason, "room_gone");
    assert.deepEqual(seen, ["put:offer@1", "put:answer@2", "put:cand-a-0@3"].slice(0, seen.length));
  }
  assert.equal(statuses[0], "connecting");
  assert.ok(statuses.includes("live"));
});

test("watch of a missing room fails with the API's error", { skip }, async () => {
  const c = new SignalClient(BASE);
  const s = await new Promise((resolve) => {
    c.watch("NOSUCHROOM", { onStatus: (st) => (st.state === "failed" || st.state === "ended") && resolve(st) });
  });
  assert.equal(s.state, "failed");
  assert.equal(s.error.code, "room_not_found");
});

test("watch close() stops it; an aborted signal too", { skip }, async () => {
  const c = new SignalClient(BASE);
  const { code } = await c.createRoom();
  const seen = [];
  const ac = new AbortController();
  const w = c.watch(code, { onChange: (ev) => seen.push(ev.slot), signal: ac.signal });
  await new Promise((r) => setTimeout(r, 200));
  ac.abort();
  await c.putBlob(code, "late", bytes("x"));
  await new Promise((r) => setTimeout(r, 300));
  w.close();
  assert.deepEqual(seen, []);
});
