// Unit tests of the browser module's crypto, against Node's own (independent)
// implementation in node:crypto. Run: node --test signal-server/web/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";

import {
  BLOB_VERSION,
  BlobFormatError,
  PBKDF2_ITERATIONS,
  WrongKeyError,
  decodeSecret,
  decryptBlob,
  deriveKeyBytesFromPassphrase,
  deriveKeyBytesFromSecret,
  deriveKeyFromPassphrase,
  deriveKeyFromSecret,
  encodeSecret,
  encryptBlob,
  newLinkSecret,
} from "../client/switchboard.js";

const ROOM = "K7QX2M";
const PASSPHRASE = "correct horse battery staple";
const SALT = Buffer.from("switchboard/v1/room/" + ROOM);
const INFO = Buffer.from("switchboard/v1/blob-key");
const SECRET = Uint8Array.from({ length: 32 }, (_, i) => i); // 00 01 .. 1f
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const utf8 = (s) => new TextEncoder().encode(s);

// Computed offline (node:crypto, 2026-11) and pasted in, so that any change of salt,
// info, hash, iteration count or output length is caught even if both sides change.
const KNOWN = {
  pbkdf2_1000: "afee14ce561a38f74253a21300b420200874b94518bb5695da29f19365288cf6",
  pbkdf2_600000: "bc42eaaa92988287e18c6938c98ac8736ca2a96869caa805a871c0114197f82b",
  hkdf: "a46f07aa5737ddc2ae3362e9c72a934707a5405ddebfd9bbceb90b23f5dc4943",
  // 0x01 || IV 00..0b || AES-256-GCM("hello switchboard", aad "K7QX2M/offer") with the hkdf key
  blob: "01000102030405060708090a0b3c793382eb71a79d4b165ece3e658e3756a593664e7119a58b6895b11702cb37c5",
};

/** A blob in the v1 format, built with node:crypto from raw key bytes. */
function nodeSeal(keyBytes, plaintext, aad, iv = nodeCrypto.randomBytes(12)) {
  const c = nodeCrypto.createCipheriv("aes-256-gcm", keyBytes, iv);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return new Uint8Array(Buffer.concat([Buffer.from([1]), iv, ct]));
}

function nodeOpen(keyBytes, blob, aad) {
  const b = Buffer.from(blob);
  assert.equal(b[0], 1);
  const d = nodeCrypto.createDecipheriv("aes-256-gcm", keyBytes, b.subarray(1, 13));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(b.subarray(b.length - 16));
  return Buffer.concat([d.update(b.subarray(13, b.length - 16)), d.final()]);
}

test("PBKDF2 bytes match node:crypto (small iteration count)", async () => {
  for (const [room, pass, iterations] of [
    [ROOM, PASSPHRASE, 1000],
    ["room-Code_42", "pässwörd with spaces", 5],
    ["ABCD", "", 1],
  ]) {
    const ours = await deriveKeyBytesFromPassphrase(room, pass, { iterations });
    const theirs = nodeCrypto.pbkdf2Sync(pass, Buffer.from("switchboard/v1/room/" + room), iterations, 32, "sha256");
    assert.equal(hex(ours), theirs.toString("hex"), `${room}/${pass}/${iterations}`);
  }
});

test("PBKDF2 known vector (pasted constant)", async () => {
  assert.equal(hex(await deriveKeyBytesFromPassphrase(ROOM, PASSPHRASE, { iterations: 1000 })), KNOWN.pbkdf2_1000);
  assert.equal(hex(nodeCrypto.pbkdf2Sync(PASSPHRASE, SALT, 1000, 32, "sha256")), KNOWN.pbkdf2_1000);
});

test("PBKDF2 default is 600000 iterations, and the CryptoKey is those bytes", async () => {
  assert.equal(PBKDF2_ITERATIONS, 600000);
  const key = await deriveKeyFromPassphrase(ROOM, PASSPHRASE); // default count
  // The key is non-extractable, so prove which bytes it holds by decrypting a blob that
  // node:crypto sealed with the known 600k-iteration bytes.
  const blob = nodeSeal(Buffer.from(KNOWN.pbkdf2_600000, "hex"), utf8("default count"), `${ROOM}/offer`);
  assert.equal(new TextDecoder().decode(await decryptBlob(key, blob, `${ROOM}/offer`)), "default count");
});

test("passphrases are NFC-normalised (composed and decomposed é agree)", async () => {
  const composed = "caf\u00e9 au lait";
  const decomposed = "cafe\u0301 au lait";
  const a = await deriveKeyBytesFromPassphrase(ROOM, composed, { iterations: 10 });
  const b = await deriveKeyBytesFromPassphrase(ROOM, decomposed, { iterations: 10 });
  assert.equal(hex(a), hex(b));
  assert.equal(hex(a), hex(nodeCrypto.pbkdf2Sync(composed, SALT, 10, 32, "sha256")));
});

test("HKDF bytes match node:crypto and the known vector", async () => {
  const ours = await deriveKeyBytesFromSecret(ROOM, SECRET);
  const theirs = Buffer.from(nodeCrypto.hkdfSync("sha256", SECRET, SALT, INFO, 32));
  assert.equal(hex(ours), theirs.toString("hex"));
  assert.equal(hex(ours), KNOWN.hkdf);
  // Another room, same secret: another key (the salt binds the room).
  assert.notEqual(hex(await deriveKeyBytesFromSecret("OTHER1", SECRET)), KNOWN.hkdf);
});

test("derived CryptoKeys are non-extractable AES-GCM-256", async () => {
  for (const key of [await deriveKeyFromSecret(ROOM, SECRET), await deriveKeyFromPassphrase(ROOM, "x", { iterations: 2 })]) {
    assert.equal(key.extractable, false);
    assert.equal(key.algorithm.name, "AES-GCM");
    assert.equal(key.algorithm.length, 256);
    assert.deepEqual([...key.usages].sort(), ["decrypt", "encrypt"]);
    await assert.rejects(globalThis.crypto.subtle.exportKey("raw", key));
  }
});

test("known ciphertext (sealed by node:crypto) decrypts with the HKDF key", async () => {
  const key = await deriveKeyFromSecret(ROOM, SECRET);
  const plain = await decryptBlob(key, new Uint8Array(Buffer.from(KNOWN.blob, "hex")), `${ROOM}/offer`);
  assert.equal(new TextDecoder().decode(plain), "hello switchboard");
  // And node:crypto reproduces the pasted blob byte for byte.
  assert.equal(hex(nodeSeal(Buffer.from(KNOWN.hkdf, "hex"), utf8("hello switchboard"), `${ROOM}/offer`, Buffer.from(SECRET.subarray(0, 12)))), KNOWN.blob);
});

test("encrypt/decrypt round trip; format is version || IV || ciphertext+tag", async () => {
  const key = await deriveKeyFromSecret(ROOM, SECRET);
  for (const size of [0, 1, 17, 4096]) {
    const plain = nodeCrypto.randomBytes(size);
    const blob = await encryptBlob(key, new Uint8Array(plain), `${ROOM}/cand-o-0`);
    assert.ok(blob instanceof Uint8Array);
    assert.equal(blob.length, 1 + 12 + size + 16);
    assert.equal(blob[0], BLOB_VERSION);
    assert.equal(BLOB_VERSION, 0x01);
    assert.deepEqual(Buffer.from(await decryptBlob(key, blob, `${ROOM}/cand-o-0`)), plain);
    // node:crypto opens it with the raw key bytes: same format, same key.
    assert.deepEqual(nodeOpen(Buffer.from(KNOWN.hkdf, "hex"), blob, `${ROOM}/cand-o-0`), plain);
  }
  // Fresh IV every time.
  const a = await encryptBlob(key, utf8("same"), "r/s");
  const b = await encryptBlob(key, utf8("same"), "r/s");
  assert.notEqual(hex(a.subarray(1, 13)), hex(b.subarray(1, 13)));
});

test("wrong key -> WrongKeyError", async () => {
  const right = await deriveKeyFromPassphrase(ROOM, "right passphrase", { iterations: 10 });
  const wrong = await deriveKeyFromPassphrase(ROOM, "wrong passphrase", { iterations: 10 });
  const blob = await encryptBlob(right, utf8("offer sdp"), `${ROOM}/offer`);
  await assert.rejects(decryptBlob(wrong, blob, `${ROOM}/offer`), (err) => {
    assert.ok(err instanceof WrongKeyError);
    assert.equal(err.name, "WrongKeyError");
    assert.match(err.message, /cannot decrypt: wrong passphrase or link/);
    return true;
  });
  // Same secret, other room: also a wrong key.
  const otherRoom = await deriveKeyFromSecret("ZZZZ99", SECRET);
  const blob2 = await encryptBlob(await deriveKeyFromSecret(ROOM, SECRET), utf8("x"), `${ROOM}/offer`);
  await assert.rejects(decryptBlob(otherRoom, blob2, `${ROOM}/offer`), WrongKeyError);
});

test("any tampered byte -> WrongKeyError", async () => {
  const key = await deriveKeyFromSecret(ROOM, SECRET);
  const blob = await encryptBlob(key, utf8("the answer"), `${ROOM}/answer`);
  // Every byte after the version byte: IV, ciphertext and tag are all authenticated.
  for (let i = 1; i < blob.length; i++) {
    const t = blob.slice();
    t[i] ^= 0x01;
    await assert.rejects(decryptBlob(key, t, `${ROOM}/answer`), WrongKeyError, `byte ${i}`);
  }
  // Truncated by one byte (still long enough to parse): authentication fails too.
  await assert.rejects(decryptBlob(key, blob.subarray(0, blob.length - 1), `${ROOM}/answer`), WrongKeyError);
});

test("wrong aad (blob moved to another slot or room) -> WrongKeyError", async () => {
  const key = await deriveKeyFromSecret(ROOM, SECRET);
  const blob = await encryptBlob(key, utf8("{\"type\":\"offer\"}"), `${ROOM}/offer`);
  await assert.rejects(decryptBlob(key, blob, `${ROOM}/answer`), WrongKeyError);
  await assert.rejects(decryptBlob(key, blob, `${ROOM}/cand-a-0`), WrongKeyError);
  await assert.rejects(decryptBlob(key, blob, `OTHER1/offer`), WrongKeyError);
});

test("bad version byte or too short -> BlobFormatError, not WrongKeyError", async () => {
  const key = await deriveKeyFromSecret(ROOM, SECRET);
  const blob = await encryptBlob(key, utf8("x"), "r/s");
  for (const v of [0x00, 0x02, 0xff]) {
    const t = blob.slice();
    t[0] = v;
    await assert.rejects(decryptBlob(key, t, "r/s"), (err) => {
      assert.ok(err instanceof BlobFormatError, `version ${v}: ${err}`);
      assert.ok(!(err instanceof WrongKeyError));
      assert.equal(err.name, "BlobFormatError");
      assert.match(err.message, /version/);
      return true;
    });
  }
  for (const n of [0, 1, 13, 28]) {
    await assert.rejects(decryptBlob(key, blob.subarray(0, n), "r/s"), BlobFormatError, `length ${n}`);
  }
  await assert.rejects(decryptBlob(key, "not bytes", "r/s"), TypeError);
});

test("link secrets: 32 random bytes, base64url round trip", () => {
  const s = newLinkSecret();
  assert.equal(s.length, 32);
  assert.notEqual(hex(s), hex(newLinkSecret()));
  const text = encodeSecret(s);
  assert.match(text, /^[A-Za-z0-9_-]{43}$/); // no padding, URL-safe
  assert.equal(text, Buffer.from(s).toString("base64url"));
  assert.deepEqual(decodeSecret(text), s);
  for (let n = 0; n < 40; n++) {
    const b = new Uint8Array(nodeCrypto.randomBytes(n));
    assert.deepEqual(decodeSecret(encodeSecret(b)), b);
    assert.deepEqual(decodeSecret(Buffer.from(b).toString("base64url")), b);
  }
  for (const bad of ["a+b", "ab/c", "abc=", "a", "ab cd", 42]) assert.throws(() => decodeSecret(bad), TypeError, String(bad));
});

test("a link secret must be long enough to be a secret", async () => {
  await assert.rejects(deriveKeyFromSecret(ROOM, new Uint8Array(8)), RangeError);
  await assert.rejects(deriveKeyFromSecret(ROOM, "not bytes"), RangeError);
  await assert.rejects(deriveKeyFromPassphrase(ROOM, "x", { iterations: 0 }), RangeError);
});
