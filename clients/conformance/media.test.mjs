// Uploads over the media service's HTTP API, with upload:progress / upload:complete on
// the uploader's sockets. Skipped (saying why) while this version has no media service.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertKeys, cfg, connect, next, ok, send, token, uid } from "./lib.mjs";

// A 1×1 PNG; padded with a private chunk so that the upload reports progress more than once.
const PNG_1PX = Buffer.from(
  "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5e1c6b00000000049454e44ae426082",
  "hex",
);

test("upload: POST /v1/uploads, PUT the bytes, upload:progress to 100 and upload:complete on the sockets; PAYLOAD_TOO_LARGE", async (t) => {
  if (!cfg.mediaUrl) {
    t.skip("no media service in this version (services/media has no worker yet)");
    return;
  }
  const me = uid("uploader");
  const jwt = await token(me, "Uploader");
  const sock = await connect(me, { gateway: 1 });
  const headers = { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" };
  const created = await fetch(`${cfg.mediaUrl}/v1/uploads`, { method: "POST", headers, body: JSON.stringify({ fileName: "dot.png", size: PNG_1PX.length, mimeType: "image/png" }) });
  assert.equal(created.status, 201);
  const { uploadId, uploadUrl } = await created.json();
  const put = await fetch(uploadUrl, { method: "PUT", headers: { Authorization: `Bearer ${jwt}` }, body: PNG_1PX });
  assert.ok(put.ok, `PUT ${put.status}`);
  const complete = await next(sock, "upload:complete", (e) => e.uploadId === uploadId);
  assertKeys(complete, ["uploadId", "fileName", "mediaUrl", "fileSize"], [], "upload:complete");
  assert.equal(complete.fileName, "dot.png");
  const progress = sock.received.filter((r) => r.event === "upload:progress" && r.payload.uploadId === uploadId).map((r) => r.payload);
  for (const p of progress) assertKeys(p, ["uploadId", "fileName", "progress", "bytesUploaded", "totalBytes"], [], "upload:progress");
  if (progress.length) assert.equal(progress.at(-1).progress, 100);
  const msg = await send(sock, { targetUserId: uid("viewer") }, undefined, { type: "IMAGE", mediaUrl: complete.mediaUrl, content: undefined });
  assert.equal(msg.mediaUrl, complete.mediaUrl);
  const tooBig = await fetch(`${cfg.mediaUrl}/v1/uploads`, { method: "POST", headers, body: JSON.stringify({ fileName: "huge.bin", size: 100 * 1024 * 1024 + 1 }) });
  assert.equal(tooBig.status, 413);
  assert.equal((await tooBig.json()).code, "PAYLOAD_TOO_LARGE");
  void ok;
});

test("upload:failed for content the server refuses (an executable), with the request list's fields", async (t) => {
  if (!cfg.mediaUrl) {
    t.skip("no media service in this version (services/media has no worker yet)");
    return;
  }
  const me = uid("uploader");
  const jwt = await token(me, "Uploader");
  const sock = await connect(me);
  // A Windows executable's header: refused by content sniffing, whatever the name says.
  const exe = Buffer.concat([Buffer.from("MZ"), Buffer.alloc(62), Buffer.from("PE\0\0"), Buffer.alloc(1024)]);
  const headers = { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" };
  const created = await fetch(`${cfg.mediaUrl}/v1/uploads`, { method: "POST", headers, body: JSON.stringify({ fileName: "holiday.jpg", size: exe.length }) });
  assert.equal(created.status, 201);
  const { uploadId, uploadUrl } = await created.json();
  const put = await fetch(uploadUrl, { method: "PUT", headers: { Authorization: `Bearer ${jwt}` }, body: exe });
  assert.ok(!put.ok);
  const failed = await next(sock, "upload:failed", (e) => e.uploadId === uploadId);
  assertKeys(failed, ["uploadId", "fileName", "error"], [], "upload:failed");
  assert.equal(failed.fileName, "holiday.jpg");
});
