"""tus metadata parsing."""

from __future__ import annotations

import base64

from chat_media.tus import metadata


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_pairs_are_decoded_and_bad_ones_ignored() -> None:
    header = (
        f"filename {_b64('ünï.pdf')}, is_confidential, type {_b64('pdf')},bad %%%, x {_b64('y')}"
    )
    assert metadata(header) == {
        "filename": "ünï.pdf",
        "is_confidential": "",
        "type": "pdf",
        "x": "y",
    }
    assert metadata(None) == {}
    assert metadata("name " + base64.b64encode(b"\xff\xfe").decode()) == {}
