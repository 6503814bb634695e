"""Small builders for format tests: images made with Pillow, zips made in memory."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from marketplace.formats.archive import ZipSource


def image_bytes(width: int, height: int, fmt: str = "JPEG", *, exif_orientation: int | None = None) -> bytes:
    """A small solid image in the given format."""
    buf = io.BytesIO()
    img = Image.new("RGB", (width, height), (90, 140, 200))
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[274] = exif_orientation
        img.save(buf, fmt, exif=exif)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def palette_png(pixels) -> bytes:
    """A palette (mode P) PNG whose pixel values are the given 2D uint8 array, as VOC writes masks."""
    height, width = pixels.shape
    img = Image.frombytes("P", (width, height), pixels.astype("uint8").tobytes())
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An in-memory zip holding the given files (str content is UTF-8 encoded)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content in files.items():
            zf.writestr(name, content.encode() if isinstance(content, str) else content)
    return buf.getvalue()


def zip_source(files: dict[str, bytes | str]) -> ZipSource:
    """A checked ZipSource over an in-memory zip of the given files."""
    return ZipSource(io.BytesIO(zip_bytes(files)), name="delivery.zip")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th line containing needle."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]
