"""Reading image files into uint8 tensors, with errors that name the file.

Decoding uses torchvision.io (libjpeg-turbo, libpng, libwebp), never PIL, so a file is decoded once
straight into a tensor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from translate_kit.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS", "decode_image_bytes", "gif_frames", "image_size", "list_images", "natural_key", "read_image",
    "to_channels",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def list_images(folder: Path, *, what: str = "images") -> list[Path]:
    """Image files directly in `folder`, sorted naturally (2.jpg before 10.jpg).

    Raises:
        DataError: the folder is missing or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Data folder {folder} does not exist. Check data.root in the recipe (or pass "
            f"--set data.root=PATH); `tkit data download facades` or `tkit data synth-facades DIR` make one."
        )
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise DataError(
            f"Data folder {folder} holds no {what} (looked for {', '.join(IMAGE_EXTENSIONS)}). "
            "Point data.root at a folder that has them."
        )
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key that orders numbers by value: 2.jpg before 10.jpg, img9 before img10.

    `re.split` with a capturing group alternates text and digits, so keys of two names compare
    text with text and numbers with numbers at every position.
    """
    parts = re.split(r"(\d+)", path.name)
    return (str(path.parent), [int(p) if p.isdigit() else p.lower() for p in parts])


def read_image(path: Path) -> torch.Tensor:
    """Decode an image file to uint8 `(C, H, W)` with C = 1 (gray) or 3 (RGB).

    Alpha is dropped, 16-bit images are scaled to 8 bits, an animation keeps its first frame
    (`decode_image_bytes`). A palette-mode PNG comes back as its palette indices, one channel: what a
    label map stored that way holds (a photo stored with a palette must be saved as RGB first).

    Raises:
        DataError: the file cannot be read or decoded; the message names it.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read image {path}: {exc.strerror or exc}.") from None
    return decode_image_bytes(raw, f"image {path}")


def decode_image_bytes(raw: bytes, what: str) -> torch.Tensor:
    """Decode an image file's bytes (PNG, JPEG, GIF, WebP, ...) to uint8 `(C, H, W)`, C = 1 or 3,
    as `read_image` does; `what` names the image in messages ("image photos/1.jpg").

    Raises:
        DataError: empty, undecodable, or of a sample type or shape that is not an image.
    """
    from torchvision.io import ImageReadMode, decode_image

    if not raw:
        raise DataError(f"{what[:1].upper()}{what[1:]} is empty (0 bytes). Delete or replace it.")
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    try:
        image = decode_image(data, mode=ImageReadMode.UNCHANGED)
    except RuntimeError as exc:
        raise DataError(
            f"Cannot decode {what}: {str(exc).splitlines()[0]}. The file is corrupt, truncated or not "
            "an image; delete or replace it."
        ) from None
    if image.ndim == 4:  # an animated GIF or WebP: its first frame
        image = image[0]
    if image.dtype == torch.uint16:  # 16-bit PNG: keep the top 8 bits
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise DataError(f"{what[:1].upper()}{what[1:]} has unsupported sample type {image.dtype}; convert it to 8-bit.")
    if image.ndim != 3 or image.shape[0] not in (1, 2, 3, 4):
        raise DataError(f"{what[:1].upper()}{what[1:]} has shape {tuple(image.shape)}; expected 1 to 4 channels.")
    if image.shape[0] in (2, 4):  # gray+alpha or RGBA: drop alpha
        image = image[:-1]
    return image


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, GIF or WebP file, read from its header
    without decoding; None for another format or a header cut short.

    Example:
        >>> image_size(b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little"))
        (640, 480)
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments (FF <marker> <2-byte length> <payload>) to the first frame header
    (SOFn), which holds the size."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a payload
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan, before any frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def gif_frames(data: bytes) -> int | None:
    """How many frames a GIF holds, counted from its blocks without decoding; None when `data` is
    not a GIF or its blocks are cut short.

    Example:
        >>> header = b"GIF89a" + bytes([1, 0, 1, 0, 0, 0, 0])  # 1x1, no colour table
        >>> frame = bytes([0x2C, *[0] * 8, 0, 2, 1, 0, 0])  # descriptor, LZW size 2, one data byte
        >>> gif_frames(header + frame + b";"), gif_frames(header + 3 * frame + b";")
        (1, 3)
    """
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return None

    def after_sub_blocks(i: int) -> int | None:
        while i < len(data):
            size = data[i]
            i += 1 + size
            if size == 0:
                return i
        return None

    def colour_table(flags: int) -> int:
        return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0

    frames, at = 0, 13 + colour_table(data[10])
    while at is not None and at < len(data):
        block = data[at]
        if block == 0x3B:  # the trailer
            return frames
        if block == 0x21:  # an extension: its label, then sub-blocks
            at = after_sub_blocks(at + 2)
        elif block == 0x2C and at + 10 <= len(data):  # an image: descriptor, colour table, LZW size, data
            frames += 1
            at = after_sub_blocks(at + 10 + colour_table(data[at + 9]) + 1)
        else:
            return None
    return None


def to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 `(C, H, W)` between gray (1) and RGB (3) with ITU-R 601 luma weights."""
    if image.shape[-3] == channels:
        return image
    if channels == 3 and image.shape[-3] == 1:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).clone()
    if channels == 1 and image.shape[-3] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (image.float() * weights).sum(-3, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"Expected 1 or 3 channels, got {image.shape[-3]} -> {channels}")
