"""Reading numpy's .npz / .npy files with the standard library only.

Linux distributions' Blender builds (Python 3.13) may have no numpy, so the add-on reads the
worker's mesh.npz itself: an .npz is a zip of .npy files, and an .npy is a short header (a Python
dict literal giving dtype, order and shape) followed by the raw values. Numbers come back as
`array.array` (which Blender's `foreach_set` takes directly), strings as `str`. No bpy, no numpy.
"""

from __future__ import annotations

import array
import ast
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x93NUMPY"


class NpyError(ValueError):
    """The file is not an .npz/.npy this reader understands; the message says why."""


@dataclass
class NpyArray:
    kind: str  # numpy's dtype kind: "f" float, "i" signed, "u" unsigned, "b" bool, "U" text
    shape: tuple[int, ...]
    values: array.array | list[str]  # flat, in C (row-major) order

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


def _typecode(kind: str, itemsize: int) -> str:
    """The array.array type code for a numpy kind and size ('f4' -> 'f', 'i8' -> 'q', ...)."""
    codes = {"f": "fd", "i": "bhilq", "u": "BHILQ", "b": "B"}.get(kind, "")
    for code in codes:
        if array.array(code).itemsize == itemsize:
            return code
    raise NpyError(f"unsupported number type '{kind}{itemsize}'")


# Single-character numpy type codes ('<f' is float32, '<i' int32, '|?' bool): kind and size.
_CHAR_CODES = {**{c: "f" for c in "fd"}, **{c: "i" for c in "bhilq"}, **{c: "u" for c in "BHILQ"}, "?": "b"}


def _dtype(descr) -> tuple[str, str, int]:
    """(byte order, kind, item size) of a simple .npy `descr`: '<f4', '|u1', '<U1', '<f', ..."""
    if isinstance(descr, str) and len(descr) == 2 and descr[1] in _CHAR_CODES:
        return descr[0], _CHAR_CODES[descr[1]], struct.calcsize(descr[1])  # C types: native sizes
    if isinstance(descr, str) and len(descr) >= 3 and descr[2:].isdigit():
        return descr[0], descr[1], int(descr[2:])
    raise NpyError(f"unsupported array type {descr!r}")


def _header(data: bytes) -> tuple[dict, int]:
    if data[:6] != MAGIC:
        raise NpyError("not an .npy array (no NUMPY header)")
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack_from("<H", data, 8), 10
    elif major in (2, 3):
        (length,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise NpyError(f"unsupported .npy version {major}")
    try:
        header = ast.literal_eval(data[start:start + length].decode("latin1"))
    except (ValueError, SyntaxError) as error:
        raise NpyError(f"bad .npy header ({error})") from None
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= header.keys():
        raise NpyError("bad .npy header")
    return header, start + length


def parse_npy(data: bytes) -> NpyArray:
    """One .npy file's bytes -> NpyArray (little- or big-endian numbers, text; no objects)."""
    header, offset = _header(data)
    descr, shape = header["descr"], tuple(int(n) for n in header["shape"])
    order, kind, itemsize = _dtype(descr)
    count = 1
    for n in shape:
        count *= n
    body = data[offset:]
    if kind == "U":  # UTF-32 text, itemsize characters each
        raw = body[:4 * itemsize * count].decode("utf-32-be" if order == ">" else "utf-32-le")
        values = [raw[i * itemsize:(i + 1) * itemsize].rstrip("\0") for i in range(count)]
        return NpyArray(kind, shape, values)
    values = array.array(_typecode(kind, itemsize))
    if len(body) < count * itemsize:
        raise NpyError(f"the array data is truncated ({len(body)} of {count * itemsize} bytes)")
    values.frombytes(body[:count * itemsize])
    if order == (">" if sys.byteorder == "little" else "<") and itemsize > 1:
        values.byteswap()
    if header["fortran_order"] and len(shape) > 1:
        values = _c_order(values, shape)
    return NpyArray(kind, shape, values)


def _c_order(values: array.array, shape: tuple[int, ...]) -> array.array:
    """Fortran (column-major) 2-D values -> C (row-major) order."""
    if len(shape) != 2:
        raise NpyError("Fortran-ordered arrays of more than 2 dimensions are not supported")
    rows, cols = shape
    out = array.array(values.typecode, values)
    for c in range(cols):
        out[c::cols] = values[c * rows:(c + 1) * rows]
    return out


def load_npz(path: str | Path) -> dict[str, NpyArray]:
    """Every array of an .npz file by name; OSError when unreadable, NpyError when malformed."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name[:-4] if name.endswith(".npy") else name: parse_npy(archive.read(name))
                    for name in archive.namelist()}
    except zipfile.BadZipFile as error:
        raise NpyError(f"not an .npz archive ({error})") from None
