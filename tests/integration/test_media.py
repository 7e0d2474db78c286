"""Media end to end: the real media service, gateways, messages and groups over NATS.

Uploads over HTTP, realtime progress on the uploader's sockets (on the other gateway),
refusals, resume, expiry, downloads and who may make them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from PIL import ExifTags, Image

from chat_contracts import subjects
from chat_contracts.bus import Actor, MediaClaim
from chat_runtime.bus import Bus
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, make_group
from tests.integration.media_client import MIB, MediaUser, chunks, jpeg_with_gps, pdf_bytes

#: The suite's session expiry and sweep (conftest): an abandoned upload fails within this.
EXPIRY_WAIT_S = 2.0 + 0.2 + 3.0


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def media_user(stack: Stack, http: aiohttp.ClientSession) -> Callable[[str], MediaUser]:
    return lambda user_id: MediaUser(stack, http, user_id)


async def send_file(
    sock: ChatClient, url: str, *, target_user_id: str = "", group_id: str = ""
) -> dict[str, Any]:
    """`message:send` of a FILE carrying `url` to a peer or a group; the ack."""
    chat = {"targetUserId": target_user_id} if target_user_id else {"groupId": group_id}
    payload = {"clientMessageId": cmid(), **chat, "type": "FILE", "mediaUrl": url}
    return await sock.call("message:send", payload)


async def delete_for_everyone(sock: ChatClient, message_id: str) -> None:
    """`message:delete` for everyone (asserted ok)."""
    ack = await sock.call("message:delete", {"messageId": message_id, "deleteForEveryone": True})
    assert ack["status"] == "ok", ack


async def until_gone(user: MediaUser, url: str, what: str) -> None:
    """Wait (up to ~5 s) until `url` answers `user` 404; `what` names the failure."""
    for _ in range(250):
        if (await user.get(url))[0] == 404:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


@dataclass(frozen=True)
class Uploader:
    """A user with a socket (where their upload events arrive) and a media session."""

    id: str
    socket: ChatClient
    media: MediaUser

    async def upload(self, file_name: str, data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create, send in one PUT (asserted complete), and the `upload:complete` of it on
        the socket: the final status and the event."""
        done = await self.media.upload(file_name, data)
        event = await self.socket.wait_for(
            "upload:complete", lambda d: d["uploadId"] == done["uploadId"]
        )
        return done, event

    async def send_upload(
        self, peer: str, data: bytes | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`plan.pdf` (5,000 bytes unless `data`) uploaded and sent to `peer` as a FILE
        (asserted ok): the upload's final status and the message."""
        done = await self.media.upload("plan.pdf", pdf_bytes(5_000) if data is None else data)
        ack = await send_file(self.socket, done["mediaUrl"], target_user_id=peer)
        assert ack["status"] == "ok", ack
        assert ack["message"]["mediaUrl"] == done["mediaUrl"]
        return done, ack["message"]


Uploaders = Callable[..., Awaitable[Uploader]]


@pytest.fixture
def uploader(
    connect: Connect, uid: Callable[[str], str], media_user: Callable[[str], MediaUser]
) -> Uploaders:
    """`await uploader(name="alice", gateway=0)`: a new user, connected, with a media session."""

    async def make(name: str = "alice", gateway: int = 0) -> Uploader:
        user_id = uid(name)
        return Uploader(user_id, await connect(user_id, gateway=gateway), media_user(user_id))

    return make


async def test_20_mib_upload_reports_progress_on_the_other_gateway(uploader: Uploaders) -> None:
    alice = await uploader(gateway=1)  # her phone: her other device, on the second gateway
    phone, user = alice.socket, alice.media
    data = pdf_bytes(20 * MIB)
    status, created = await user.create("report.pdf", len(data))
    assert status == 201, created
    assert created["uploadUrl"].endswith(f"/v1/uploads/{created['uploadId']}")

    async def paced() -> AsyncIterator[bytes]:
        # 20 chunks over >= 0.4 s, so that the 50 ms progress interval shows several steps.
        async for chunk in chunks(data):
            yield chunk
            await asyncio.sleep(0.02)

    status, done = await user.put(created["uploadUrl"], paced())
    assert status == 200, done
    assert done["state"] == "complete"
    assert done["mimeType"] == "application/pdf"
    complete = await phone.wait_for("upload:complete")
    assert complete == {
        "uploadId": created["uploadId"],
        "fileName": "report.pdf",
        "mediaUrl": done["mediaUrl"],
        "fileSize": len(data),
    }
    # Nothing after the end: no failure, and (below) no progress after the completion.
    await phone.assert_silent("upload:failed", window=0.3)
    order = [(e, d) for e, d in phone.received if e.startswith("upload:")]
    assert order[-1][0] == "upload:complete"
    progress = [d for e, d in order if e == "upload:progress"]
    assert len(progress) >= 3, progress
    assert [e for e, _ in order].count("upload:complete") == 1
    sizes = [p["bytesUploaded"] for p in progress]
    assert sizes == sorted(sizes), sizes
    assert len(set(sizes)) == len(sizes), sizes
    assert all(p["totalBytes"] == len(data) and p["fileName"] == "report.pdf" for p in progress)
    assert all(0 <= p["progress"] <= 100 for p in progress)
    assert set(progress[0]) == {"uploadId", "fileName", "progress", "bytesUploaded", "totalBytes"}

    # The stored bytes are the uploaded bytes.
    status, body, headers = await user.get(done["mediaUrl"])
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["Content-Type"] == "application/pdf"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith('attachment; filename="report.pdf"')


async def test_resume_after_a_cut_connection(uploader: Uploaders) -> None:
    alice = await uploader()
    socket, user = alice.socket, alice.media
    data = pdf_bytes(6 * MIB)
    _, created = await user.create("big.pdf", len(data))
    url = created["uploadUrl"]

    async def cut_after_3_mib() -> AsyncIterator[bytes]:
        yield data[: 3 * MIB]
        await asyncio.sleep(0.2)
        raise ConnectionAbortedError("network gone")

    with pytest.raises((aiohttp.ClientError, ConnectionAbortedError)):
        await user.put(url, cut_after_3_mib())

    async def offset_settled() -> int:
        # The server notices the cut on its own time: wait until HEAD shows bytes.
        for _ in range(100):
            status, headers = await user.head(url)
            assert status == 200
            if int(headers["Upload-Offset"]) > 0 and headers["Upload-State"] == "open":
                return int(headers["Upload-Offset"])
            await asyncio.sleep(0.02)
        raise AssertionError("no bytes stored after the cut")

    offset = await offset_settled()
    assert 0 < offset <= 3 * MIB
    assert headers_of_length(await user.head(url)) == len(data)

    # A chunk that does not start where the stored bytes end is refused.
    status, body = await user.put(
        url,
        data[offset + 1 :],
        {"Content-Range": f"bytes {offset + 1}-{len(data) - 1}/{len(data)}"},
    )
    assert status == 409, body
    assert body["code"] == "CONFLICT"

    status, done = await user.put(
        url, data[offset:], {"Content-Range": f"bytes {offset}-{len(data) - 1}/{len(data)}"}
    )
    assert status == 200, done
    assert done["state"] == "complete"
    await socket.wait_for("upload:complete", lambda d: d["uploadId"] == created["uploadId"])
    status, body, _ = await user.get(done["mediaUrl"])
    assert status == 200
    assert body == data


def headers_of_length(head: tuple[int, Mapping[str, str]]) -> int:
    return int(head[1]["Upload-Length"])


async def test_tus_upload_with_a_resume(uploader: Uploaders) -> None:
    """tus 1.0 (core + creation), as tus-js-client speaks it, on the same sessions."""
    alice = await uploader()
    socket, user = alice.socket, alice.media
    data = pdf_bytes(3 * MIB)
    tus = {**user.auth, "Tus-Resumable": "1.0.0"}
    async with user.http.options(f"{user.base}/v1/tus") as resp:
        assert resp.status == 204
        assert resp.headers["Tus-Version"] == "1.0.0"
        assert "creation" in resp.headers["Tus-Extension"]
    name = base64.b64encode("tus ünïcode.pdf".encode()).decode()
    async with user.http.post(
        f"{user.base}/v1/tus",
        headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": f"filename {name}"},
    ) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        location = resp.headers["Location"]
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    async with user.http.patch(
        location, data=data[:MIB], headers={**patch, "Upload-Offset": "0"}
    ) as resp:
        assert (resp.status, resp.headers["Upload-Offset"]) == (204, str(MIB))
    async with user.http.head(location, headers=tus) as resp:
        assert (resp.status, resp.headers["Upload-Offset"]) == (200, str(MIB))
        assert resp.headers["Upload-Length"] == str(len(data))
    # The wrong offset, and a request of no tus version, are refused.
    async with user.http.patch(
        location, data=data[:10], headers={**patch, "Upload-Offset": "0"}
    ) as resp:
        assert resp.status == 409
    async with user.http.head(location, headers=user.auth) as resp:
        assert resp.status == 412
    async with user.http.patch(
        location, data=data[MIB:], headers={**patch, "Upload-Offset": str(MIB)}
    ) as resp:
        assert (resp.status, resp.headers["Upload-Offset"]) == (204, str(len(data)))
    complete = await socket.wait_for("upload:complete")
    assert complete["fileName"] == "tus ünïcode.pdf"
    assert complete["fileSize"] == len(data)
    status, body, _ = await user.get(complete["mediaUrl"])
    assert (status, body == data) == (200, True)


async def test_refusals_before_and_while_reading(uploader: Uploaders) -> None:
    alice = await uploader()
    socket, user = alice.socket, alice.media

    # Over the 100 MiB limit: refused at POST, before any byte.
    status, body = await user.create("huge.mp4", 100 * MIB + 1)
    assert status == 413, body
    assert body == {
        "status": "error",
        "code": "PAYLOAD_TOO_LARGE",
        "error": body["error"],
        "field": "size",
    }
    status, body = await user.create("bad.pdf", 0)
    assert (status, body["code"], body["field"]) == (400, "VALIDATION_ERROR", "size")

    # Lying size, announced by Content-Length: refused before the body is read.
    _, created = await user.create("small.pdf", 1_000)
    status, body = await user.put(created["uploadUrl"], pdf_bytes(2_000))
    assert status == 413, body
    failed = await socket.wait_for("upload:failed")
    assert failed == {
        "uploadId": created["uploadId"],
        "fileName": "small.pdf",
        "error": "file is larger than its declared size",
    }

    # Lying size, streamed without a length: cut off once it runs past.
    _, created = await user.create("small.pdf", 300_000)
    status, body = await user.put(created["uploadUrl"], chunks(pdf_bytes(600_000), 100_000))
    assert status == 413, body
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    failed = await socket.wait_for("upload:failed")
    assert failed["uploadId"] == created["uploadId"]
    status, headers = await user.head(created["uploadUrl"])
    assert (headers["Upload-State"], headers["Upload-Offset"]) == ("failed", "0")

    # Executables and scripts, whatever their names say: refused by content.
    for name, content in [
        ("photo.jpg", b"\x7fELF\x02\x01\x01" + bytes(4_000)),
        ("doc.pdf", b"MZ\x90\x00\x03" + bytes(4_000)),
        ("notes.pdf", b"#!/bin/sh\nrm -rf /\n"),
        ("archive.pdf", b"PK\x03\x04" + bytes(4_000)),
    ]:
        _, created = await user.create(name, len(content))
        status, body = await user.put(created["uploadUrl"], content)
        assert status == 415, (name, body)
        assert (body["code"], body["field"]) == ("VALIDATION_ERROR", "file")
        failed = await socket.wait_for("upload:failed")
        assert failed["uploadId"] == created["uploadId"]
        assert "not allowed" in failed["error"]

    # No token, a forged token: 401.
    async with user.http.post(f"{user.base}/v1/uploads", json={"fileName": "a", "size": 1}) as r:
        assert r.status == 401
        assert (await r.json())["code"] == "UNAUTHORIZED"
    forged = {"Authorization": "Bearer " + "x" * 40}
    async with user.http.post(
        f"{user.base}/v1/uploads", json={"fileName": "a", "size": 1}, headers=forged
    ) as r:
        assert r.status == 401


async def test_per_user_concurrent_uploads_are_capped(
    uid: Callable[[str], str], media_user: Callable[[str], MediaUser]
) -> None:
    user, other = media_user(uid("alice")), media_user(uid("bob"))
    urls = []
    for _ in range(5):  # the default cap
        status, body = await user.create("a.pdf", 1_000)
        assert status == 201, body
        urls.append(body["uploadUrl"])
    status, body = await user.create("a.pdf", 1_000)
    assert (status, body["code"], body["field"]) == (429, "LIMIT_EXCEEDED", "size")
    status, body = await other.create("a.pdf", 1_000)  # another user is not affected
    assert status == 201, body
    # Finishing one frees its slot.
    status, done = await user.put(urls[0], pdf_bytes(1_000))
    assert (status, done["state"]) == (200, "complete")
    status, body = await user.create("a.pdf", 1_000)
    assert status == 201, body


async def test_traversal_looking_names_are_only_display_names(
    stack: Stack, uploader: Uploaders
) -> None:
    alice = await uploader()
    media_dir = stack.workdir / "media"
    before = set(stack.workdir.parent.rglob("*"))
    for raw, shown in [
        ("../../../../etc/passwd.pdf", "passwd.pdf"),
        ("..\\..\\windows\\win.ini.pdf", "win.ini.pdf"),
        ("...pdf", "pdf"),
        ("a\x00b\r\nc<script>.pdf", "a_b__c_script_.pdf"),
    ]:
        done, event = await alice.upload(raw, pdf_bytes(2_000))
        assert (done["fileName"], event["fileName"]) == (shown, shown)
    created = set(stack.workdir.parent.rglob("*")) - before
    assert created, "the uploads were stored somewhere"
    for path in created:
        assert media_dir in path.parents or path.parent == stack.workdir / "data", path
        assert "passwd" not in path.name
        assert "win.ini" not in path.name


async def test_exif_gps_is_stripped_and_a_thumbnail_made(
    uid: Callable[[str], str], media_user: Callable[[str], MediaUser]
) -> None:
    user = media_user(uid("alice"))
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    done = await user.upload("holiday.jpg", original)
    assert (done["mimeType"], done["width"], done["height"]) == ("image/jpeg", 640, 480)

    status, stored, headers = await user.get(done["mediaUrl"])
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Disposition"].startswith("inline")
    image = Image.open(io.BytesIO(stored))
    assert image.size == (640, 480)
    exif = image.getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert ExifTags.Base.BodySerialNumber not in exif
    assert ExifTags.Base.Make not in exif
    assert b"SN-123456" not in stored
    assert b"TestCam" not in stored

    status, thumb, headers = await user.get(done["thumbnailUrl"])
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb)).size) == 320


async def test_downloads_need_a_reader_and_honour_range_and_etag(
    uid: Callable[[str], str], media_user: Callable[[str], MediaUser], uploader: Uploaders
) -> None:
    alice, bob, carol = await uploader(), uid("bob"), uid("carol")
    alice_s, owner = alice.socket, alice.media
    reader, stranger = media_user(bob), media_user(carol)
    data = pdf_bytes(100_000)
    done = await owner.upload("plan.pdf", data)
    url = done["mediaUrl"]

    # Before it is sent: the uploader only.
    assert (await owner.get(url))[0] == 200
    assert (await reader.get(url))[0] == 404
    assert (await owner.get(url, auth=False))[0] == 401

    ack = await send_file(alice_s, url, target_user_id=bob)
    assert ack["status"] == "ok", ack
    assert ack["message"]["mediaUrl"] == url
    assert (await reader.get(url))[0] == 200
    assert (await stranger.get(url))[0] == 404

    # A group: its members may read what was sent there.
    group = await make_group(alice_s, carol)
    assert (await stranger.get(url))[0] == 404
    ack = await send_file(alice_s, url, group_id=group)
    assert ack["status"] == "ok", ack
    assert (await stranger.get(url))[0] == 200

    # Range and conditional GET.
    status, part, headers = await reader.get(url, {"Range": "bytes=10-19"})
    assert (status, part) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    etag = headers["ETag"]
    status, body, _ = await reader.get(url, {"If-None-Match": etag})
    assert (status, body) == (304, b"")
    status, _, headers = await reader.get(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416

    # A signed link works without a token, for its reader, until it expires; not when altered.
    async with owner.http.get(f"{url}/link", headers=reader.auth) as resp:
        assert resp.status == 200
        link = (await resp.json())["url"]
    status, body, _ = await reader.get(link, auth=False)
    assert (status, body) == (200, data)
    assert (await reader.get(link.replace("sig=", "sig=0"), auth=False))[0] == 401
    assert (await reader.get(link.replace(f"u={bob}", f"u={carol}"), auth=False))[0] == 401
    async with owner.http.get(f"{url}/link", headers=media_user(uid("dave")).auth) as resp:
        assert resp.status == 404


async def test_foreign_media_urls_are_refused_in_message_send(uploader: Uploaders) -> None:
    alice, bob = await uploader(), await uploader("bob")
    alice_s, bob_s = alice.socket, bob.socket
    done = await alice.media.upload("plan.pdf", pdf_bytes(5_000))

    async def send(socket: ChatClient, url: str, kind: str = "FILE") -> dict[str, Any]:
        ack: dict[str, Any] = await socket.call(
            "message:send",
            {
                "clientMessageId": cmid(),
                "targetUserId": alice.id if socket is bob_s else bob.id,
                "type": kind,
                "mediaUrl": url,
            },
        )
        return ack

    for url in [
        "https://tracker.example/pixel.png",
        "javascript:alert(1)",
        done["mediaUrl"] + "x",
        done["mediaUrl"] + "?u=1",
    ]:
        ack = await send(alice_s, url)
        assert (ack["status"], ack["code"]) == ("error", "VALIDATION_ERROR"), (url, ack)
    # Issued to alice, not to bob.
    ack = await send(bob_s, done["mediaUrl"])
    assert (ack["status"], ack["code"]) == ("error", "VALIDATION_ERROR"), ack
    # A PDF is not an IMAGE.
    ack = await send(alice_s, done["mediaUrl"], "IMAGE")
    assert (ack["status"], ack["code"]) == ("error", "VALIDATION_ERROR"), ack
    # Nothing of the refused sends reached bob; the good one does.
    ack = await send(alice_s, done["mediaUrl"])
    assert ack["status"] == "ok", ack
    got = await bob_s.wait_for("message:new")
    assert got["mediaUrl"] == done["mediaUrl"]
    await bob_s.assert_silent("message:new", window=0.2)


async def test_media_of_a_message_deleted_for_everyone_is_no_longer_served(
    stack: Stack,
    uid: Callable[[str], str],
    media_user: Callable[[str], MediaUser],
    uploader: Uploaders,
) -> None:
    """Through the real messages service: a forward keeps the media alive; once the
    last message carrying it is deleted for everyone, nobody gets it any more."""
    sender, receiver, carol = await uploader(), await uploader("bob"), uid("carol")
    alice, bob, alice_s, bob_s = sender.id, receiver.id, sender.socket, receiver.socket
    done, original = await sender.send_upload(bob)
    url = done["mediaUrl"]
    assert (await media_user(carol).get(url))[0] == 404

    # Bob may read it, so he may forward it; carol, in the new chat, may read it then.
    ack = await bob_s.call(
        "message:forward",
        {"messageId": original["id"], "targetUserId": carol, "clientMessageId": cmid()},
    )
    assert ack["status"] == "ok", ack
    forward = ack["message"]
    assert forward["mediaUrl"] == url
    assert (await media_user(carol).get(url))[0] == 200

    await delete_for_everyone(alice_s, original["id"])
    # The forward still carries it: still served to its readers, over a window long
    # enough for the deletion to be handled (the second one below is, within it).
    for _ in range(10):
        assert (await media_user(carol).get(url))[0] == 200
        await asyncio.sleep(0.03)

    await delete_for_everyone(bob_s, forward["id"])
    await until_gone(
        media_user(carol), url, "media still served after its last message was deleted"
    )
    for user in (alice, bob):
        assert (await media_user(user).get(url))[0] == 404
    files = [p.name for p in (stack.workdir / "media").rglob("*")]
    assert done["uploadId"] not in files
    # And the deleted media cannot be put into a new message.
    ack = await send_file(alice_s, url, target_user_id=bob)
    assert (ack["status"], ack["code"]) == ("error", "VALIDATION_ERROR"), ack


async def test_a_deletion_while_media_is_down_is_applied_once_it_is_back(
    stack: Stack,
    uid: Callable[[str], str],
    media_user: Callable[[str], MediaUser],
    uploader: Uploaders,
) -> None:
    """`evt.messages.deleted` waits in the MEDIA stream (JetStream) for the media worker."""
    sender, bob = await uploader(), uid("bob")
    alice, alice_s = sender.id, sender.socket
    done, message = await sender.send_upload(bob)
    url = done["mediaUrl"]
    media = stack.processes["media"]
    port = media.port
    assert await asyncio.to_thread(media.stop) == 0
    try:
        await delete_for_everyone(alice_s, message["id"])
    finally:
        # Back on the same address, so the URLs it issued stay its own.
        restarted = stack.add("media", "media", CHAT_MEDIA_PORT=str(port))
        await asyncio.to_thread(restarted.wait_ready)
    await until_gone(media_user(bob), url, "a deletion made while media was down was lost")
    assert (await media_user(alice).get(url))[0] == 404


async def test_upload_failed_when_the_client_disconnects_and_the_session_expires(
    stack: Stack, uploader: Uploaders
) -> None:
    alice = await uploader(gateway=1)
    socket, user = alice.socket, alice.media
    data = pdf_bytes(2 * MIB)
    _, created = await user.create("draft.pdf", len(data))

    async def half_then_gone() -> AsyncIterator[bytes]:
        yield data[:MIB]
        await asyncio.sleep(0.2)
        raise ConnectionAbortedError("app killed")

    with pytest.raises((aiohttp.ClientError, ConnectionAbortedError)):
        await user.put(created["uploadUrl"], half_then_gone())
    failed = await socket.wait_for("upload:failed", timeout=EXPIRY_WAIT_S)
    assert failed == {
        "uploadId": created["uploadId"],
        "fileName": "draft.pdf",
        "error": "upload expired",
    }
    status, headers = await user.head(created["uploadUrl"])
    assert (headers["Upload-State"], headers["Upload-Offset"]) == ("expired", "0")
    assert not (stack.workdir / "media" / "u" / created["uploadId"]).exists()
    status, body = await user.put(created["uploadUrl"], data)
    assert status == 409, body


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _reset_peak(pid: int) -> None:
    """Peak RSS (VmHWM) := current RSS (proc(5), clear_refs "5")."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def test_rss_stays_flat_while_100_mib_stream(
    stack: Stack, uid: Callable[[str], str], media_user: Callable[[str], MediaUser]
) -> None:
    """The kernel's peak-RSS mark (VmHWM, reset through clear_refs) shows the most the
    media process ever held during the upload, however short the upload is."""
    user = media_user(uid("alice"))
    pid = stack.processes["media"].proc.pid
    await user.upload("warm.pdf", pdf_bytes(4 * MIB))  # buffers and pools warmed up
    size = 100 * MIB
    piece = pdf_bytes(MIB)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // MIB):
            yield piece

    _, created = await user.create("movie.pdf", size)
    _reset_peak(pid)
    baseline = _status_kib(pid, "VmRSS")
    started = time.perf_counter()
    status, done = await user.put(created["uploadUrl"], body())
    took = time.perf_counter() - started
    peak = _status_kib(pid, "VmHWM")
    assert status == 200, done
    assert done["state"] == "complete"
    assert done["bytesReceived"] == size
    stored = stack.workdir / "media" / "u" / created["uploadId"]
    assert stored.stat().st_size == size
    growth_mib = (peak - baseline) / 1024
    print(
        f"100 MiB in {took:.2f} s ({size / MIB / took:.0f} MiB/s); media RSS "
        f"{baseline / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB during"
    )
    # Generous: a process holding the file would grow by 100 MiB.
    assert growth_mib < 30, f"RSS grew by {growth_mib:.1f} MiB while 100 MiB streamed"

    # And out again: the download streams too.
    _reset_peak(pid)
    baseline = _status_kib(pid, "VmRSS")
    started = time.perf_counter()
    digest, length = hashlib.sha256(), 0
    async with user.http.get(done["mediaUrl"], headers=user.auth) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(MIB):
            digest.update(chunk)
            length += len(chunk)
    took = time.perf_counter() - started
    peak = _status_kib(pid, "VmHWM")
    assert length == size
    assert digest.digest() == hashlib.sha256(piece * (size // MIB)).digest()
    print(f"download: 100 MiB in {took:.2f} s, RSS peak +{(peak - baseline) / 1024:.1f} MiB")
    assert (peak - baseline) / 1024 < 30


async def test_the_claim_a_media_message_adds_to_the_send_path_costs_one_round_trip(
    stack: Stack, uid: Callable[[str], str], media_user: Callable[[str], MediaUser]
) -> None:
    """Measured: what `cmd.media.claim` adds to `message:send` when a mediaUrl is set
    (TEXT messages skip it; see services/messages/tests/test_media.py)."""
    alice = uid("alice")
    done = await media_user(alice).upload("plan.pdf", pdf_bytes(5_000))
    assert stack.nats is not None
    bus = await Bus.connect(stack.nats.url, name="claim-bench")
    claim = MediaClaim(
        media_url=done["mediaUrl"], message_type="FILE", message_id="m_bench",
        client_message_id="c_bench", peer_user_id=uid("bob"),
    )  # fmt: skip
    actor = Actor(user_id=alice, name="Alice")
    took: list[float] = []
    try:
        for _ in range(300):
            start = time.perf_counter()
            reply = await bus.command(subjects.MEDIA, subjects.MEDIA_CLAIM, actor, claim)
            took.append((time.perf_counter() - start) * 1000)
            assert reply.status == "ok", reply
    finally:
        await bus.close()
    took.sort()
    p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
    print(f"cmd.media.claim round trip: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert p50 < 25, took  # generous: 2 shared cores; about 0.4 ms when quiet
