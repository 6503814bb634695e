"""Checking delivered images: allowed formats, pixel limits, decoded to the last byte."""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from ..formats import model as fmt

log = logging.getLogger(__name__)


# A delivered image is read into memory once to hash and decode it; nothing legitimate is bigger.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
# Pillow formats an image may be in. No EPS (it runs Ghostscript), no exotic decoders.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
SUFFIX_FOR_FORMAT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}
EXTENSIONS_FOR_FORMAT = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "GIF": (".gif",),
}
IMAGE_EXTENSIONS = tuple(e for exts in EXTENSIONS_FOR_FORMAT.values() for e in exts)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height

# --------------------------------------------------------------------------- images


@dataclass
class ImageInfo:
    """What checking one image file found."""

    sha256: str
    size_bytes: int
    width: int  # after the EXIF orientation, as viewers and annotation tools show it
    height: int
    format: str
    raw_width: int
    raw_height: int

    @property
    def suffix(self) -> str:
        return SUFFIX_FOR_FORMAT[self.format]


def inspect_image(source, key: str) -> ImageInfo:
    """Hash and decode one delivered image, safely; raise FormatError saying what is wrong."""

    def bad(message: str, code: str) -> fmt.FormatError:
        return fmt.FormatError([fmt.Problem(file=key, message=message, code=code)])

    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with source.open(key) as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
            buffer.write(chunk)
            if buffer.tell() > MAX_IMAGE_BYTES:
                raise bad(f"image file is larger than {MAX_IMAGE_BYTES} bytes", "too_large")
    size_bytes = buffer.tell()
    buffer.seek(0)
    # Image.MAX_IMAGE_PIXELS stays at Pillow's default: above it Pillow warns, above twice it
    # refuses. The warning is turned into an error here, so the limit is the default itself.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(buffer, formats=IMAGE_FORMATS) as img:
                image_format = img.format
                raw_width, raw_height = img.size
                orientation = (
                    img.getexif().get(_EXIF_ORIENTATION)
                    if image_format in ("JPEG", "WEBP", "PNG", "TIFF")
                    else None
                )
                if image_format == "JPEG":
                    # Decode at 1/8 scale: every byte of the stream is still read and checked,
                    # at a fraction of the cost of a full-size decode.
                    img.draft(img.mode, (max(1, raw_width // 8), max(1, raw_height // 8)))
                img.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise bad(
                f"image is too large to decode safely (decompression bomb?): {exc}", "image_bomb"
            ) from None
        except Image.UnidentifiedImageError:
            raise bad(
                f"not an image in an allowed format ({', '.join(IMAGE_FORMATS)})", "not_an_image"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise bad(f"the image cannot be decoded: {exc}", "corrupt_image") from None
    width, height = raw_width, raw_height
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = raw_height, raw_width
    return ImageInfo(
        sha256=digest.hexdigest(),
        size_bytes=size_bytes,
        width=width,
        height=height,
        format=image_format,
        raw_width=raw_width,
        raw_height=raw_height,
    )


class ImageChecker:
    """Checks each image once, remembering the outcome (a reader may ask for a size first)."""

    def __init__(self, source):
        self.source = source
        self.results: dict[str, ImageInfo | fmt.FormatError] = {}

    def check(self, key: str) -> ImageInfo | fmt.FormatError:
        result = self.results.get(key)
        if result is None:
            try:
                result = inspect_image(self.source, key)
            except fmt.FormatError as exc:
                result = exc
            except KeyError:
                result = fmt.FormatError(
                    [fmt.Problem(file=key, message="image file is not in the delivery", code="missing_image")]
                )
            self.results[key] = result
        return result

    def size(self, key: str) -> tuple[int, int]:
        """For readers that need the size (YOLO): raise FormatError when the image is bad."""
        result = self.check(key)
        if isinstance(result, fmt.FormatError):
            raise result
        return result.width, result.height

    def forget(self, key: str) -> None:
        self.results.pop(key, None)
