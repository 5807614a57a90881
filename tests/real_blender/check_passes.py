"""After `passes.py`'s frame: the EXR holds the INS engine's Depth pass, with depths exactly where
the field is opaque, its Mist pass (1 where the field is empty, the world's linear mist by the
distance where it is opaque), its Normal pass (nearly unit normals facing every way the object
does where it is opaque, none longer than 1), and an opaque image (the world's colour where the field is empty).

    python tests/real_blender/check_passes.py OUT/passes_0001.exr
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ins_core.data.exr import read_exr_channels  # noqa: E402

channels = read_exr_channels(sys.argv[1])
layer = next(name.split(".")[0] for name in channels if name.endswith(".Depth.Z"))
depth, alpha = channels[f"{layer}.Depth.Z"], channels[f"{layer}.Combined.A"]
surface = depth < 1e9
assert np.allclose(alpha, 1.0), "Film > Transparent is off: the image should be opaque"
assert 0.01 < surface.mean() < 0.99, f"the field covers {surface.mean():.1%} of the frame"
assert (depth[surface] > 0).all()
print(f"Depth pass: {surface.mean():.1%} of the frame, {depth[surface].min():.2f} to {depth[surface].max():.2f} along the camera's axis")
mist = channels[f"{layer}.Mist.Z"]
assert ((0.0 <= mist) & (mist <= 1.0)).all(), "the Mist pass runs from 0 to 1"
assert (mist[~surface] > 0.49).all(), "where the field is under half opaque the mist is at least half"
assert mist[surface].max() - mist[surface].min() > 0.05, "the mist should grow with the distance over the object"
print(f"Mist pass: {mist[surface].min():.2f} to {mist[surface].max():.2f} over the surface, {mist[~surface].mean():.2f} elsewhere on average")
normal = np.stack([channels[f"{layer}.Normal.{axis}"] for axis in "XYZ"], axis=-1)
length = np.linalg.norm(normal, axis=-1)
assert (length <= 1.0 + 1e-4).all(), "a normal is at most unit long (shorter where the field is partly opaque)"
# (The samples' mean: shorter where the surface turns within a pixel or covers part of it.)
assert np.median(length[surface]) > 0.8, "where there is a surface, nearly unit normals"
solid = length > 0.9
assert solid.sum() > 20 and normal[solid].std(axis=0).min() > 0.1, "the normals should turn over the object"
print(f"Normal pass: median length {np.median(length[surface]):.2f} over the surface, {length[~surface].mean():.2f} elsewhere; "
      f"mean direction ({', '.join(f'{v:.2f}' for v in normal[solid].mean(axis=0))})")
