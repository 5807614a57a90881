"""How faithfully an exported mesh stands in for its field, and how close a mesh is to a known one.

Texture fidelity: the exported mesh (mesh.npz + texture.png) is rasterized through the run's
held-out cameras and compared with the field's own renders of the same cameras, both over white:
PSNR, and the silhouette IoU (where each is more than half opaque). For a content run the mesh is
also compared with the photographs. Geometry: the symmetric Chamfer distance between two
meshes, from points spread evenly over their areas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import require
from ..export.pipeline import NPZ_NAME
from ..export.writers import TEXTURE_NAME
from ..render.mesh_raster import rasterize
from ..render.views import render_view
from ..train.loading import TrainedRun
from .evaluate import over_background
from .metrics import psnr


@dataclass
class ExportedMesh:
    vertices: torch.Tensor  # [V, 3]
    faces: torch.Tensor  # [F, 3]
    uvs: torch.Tensor | None
    texture: torch.Tensor | None  # [S, S, 3] in [0, 1]
    vertex_colors: torch.Tensor | None


def load_export(export_dir: str | Path, device: torch.device | str = "cpu") -> ExportedMesh:
    """Read what `export` wrote: mesh.npz, and texture.png next to it when the mesh has UVs."""
    folder = Path(export_dir)
    npz_path = folder / NPZ_NAME
    require(npz_path.is_file(), f"{folder} has no {NPZ_NAME}; give the folder that `export` wrote.")
    with np.load(npz_path) as data:
        arrays = {key: data[key] for key in data.files if key != "up_axis"}

    def tensor(key: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[key]).to(device) if key in arrays else None

    texture = None
    if "uvs" in arrays:
        require((folder / TEXTURE_NAME).is_file(), f"{folder} has UVs but no {TEXTURE_NAME}; export the mesh again.")
        with Image.open(folder / TEXTURE_NAME) as image:
            texture = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).to(device)
    return ExportedMesh(tensor("vertices").float(), tensor("faces").long(), tensor("uvs"), texture, tensor("vertex_colors"))


def render_mesh(mesh: ExportedMesh, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int, supersample: int = 2):
    """The exported mesh through one camera (see `rasterize`)."""
    return rasterize(mesh.vertices, mesh.faces, c2w, intrinsics, width, height, uvs=mesh.uvs, texture=mesh.texture,
                     vertex_colors=mesh.vertex_colors, supersample=supersample)


def silhouette_iou(alpha_a: torch.Tensor, alpha_b: torch.Tensor) -> float:
    a, b = alpha_a > 0.5, alpha_b > 0.5
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0


@torch.no_grad()
def texture_fidelity(trained: TrainedRun, mesh: ExportedMesh, views, supersample: int = 2, progress=None) -> dict:
    """Per-view and mean PSNR of the mesh against the field (and against the photographs for a
    content run), with silhouette IoU, all over white."""
    require(views is not None and len(views) > 0, "The run has no views to compare the mesh through.")
    white = torch.ones(3, device=trained.device)
    compare_photos = trained.kind in ("nerf", "sdf")
    per_view = []
    for index in range(len(views)):
        c2w, intrinsics = views.c2w[index], views.intrinsics[index]
        field = render_view(trained.model, c2w, intrinsics, views.width, views.height, white)
        drawn = render_mesh(mesh, c2w, intrinsics, views.width, views.height, supersample)
        mesh_rgb = over_background(torch.cat([drawn.rgb, drawn.alpha[..., None]], dim=-1))
        entry = {"view": views.names[index], "psnr_vs_field": psnr(mesh_rgb, field.rgb),
                 "silhouette_iou": silhouette_iou(drawn.alpha, field.opacity)}
        if compare_photos:
            photo = over_background(views.rgba(index))
            entry["psnr_vs_photo"] = psnr(mesh_rgb, photo)
            entry["field_psnr_vs_photo"] = psnr(field.rgb, photo)
        per_view.append(entry)
        if progress is not None:
            progress(index + 1, len(views))
    keys = [key for key in per_view[0] if key != "view"]
    summary = {key: sum(v[key] for v in per_view) / len(per_view) for key in keys}
    return {**summary, "faces": int(mesh.faces.shape[0]), "views": per_view}


def sample_surface_faces(vertices: torch.Tensor, faces: torch.Tensor, count: int,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` points [count, 3] spread uniformly over the mesh's area, and the face each lies on [count]."""
    corners = vertices[faces]
    areas = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=-1)
    require(float(areas.sum()) > 0, "The mesh has no area to sample.")
    chosen = torch.multinomial(areas, count, replacement=True, generator=generator)
    r1, r2 = torch.rand(2, count, 1, generator=generator, dtype=vertices.dtype)
    root = r1.sqrt()  # uniform over a triangle: the square-root trick
    a, b, c = corners[chosen].unbind(dim=1)
    return (1 - root) * a + root * (1 - r2) * b + root * r2 * c, chosen


def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` points spread uniformly over the mesh's area."""
    return sample_surface_faces(vertices, faces, count, generator)[0]


def chamfer_distance(vertices_a: torch.Tensor, faces_a: torch.Tensor, vertices_b: torch.Tensor, faces_b: torch.Tensor,
                     samples: int = 100_000, density: int = 10, seed: int = 0) -> dict:
    """Symmetric Chamfer distance between two meshes: the mean of the two mean nearest distances,
    with each direction and the 95th percentile. `samples` query points per mesh look for their
    nearest among `density` times as many points on the other mesh (a k-d tree), which keeps the
    sampling's own error (about half the target spacing) well below the distances measured."""
    from scipy.spatial import cKDTree  # PyMCubes already needs scipy

    generator = torch.Generator().manual_seed(seed)
    dense_a = sample_surface(vertices_a.double().cpu(), faces_a.cpu(), samples * density, generator).numpy()
    dense_b = sample_surface(vertices_b.double().cpu(), faces_b.cpu(), samples * density, generator).numpy()
    a_to_b = cKDTree(dense_b).query(dense_a[:samples])[0]
    b_to_a = cKDTree(dense_a).query(dense_b[:samples])[0]
    return {"chamfer": 0.5 * float(a_to_b.mean() + b_to_a.mean()), "a_to_b": float(a_to_b.mean()),
            "b_to_a": float(b_to_a.mean()), "p95": float(np.quantile(np.concatenate([a_to_b, b_to_a]), 0.95))}
