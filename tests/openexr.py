"""The float channels of an uncompressed OpenEXR file (single- or multi-part), as Blender writes
them with the codec "None": enough to read a render's passes back in tests (no EXR package here).

Layout (the OpenEXR file format): magic and version flags, then the part headers (attributes:
name, type, size, value; each header ends with a null, a multi-part file's list with one more),
one offset table per part (a chunk per scan line when uncompressed), then the chunks: the part
number (multi-part only), the line, its byte count, and the line of each channel in name order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = b"\x76\x2f\x31\x01"
_MULTIPART = 0x10  # in the version's second byte
_PIXEL_TYPES = {1: np.float16, 2: np.float32}


def _string(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode(), end + 1


def _header(data: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    header = {}
    while data[pos] != 0:
        name, pos = _string(data, pos)
        _, pos = _string(data, pos)  # the attribute's type
        (size,) = struct.unpack_from("<i", data, pos)
        header[name] = data[pos + 4:pos + 4 + size]
        pos += 4 + size
    return header, pos + 1


def _channels(raw: bytes) -> list[tuple[str, int]]:
    channels, pos = [], 0
    while raw[pos] != 0:
        name, pos = _string(raw, pos)
        channels.append((name, struct.unpack_from("<i", raw, pos)[0]))
        pos += 16  # pixel type, pLinear and reserved bytes, x and y sampling
    return channels


def read_exr_channels(path: str | Path) -> dict[str, np.ndarray]:
    """{channel name ("ViewLayer.Depth.Z"): [H, W] float32, top row first}."""
    data = Path(path).read_bytes()
    assert data[:4] == _MAGIC, f"{path} is not an OpenEXR file"
    multipart = bool(data[5] & _MULTIPART)
    headers, pos = [], 8
    while True:
        header, pos = _header(data, pos)
        headers.append(header)
        if not multipart:
            break
        if data[pos] == 0:
            pos += 1
            break
    tables = []
    for header in headers:
        assert header["compression"][0] == 0, f"{path} is compressed; write it with the codec None"
        x0, y0, x1, y1 = struct.unpack("<4i", header["dataWindow"])
        height = y1 - y0 + 1
        tables.append((struct.unpack_from(f"<{height}Q", data, pos), x1 - x0 + 1, height, y0))
        pos += 8 * height
    planes: dict[str, np.ndarray] = {}
    for header, (offsets, width, height, y0) in zip(headers, tables):
        channels = _channels(header["channels"])
        part = {name: np.zeros((height, width), np.float32) for name, _ in channels}
        for offset in offsets:
            offset += 4 if multipart else 0  # the part number
            (line,) = struct.unpack_from("<i", data, offset)
            pos = offset + 8
            for name, pixel_type in channels:
                dtype = _PIXEL_TYPES[pixel_type]
                part[name][line - y0] = np.frombuffer(data, dtype, width, pos)
                pos += width * np.dtype(dtype).itemsize
        planes.update(part)
    return planes
