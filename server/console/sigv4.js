/* sigv4.js: AWS Signature Version 4 for the console's Kinesis calls.
 *
 * WebCrypto (crypto.subtle) computes SHA-256 and HMAC-SHA-256. Browsers offer it only in a
 * secure context (https, or http on localhost / 127.0.0.1); when the console is opened over
 * plain http from another address, the small SHA-256 below does the same work. */
"use strict";

const SigV4 = (() => {
  const te = new TextEncoder();
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

  // ---- fallback SHA-256 (FIPS 180-4) and HMAC (RFC 2104) ----
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  function sha256js(data) {
    const l = data.length, n = ((l + 9 + 63) >> 6) << 6, m = new Uint8Array(n);
    m.set(data); m[l] = 0x80;
    const dv = new DataView(m.buffer);
    dv.setUint32(n - 4, (l * 8) >>> 0); dv.setUint32(n - 8, Math.floor(l / 0x20000000));
    const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const w = new Uint32Array(64);
    const r = (x, s) => (x >>> s) | (x << (32 - s));
    for (let o = 0; o < n; o += 64) {
      for (let i = 0; i < 16; i++) w[i] = dv.getUint32(o + 4 * i);
      for (let i = 16; i < 64; i++) {
        const s0 = r(w[i - 15], 7) ^ r(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = r(w[i - 2], 17) ^ r(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (r(e, 6) ^ r(e, 11) ^ r(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((r(a, 2) ^ r(a, 13) ^ r(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32), ov = new DataView(out.buffer);
    h.forEach((v, i) => ov.setUint32(4 * i, v));
    return out;
  }
  function hmacjs(key, msg) {
    if (key.length > 64) key = sha256js(key);
    const k = new Uint8Array(64); k.set(key);
    const ipad = k.map((b) => b ^ 0x36), opad = k.map((b) => b ^ 0x5c);
    const inner = new Uint8Array(64 + msg.length); inner.set(ipad); inner.set(msg, 64);
    const outer = new Uint8Array(96); outer.set(opad); outer.set(sha256js(inner), 64);
    return sha256js(outer);
  }

  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  async function sha256(bytes) {
    return subtle ? new Uint8Array(await subtle.digest("SHA-256", bytes)) : sha256js(bytes);
  }
  async function hmac(key, text) {
    const msg = te.encode(text);
    if (!subtle) return hmacjs(key, msg);
    const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Uint8Array(await subtle.sign("HMAC", k, msg));
  }

  /* Headers for a POST of body (a string) to path on host, for service in region:
   * content-type, x-amz-date, x-amz-target (and x-amz-security-token) signed with host. */
  async function sign({ host, path = "/", region, service, accessKeyId, secretAccessKey, sessionToken },
                      headers, body) {
    const now = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const day = now.slice(0, 8);
    const h = Object.assign({}, headers, { "x-amz-date": now });
    if (sessionToken) h["x-amz-security-token"] = sessionToken;
    const all = Object.assign({ host }, h);
    const names = Object.keys(all).map((k) => k.toLowerCase()).sort();
    const lower = {};
    for (const k of Object.keys(all)) lower[k.toLowerCase()] = String(all[k]).trim().replace(/\s+/g, " ");
    const canonical = ["POST", path, "", names.map((n) => `${n}:${lower[n]}\n`).join(""), names.join(";"),
      hex(await sha256(te.encode(body)))].join("\n");
    const scope = `${day}/${region}/${service}/aws4_request`;
    const toSign = ["AWS4-HMAC-SHA256", now, scope, hex(await sha256(te.encode(canonical)))].join("\n");
    let key = await hmac(te.encode("AWS4" + secretAccessKey), day);
    key = await hmac(key, region);
    key = await hmac(key, service);
    key = await hmac(key, "aws4_request");
    const signature = hex(await hmac(key, toSign));
    h.Authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, ` +
      `Signature=${signature}`;
    return h;
  }

  return { sign, sha256hex: async (text) => hex(await sha256(te.encode(text))), webcrypto: !!subtle,
    fallback: { sha256: (text) => hex(sha256js(te.encode(text))), hmac: (key, text) => hex(hmacjs(te.encode(key), te.encode(text))) } };
})();
