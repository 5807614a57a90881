"""After `make real-blender`'s window: the viewport preview drew the field before its mesh was hidden
(the eye icon) and the world alone after. Reads the two screenshots and the render region's place
on the screen from the GUI log ("on screen (left, top, width, height)"), and compares how much of
that region differs from its commonest colour: a field covers a good share of it, the world alone
leaves only the overlays (the light, the 3D cursor, the region's outline; the sidebar's edge). The
commonest colour must be the same in both, the world's, drawn where the field was (an engine that
drew nothing would leave the viewport's own grey).

    .venv/bin/python tests/real_blender/check_hidden.py SHOWN.png HIDDEN.png GUI_LOG [COPIED.png]

With COPIED.png (the mesh shown again with a copy beside it), the fields there must cover more of
the region than the one field did. Exit 1, with the shares, when the field did not go (or the
copy's did not come).
"""

from __future__ import annotations

import re
import sys

import numpy as np
from PIL import Image

SHOWN_AT_LEAST = 0.15  # of the region's pixels away from the world's colour with the field drawn (42 % seen)
HIDDEN_AT_MOST = 0.06  # ... with it hidden: the overlays only (2.5 % seen)
SAME_COLOUR = 3  # of 255, each channel: the commonest colour of both shots
COPY_GROWS = 1.15  # the share with a copy beside the field, against the field's alone
INSET = 4  # pixels left out at the region's edges (its outline)


def region_on_screen(log_text: str) -> tuple[int, int, int, int]:
    found = re.findall(r"on screen \((\d+), (\d+), (\d+), (\d+)\)", log_text)
    if not found:
        raise SystemExit("FAIL: the GUI log does not say where the render region was (was the mesh hidden?)")
    return tuple(int(v) for v in found[-1])


def share_off_background(path: str, rect: tuple[int, int, int, int]) -> tuple[float, np.ndarray]:
    """(The share of the rectangle's pixels more than 24/255 away from its commonest colour, that colour)."""
    left, top, width, height = rect
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    crop = pixels[top + INSET:top + height - INSET, left + INSET:left + width - INSET].reshape(-1, 3)
    colours, counts = np.unique(crop, axis=0, return_counts=True)
    commonest = colours[counts.argmax()]
    return float((np.abs(crop - commonest).max(axis=1) > 24).mean()), commonest


def main() -> int:
    shown_png, hidden_png, log_path = sys.argv[1:4]
    rect = region_on_screen(open(log_path, encoding="utf-8").read())
    (shown, world), (hidden, behind) = share_off_background(shown_png, rect), share_off_background(hidden_png, rect)
    verdict = shown >= SHOWN_AT_LEAST and hidden <= HIDDEN_AT_MOST and np.abs(world - behind).max() <= SAME_COLOUR
    print(f"{'ok' if verdict else 'FAIL'}: the field covered {shown:.1%} of the render region {rect} before the mesh "
          f"was hidden, {hidden:.1%} after; the colour around it {tuple(world)} before, {tuple(behind)} after")
    if len(sys.argv) > 4:
        copied, _ = share_off_background(sys.argv[4], rect)
        grew = copied >= COPY_GROWS * shown
        print(f"{'ok' if grew else 'FAIL'}: with a copy of the mesh beside it the fields covered {copied:.1%} of the region "
              f"(one field {shown:.1%})")
        verdict = verdict and grew
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
