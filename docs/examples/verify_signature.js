// Verify a Vizochok webhook request in Node.js (no dependencies, Node 18 or newer).
//
// Pass the raw request body as a Buffer, before any JSON parsing. With Express, give the
// webhook routes a raw body parser instead of express.json():
//
//   const { verifyVizochokRequest } = require("./verify_signature");
//   app.post("/api/vizochok/check-products", express.raw({ type: "*/*" }), (req, res) => {
//     const reason = verifyVizochokRequest({
//       secret: process.env.VIZOCHOK_WEBHOOK_SECRET,
//       body: req.body, // a Buffer, because of express.raw()
//       headers: req.headers,
//     });
//     if (reason !== null) return res.status(401).json({ error: reason });
//     const payload = JSON.parse(req.body.toString("utf8"));
//     ...
//   });
"use strict";

const crypto = require("node:crypto");

const TOLERANCE_SECONDS = 300;
const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const TIMESTAMP = /^[0-9]{1,12}$/;

function header(headers, name) {
  // Node lower-cases incoming header names, but other sources may not.
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name.toLowerCase()) {
      return Array.isArray(value) ? value[0] : value;
    }
  }
  return undefined;
}

// Returns null for a valid request, or the reason to reject it with 401. Accepts the
// request when X-VIZOCHOK-Signature or, during a secret rotation,
// X-VIZOCHOK-Signature-Next matches. The timestamp may be at most 300 s before or after
// this server's clock. `now` is Unix seconds and defaults to the current time.
function verifyVizochokRequest({ secret, body, headers, now }) {
  // A parsed object or a string here means that a JSON or text parser read the body first.
  if (!(body instanceof Uint8Array)) {
    throw new TypeError(
      `body must be the raw request bytes as a Buffer, got ${body === null ? "null" : typeof body}; ` +
        'give the webhook route express.raw({ type: "*/*" }) instead of express.json()',
    );
  }
  const candidates = [
    header(headers, "X-VIZOCHOK-Signature"),
    header(headers, "X-VIZOCHOK-Signature-Next"),
  ].filter((value) => value);
  const timestamp = header(headers, "X-VIZOCHOK-Timestamp");
  if (candidates.length === 0) return "missing_signature";
  if (!timestamp) return "missing_timestamp";
  const wellFormed = candidates.filter((value) => SIGNATURE.test(value));
  if (wellFormed.length === 0) return "malformed_signature";
  if (!TIMESTAMP.test(timestamp)) return "malformed_timestamp";
  const currentTime = now === undefined ? Date.now() / 1000 : now;
  if (Math.abs(currentTime - Number(timestamp)) > TOLERANCE_SECONDS) return "stale_timestamp";

  const signedPayload = Buffer.concat([Buffer.from(`${timestamp}.`, "ascii"), body]);
  const expected = Buffer.from(
    "sha256=" + crypto.createHmac("sha256", Buffer.from(secret, "utf8")).update(signedPayload).digest("hex"),
    "ascii",
  );
  // Both buffers are 71 bytes, as timingSafeEqual requires. Every candidate is compared.
  const matches = wellFormed.map((value) => crypto.timingSafeEqual(expected, Buffer.from(value, "ascii")));
  return matches.some(Boolean) ? null : "invalid_signature";
}

module.exports = { verifyVizochokRequest, TOLERANCE_SECONDS };
