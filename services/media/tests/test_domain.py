"""Pure rules: names, ranges, sniffing, progress pacing, links, claims, limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chat_contracts import DomainError, ErrorCode
from chat_media import domain
from chat_media.domain import ByteRange, Kind, Limits, Media, State, UploadSession

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\amy\\x.pdf", "x.pdf"),
        ("..", "file"),
        (".hidden.png", "hidden.png"),
        ("", "file"),
        ("a\x00b\x1bc.pdf", "a_b_c.pdf"),
        ('quo"te;<x>|.pdf', "quo_te__x__.pdf"),
        ("rtl\u202egpj.exe", "rtlgpj.exe"),
        ("  many   spaces .pdf ", "many spaces .pdf"),
    ],
)
def test_sanitize_name(raw: str, shown: str) -> None:
    assert domain.sanitize_name(raw) == shown


def test_long_names_keep_their_extension_within_255_bytes() -> None:
    name = domain.sanitize_name("é" * 300 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= 255


def test_content_range() -> None:
    assert domain.parse_content_range(None, 10) == ByteRange(0, 9, 10)
    assert domain.parse_content_range("bytes 5-9/10", 10) == ByteRange(5, 9, 10)
    assert domain.parse_content_range("bytes */10", 10) == ByteRange(0, None, 10)
    for bad in ("bytes 5-4/10", "bytes 0-10/10", "bytes 0-1/11", "items 0-1/10", "bytes -1-2/10"):
        with pytest.raises(DomainError) as exc:
            domain.parse_content_range(bad, 10)
        assert exc.value.field == "Content-Range"


def test_resume_must_start_at_the_stored_end_or_zero() -> None:
    open_ = UploadSession(
        upload_id="up",
        user_id="amy",
        file_name="a",
        size=10,
        received=4,
        created_at=T0,
        expires_at=T0,
    )
    domain.check_resume(open_, ByteRange(4, 9, 10))
    domain.check_resume(open_, ByteRange(0, 9, 10))
    with pytest.raises(DomainError) as exc:
        domain.check_resume(open_, ByteRange(5, 9, 10))
    assert exc.value.code is ErrorCode.CONFLICT
    open_.state = State.EXPIRED
    with pytest.raises(DomainError, match="expired"):
        domain.check_resume(open_, ByteRange(4, 9, 10))


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "image/png"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(20), "video/mp4"),
        (b"ID3\x03\x00" + bytes(20), "audio/mpeg"),
    ],
)
def test_sniff_allows_media_and_documents(head: bytes, mime: str) -> None:
    assert domain.sniff(head)[0] == mime


@pytest.mark.parametrize(
    "head",
    [
        b"\x7fELF\x02\x01\x01" + bytes(64),  # Linux executable
        b"MZ\x90\x00" + bytes(64),  # Windows executable
        b"PK\x03\x04" + bytes(64),  # zip
        b"\x1f\x8b\x08" + bytes(64),  # gzip
        b"#!/bin/sh\necho hi\n",  # script: no magic, unknown
        b"<svg onload=alert(1)>",  # markup
        b"<html><script>x</script>",
        b"",
    ],
)
def test_sniff_refuses_executables_archives_scripts_and_unknowns(head: bytes) -> None:
    with pytest.raises(DomainError) as exc:
        domain.sniff(head)
    assert (exc.value.code, exc.value.field) == (ErrorCode.VALIDATION_ERROR, "file")


def test_progress_at_most_every_interval_and_only_forward() -> None:
    meter = domain.ProgressMeter(250, started_ms=1_000, received=0)
    assert meter.due(1_000, 10)
    assert not meter.due(1_100, 20)  # too soon
    assert meter.due(1_250, 30)
    assert not meter.due(1_600, 30)  # no new bytes
    assert meter.due(1_700, 31)


def test_percent() -> None:
    assert domain.percent(0, 100) == 0
    assert domain.percent(1, 3) == 33.3
    assert domain.percent(999_999, 1_000_000) == 99.9  # never 100 before the end
    assert domain.percent(10, 10) == 100


def test_signed_links_expire_and_bind_media_and_reader() -> None:
    key = b"k" * 32
    sig = domain.sign_link(key, "md_1", "amy", 2_000)
    assert domain.verify_link(key, "md_1", "amy", 2_000, sig, now=1_999)
    assert domain.verify_link(key, "md_1", "amy", 2_000, sig, now=2_000)
    assert not domain.verify_link(key, "md_1", "amy", 2_000, sig, now=2_001)
    assert not domain.verify_link(key, "md_2", "amy", 2_000, sig, now=0)
    assert not domain.verify_link(key, "md_1", "bob", 2_000, sig, now=0)
    assert not domain.verify_link(key, "md_1", "amy", 3_000, sig, now=0)
    assert not domain.verify_link(b"other", "md_1", "amy", 2_000, sig, now=0)
    assert not domain.verify_link(key, "md_1", "amy", 2_000, "é" + sig[1:], now=0)
    assert not domain.verify_link(key, "md_1", "amy", 2_000, sig.upper(), now=0)


def test_limits() -> None:
    limits = Limits(max_bytes=100, max_concurrent=1, daily_quota_bytes=150)
    domain.check_new_upload(100, limits, open_count=0, used_today=50)
    for size, open_count, used, code in [
        (101, 0, 0, ErrorCode.PAYLOAD_TOO_LARGE),
        (10, 1, 0, ErrorCode.LIMIT_EXCEEDED),
        (100, 0, 51, ErrorCode.LIMIT_EXCEEDED),
    ]:
        with pytest.raises(DomainError) as exc:
            domain.check_new_upload(size, limits, open_count=open_count, used_today=used)
        assert exc.value.code is code


def _media(kind: Kind, deleted: bool = False) -> Media:
    return Media(
        media_id="md",
        upload_id="up",
        owner_id="amy",
        file_name="f",
        mime="x",
        kind=kind,
        size=1,
        key="u/up",
        created_at=T0,
        deleted=deleted,
    )


def test_claims() -> None:
    assert domain.check_claim(_media(Kind.IMAGE), True, "IMAGE").kind is Kind.IMAGE
    assert domain.check_claim(_media(Kind.DOCUMENT), True, "FILE").kind is Kind.DOCUMENT
    for media, matches, kind in [
        (None, True, "FILE"),
        (_media(Kind.IMAGE), False, "IMAGE"),
        (_media(Kind.IMAGE, deleted=True), True, "IMAGE"),
        (_media(Kind.DOCUMENT), True, "IMAGE"),
        (_media(Kind.AUDIO), True, "VIDEO"),
    ]:
        with pytest.raises(DomainError) as exc:
            domain.check_claim(media, matches, kind)
        assert exc.value.field == "mediaUrl"


def test_chat_keys() -> None:
    key = domain.chat_key("bob", group_id=None, conversation_id=None, peer_user_id="amy")
    assert key == "p:amy:bob"
    assert domain.chat_key("x", group_id="g1", conversation_id=None, peer_user_id=None) == "g:g1"
    assert domain.chat_key("x", group_id=None, conversation_id="c1", peer_user_id=None) == "c:c1"
    with pytest.raises(DomainError):
        domain.chat_key("x", group_id="g", conversation_id="c", peer_user_id=None)


def test_content_disposition_quotes_nothing_dangerous() -> None:
    value = domain.content_disposition(Kind.DOCUMENT, 'ré"sumé.pdf')
    assert value == "attachment; filename=\"r__sum_.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9.pdf"
    assert domain.content_disposition(Kind.IMAGE, "a.png").startswith("inline;")
