"""Tiny, valid, deterministic media for the mock provider: WAV audio and PNG images.

Bytes depend only on the inputs, so tests can compare them; sizes stay small.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib

SAMPLE_RATE = 8000
MAX_IMAGE_SIDE = 2048


def wav_tone(text: str, seconds_per_char: float = 0.02, max_seconds: float = 5.0) -> bytes:
    """A mono 16-bit WAV whose length follows the text and whose pitch follows its hash."""
    seconds = min(max_seconds, max(0.1, len(text) * seconds_per_char))
    frames = int(SAMPLE_RATE * seconds)
    pitch = 220 + hashlib.sha256(text.encode()).digest()[0] * 2
    samples = bytearray()
    for i in range(frames):
        value = int(8000 * math.sin(2 * math.pi * pitch * i / SAMPLE_RATE))
        samples += struct.pack("<h", value)
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(samples))
    return header + bytes(samples)


def png_solid(seed: str, size: str | None) -> bytes:
    """A solid-colour RGB PNG of ``size`` (``WxH``, default 1024x1024), colour from ``seed``."""
    width, height = parse_size(size)
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * width
    pixels = zlib.compress(row * height, 6)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def parse_size(size: str | None) -> tuple[int, int]:
    width, sep, height = (size or "").lower().partition("x")
    if sep and width.isdigit() and height.isdigit():
        return (min(MAX_IMAGE_SIDE, max(1, int(width))), min(MAX_IMAGE_SIDE, max(1, int(height))))
    return (1024, 1024)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
