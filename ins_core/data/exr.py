"""The float channels of an OpenEXR file as Blender writes them: enough to read a render's Depth
pass (training views' depth) with numpy alone, no EXR package.

Layout (the OpenEXR file format): magic and version flags, then the part headers (attributes:
name, type, size, value; each header ends with a null, a multi-part file's list with one more),
one offset table per part (one entry per chunk of scan lines), then the chunks: the part number
(multi-part only), the first line, the byte count, then for each line the line of each channel in
name order. Codecs read: None (one line a chunk), ZIPS (one) and ZIP (sixteen), both zlib over
bytes split into even and odd halves and stored as differences.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

_MAGIC = b"\x76\x2f\x31\x01"
_MULTIPART = 0x10  # in the version's second byte
_PIXEL_TYPES = {1: np.float16, 2: np.float32}
# compression attribute -> scan lines per chunk
_CODECS = {0: 1, 2: 1, 3: 16}
_CODEC_NAMES = {0: "None", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ", 5: "PXR24", 6: "B44", 7: "B44A", 8: "DWAA", 9: "DWAB"}


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


def _unzip(block: bytes, expected: int) -> bytes:
    """A ZIP / ZIPS chunk's raw bytes: inflate, undo the differences, merge the two halves."""
    if len(block) == expected:  # stored uncompressed where compressing did not pay
        return block
    packed = np.frombuffer(zlib.decompress(block), np.uint8).astype(np.int64)
    packed[1:] -= 128
    restored = (np.cumsum(packed) & 0xFF).astype(np.uint8)
    merged = np.empty_like(restored)
    half = (len(restored) + 1) // 2
    merged[0::2], merged[1::2] = restored[:half], restored[half:]
    return merged.tobytes()


def _parse(path: Path, data: bytes) -> dict[str, np.ndarray]:
    if data[:4] != _MAGIC:
        raise InputError(f"'{path}' is not an OpenEXR file; render the depth pass as OpenEXR.")
    multipart = bool(data[5] & _MULTIPART)
    headers, pos = [], 8
    while True:
        header, pos = _header(data, pos)
        headers.append(header)
        if not multipart or data[pos] == 0:
            pos += 1 if multipart else 0
            break
    tables = []
    for header in headers:
        codec = header["compression"][0]
        if codec not in _CODECS:
            raise InputError(f"'{path}' is compressed with {_CODEC_NAMES.get(codec, codec)}; write it with the codec None, ZIP or ZIPS.")
        x0, y0, x1, y1 = struct.unpack("<4i", header["dataWindow"])
        height, lines = y1 - y0 + 1, _CODECS[codec]
        n_chunks = -(-height // lines)
        tables.append((struct.unpack_from(f"<{n_chunks}Q", data, pos), x1 - x0 + 1, height, y0, lines, codec))
        pos += 8 * n_chunks
    planes: dict[str, np.ndarray] = {}
    for header, (offsets, width, height, y0, lines, codec) in zip(headers, tables):
        channels = [(name, _PIXEL_TYPES[kind]) for name, kind in _channels(header["channels"])]
        line_bytes = sum(width * np.dtype(dtype).itemsize for _, dtype in channels)
        part = {name: np.zeros((height, width), np.float32) for name, _ in channels}
        for offset in offsets:
            offset += 4 if multipart else 0  # the part number
            first, size = struct.unpack_from("<ii", data, offset)
            count = min(lines, y0 + height - first)
            block = data[offset + 8:offset + 8 + size]
            if codec:
                block = _unzip(block, count * line_bytes)
            pos = 0
            for line in range(first - y0, first - y0 + count):
                for name, dtype in channels:
                    part[name][line] = np.frombuffer(block, dtype, width, pos)
                    pos += width * np.dtype(dtype).itemsize
        planes.update(part)
    return planes


def read_exr_channels(path: str | Path) -> dict[str, np.ndarray]:
    """{channel name ("ViewLayer.Depth.Z"): [H, W] float32, top row first}; an InputError that
    names the file when it is missing, not an EXR, truncated or compressed with a codec not read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"Cannot read '{path}' ({error.strerror or error}); check the file exists.") from None
    try:
        return _parse(path, data)
    except (struct.error, IndexError, KeyError, ValueError, zlib.error):
        raise InputError(f"'{path}' is not a readable OpenEXR file (truncated or damaged); render it again.") from None
