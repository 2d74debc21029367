// SignalClient against a running signal-server (skipped unless SB_BASE is set):
//   SB_BASE=http://127.0.0.1:8080 node --experimental-eventsource --test signal-server/web/test/
// Without that flag Node has no EventSource: the SSE variants skip, and only the long-poll
// path runs here (the browser driver, tests/browser/demo_pair.mjs, covers SSE too).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";

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
    transport: "poll",
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

/** A loopback TCP proxy to `target` whose `blip(ms)` cuts every connection and refuses new
 * ones for `ms`: a network blip between the client and the server. */
async function blipProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {}); // the blip's reset: expected
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (p) => new Promise((resolve, reject) => server.once("error", reject).listen(p, "127.0.0.1", resolve));
  await listen(0);
  const own = server.address().port;
  return {
    url: `http://127.0.0.1:${own}`,
    async blip(ms, during = async () => {}) {
      await new Promise((resolve) => {
        server.close(resolve);
        for (const s of sockets) s.destroy();
      });
      await during();
      await new Promise((r) => setTimeout(r, ms));
      await listen(own);
    },
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** Resolves when `pred()` holds (checked every 20 ms); rejects after `ms` with `what`. */
async function until(pred, what, ms = 15000) {
  for (const end = Date.now() + ms; !pred(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const transport of ["sse", "poll"]) {
  const noSse = transport === "sse" && typeof EventSource !== "function" && "no EventSource (run node with --experimental-eventsource)";
  test(`watch (${transport}) reconnects after a network blip and misses nothing`, { skip: skip || noSse }, async () => {
    const direct = new SignalClient(BASE);
    const proxy = await blipProxy(BASE);
    const { code } = await direct.createRoom();
    const seen = [];
    const statuses = [];
    const w = new SignalClient(proxy.url).watch(code, {
      after: 0,
      transport: transport === "poll" ? "poll" : "auto",
      onChange: (ev) => seen.push(`${ev.slot}@${ev.version}`),
      onStatus: (s) => statuses.push(`${s.state}/${s.transport}`),
    });
    try {
      await direct.putBlob(code, "offer", bytes("o"));
      await until(() => seen.length === 1, "the first change");
      // Written while the client cannot reach the server: the resumed watch must catch up.
      await proxy.blip(500, async () => {
        await direct.putBlob(code, "answer", bytes("a"));
        await direct.putBlob(code, "cand-a-0", bytes("c"));
      });
      await until(() => seen.length >= 3, "the changes made during the blip");
      await until(() => statuses.at(-1) === `live/${transport}`, "the watch to be live again");
      await direct.putBlob(code, "cand-a-1", bytes("d"));
      await until(() => seen.length >= 4, "a change after the blip");
      assert.deepEqual(seen, ["offer@1", "answer@2", "cand-a-0@3", "cand-a-1@4"]);
      assert.ok(statuses.includes(`reconnecting/${transport}`), statuses.join(" "));
      assert.ok(!statuses.some((s) => s.startsWith("failed") || s.startsWith("ended")), statuses.join(" "));
    } finally {
      w.close();
      proxy.close();
      await direct.deleteRoom(code).catch(() => {});
    }
  });
}
