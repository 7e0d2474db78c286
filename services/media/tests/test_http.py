"""The HTTP layer's pure parts: byte ranges, ETags, URLs this service issued."""

from __future__ import annotations

import pytest

from chat_media.http import Urls, _matches, _parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=10-", (10, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=0-0,5-9", (0, 1)),  # several ranges: the first one only
        ("bytes=1000-", None),
        ("bytes=-0", None),
        ("bytes=5-4", None),
        ("lines=0-1", None),
    ],
)
def test_ranges(header: str, expected: tuple[int, int] | None) -> None:
    assert _parse_range(header, 1000) == expected


def test_etags() -> None:
    assert _matches('"md_1"', '"md_1"')
    assert _matches('W/"md_1", "x"', '"md_1"')
    assert _matches("*", '"md_1"')
    assert not _matches('"md_2"', '"md_1"')
    assert not _matches(None, '"md_1"')


def test_only_urls_this_service_issued_name_a_media() -> None:
    urls = Urls("https://media.example/")
    assert urls.media("md_1") == "https://media.example/v1/media/md_1"
    assert urls.media_id_of("https://media.example/v1/media/md_1") == "md_1"
    for url in [
        "https://tracker.example/v1/media/md_1",
        "https://media.example/v1/media/md_1?x=1",
        "https://media.example/v1/media/../uploads/up_1",
        "https://media.example/v1/media/",
        "javascript:alert(1)",
    ]:
        assert urls.media_id_of(url) is None, url
