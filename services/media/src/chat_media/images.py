"""Image work with Pillow: metadata stripped, size read, thumbnail made.

CPU-bound and blocking, so it runs in a thread pool (`ImageWorker`); Pillow releases the
GIL while decoding and encoding. Decompression bombs: an image whose header claims more
than `max_pixels` is refused before any pixel is decoded, and Pillow's own guard
(`Image.MAX_IMAGE_PIXELS`) is set to the same limit for the paths that decode lazily.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import msgspec
from PIL import Image, ImageOps, UnidentifiedImageError

from chat_contracts import DomainError, ErrorCode

#: JPEG quality of re-encoded photos and thumbnails (visually lossless at 90; 85 for thumbs).
PHOTO_QUALITY = 90
THUMB_QUALITY = 85
#: Pillow format names of the allow-listed image types.
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}


class Processed(msgspec.Struct, kw_only=True, frozen=True):
    """An image with its metadata removed, its size and a JPEG thumbnail."""

    data: bytes
    width: int
    height: int
    thumbnail: bytes


def process(data: bytes, mime: str, *, max_pixels: int, thumb_px: int) -> Processed:
    """Re-encode `data` without EXIF/XMP/comments (orientation applied first), and a thumb.

    Only the pixels (and the ICC colour profile, which says nothing about the user) are
    kept: EXIF (GPS position, camera serial, time), XMP and text chunks are dropped.
    """
    fmt = FORMATS[mime]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            if image.width * image.height > max_pixels:
                raise DomainError(
                    ErrorCode.VALIDATION_ERROR,
                    f"image is larger than {max_pixels} pixels",
                    field="file",
                )
            image.load()
            animated = bool(getattr(image, "is_animated", False))
            if not animated:
                image = ImageOps.exif_transpose(image)
            icc = image.info.get("icc_profile")
            out = io.BytesIO()
            options: dict[str, object] = {}
            if icc:
                options["icc_profile"] = icc
            if fmt == "JPEG":
                options.update(quality=PHOTO_QUALITY, optimize=True)
            if animated:
                options["save_all"] = True
            image.info = {}
            image.save(out, format=fmt, **options)
            thumb = _thumbnail(image, thumb_px)
            return Processed(
                data=out.getvalue(), width=image.width, height=image.height, thumbnail=thumb
            )
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"unreadable image: {exc}", field="file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"image is larger than {max_pixels} pixels", field="file"
        ) from None


def _thumbnail(image: Image.Image, px: int) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((px, px))
    if thumb.mode != "RGB":
        background = Image.new("RGB", thumb.size, "white")
        rgba = thumb.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        thumb = background
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


class ImageWorker:
    """Runs `process` off the event loop on a small thread pool of its own."""

    def __init__(self, *, max_pixels: int, thumb_px: int, threads: int = 2) -> None:
        # Pillow's global guard, for anything that decodes lazily; raises at 2x.
        Image.MAX_IMAGE_PIXELS = max_pixels
        self._max_pixels = max_pixels
        self._thumb_px = thumb_px
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="images")

    async def process(self, data: bytes, mime: str) -> Processed:
        """`process` in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            lambda: process(data, mime, max_pixels=self._max_pixels, thumb_px=self._thumb_px),
        )

    def close(self) -> None:
        """Stop the pool (waits for work under way)."""
        self._pool.shutdown(wait=True)
