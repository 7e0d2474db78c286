"""Image processing: metadata gone, orientation applied, thumbnails, bombs refused."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image

from chat_contracts import DomainError
from chat_media.images import ImageWorker, process


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (10, 200, 10))
    exif = image.getexif()
    exif[ExifTags.Base.Model] = "Phone 9"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "S"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


def test_jpeg_loses_exif_and_comment_and_is_turned_upright() -> None:
    result = process(_jpeg((400, 200), orientation=6), "image/jpeg", max_pixels=10**7, thumb_px=100)
    image = Image.open(io.BytesIO(result.data))
    assert (result.width, result.height) == image.size == (200, 400)  # rotated by 90°
    assert not image.getexif()
    assert b"secret comment" not in result.data
    assert b"Phone 9" not in result.data
    assert Image.open(io.BytesIO(result.thumbnail)).size == (50, 100)


def test_png_with_alpha_and_text_chunks() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Amy at home")
    image = Image.new("RGBA", (30, 60), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    result = process(out.getvalue(), "image/png", max_pixels=10**7, thumb_px=20)
    assert b"Amy at home" not in result.data
    assert Image.open(io.BytesIO(result.thumbnail)).mode == "RGB"


def test_decompression_bombs_and_garbage_are_refused() -> None:
    with pytest.raises(DomainError, match="pixels"):
        process(_jpeg((200, 200)), "image/jpeg", max_pixels=10_000, thumb_px=10)
    with pytest.raises(DomainError, match="unreadable"):
        process(b"\xff\xd8\xff\xe0 not really", "image/jpeg", max_pixels=10**7, thumb_px=10)


async def test_the_worker_runs_off_the_event_loop() -> None:
    worker = ImageWorker(max_pixels=10**7, thumb_px=32)
    try:
        result = await worker.process(_jpeg((64, 64)), "image/jpeg")
        assert (result.width, result.height) == (64, 64)
    finally:
        worker.close()
