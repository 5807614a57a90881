"""A small z-buffer rasterizer for textured triangle meshes, in plain torch.

It exists to compare an exported mesh with the field it came from, pixel for pixel, through the
same cameras and pixel-centre convention as the ray renderer (`ins_core.data.cameras`): no
lighting, the texture's colour is the pixel's colour. Barycentrics are perspective-correct and
the texture is sampled bilinearly with the exporter's UV convention (v grows upwards).

Faces are processed in chunks: each face's pixel bounding box becomes a list of candidate pixels
(repeat_interleave), the candidates inside the triangle keep their depth, and a two-pass depth
test (scatter-min of depth, then the candidates that equal it) picks the visible face per pixel.
Triangles crossing the near plane are dropped rather than clipped, so cameras should see the
whole mesh in front of them, as evaluation cameras do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.cameras import project_points

NEAR = 1e-4
CANDIDATES_PER_CHUNK = 1 << 22


@dataclass
class MeshRender:
    rgb: torch.Tensor  # [H, W, 3] texture colour (straight, not premultiplied), 0 where nothing is hit
    alpha: torch.Tensor  # [H, W] covered fraction (0/1, or sub-pixel coverage with supersampling)
    depth: torch.Tensor  # [H, W] distance along the viewing axis, 0 where nothing is hit


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture look-up: texture [S, S, C] with row 0 at the top, uv [N, 2] with (0, 0)
    at the bottom-left corner (Blender's and OBJ's convention). Returns [N, C]."""
    grid = torch.stack([uv[:, 0] * 2.0 - 1.0, 1.0 - uv[:, 1] * 2.0], dim=-1).view(1, 1, -1, 2)
    image = texture.permute(2, 0, 1).unsqueeze(0)
    sampled = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.view(texture.shape[-1], -1).T


def _face_boxes(screen: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per face, the first (col, row) pixel whose centre may lie inside it, and the box size."""
    low = torch.ceil(screen.amin(dim=1) - 0.5).clamp_min(0)
    high = torch.floor(screen.amax(dim=1) - 0.5)
    high = torch.minimum(high, torch.tensor([width - 1, height - 1], dtype=high.dtype, device=high.device))
    size = (high - low + 1).clamp_min(0)
    return low.long(), size.long()


def _candidates(screen: torch.Tensor, depth: torch.Tensor, low: torch.Tensor, size: torch.Tensor, faces: torch.Tensor, width: int):
    """Pixels inside each of these faces: (pixel index, face index, perspective-correct
    barycentrics [N, 3], depth [N]). `faces` indexes rows of screen/depth/low/size."""
    counts = size[faces, 0] * size[faces, 1]
    owner = torch.repeat_interleave(faces, counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=screen.device) - torch.repeat_interleave(starts, counts)
    col = low[owner, 0] + local % size[owner, 0]
    row = low[owner, 1] + local // size[owner, 0]
    centre = torch.stack([col, row], dim=-1).to(screen.dtype) + 0.5
    a, b, c = screen[owner, 0], screen[owner, 1], screen[owner, 2]

    def edge(p, q, r):  # twice the signed area of (p, q, r)
        return (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])

    area = edge(a, b, c)
    weights = torch.stack([edge(b, c, centre), edge(c, a, centre), edge(a, b, centre)], dim=-1) / area.unsqueeze(-1)
    inside = (weights >= 0).all(dim=-1) & (area.abs() > 1e-12)
    weights, owner = weights[inside], owner[inside]
    # Screen-space weights become world-space ones by dividing by each corner's depth.
    inverse = weights / depth[owner]
    point_depth = 1.0 / inverse.sum(dim=-1)
    pixel = row[inside] * width + col[inside]
    return pixel, owner, inverse * point_depth.unsqueeze(-1), point_depth


def _chunks(counts: torch.Tensor):
    """Face index ranges whose candidate pixels add up to about CANDIDATES_PER_CHUNK each."""
    total = torch.cumsum(counts, 0)
    start = 0
    while start < len(counts):
        base = int(total[start - 1]) if start else 0
        end = int(torch.searchsorted(total, torch.tensor(base + CANDIDATES_PER_CHUNK, device=total.device), right=True))
        end = max(end, start + 1)
        yield torch.arange(start, min(end, len(counts)), device=counts.device)
        start = end


@torch.no_grad()
def _projected_faces(vertices: torch.Tensor, faces: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int):
    """The faces wholly in front of the camera, their corners on screen and in depth, their pixel
    boxes, how many pixels each box holds, and which boxes hold any."""
    screen_v, depth_v = project_points(vertices.float(), c2w.float(), intrinsics.float())
    faces = faces.long()
    faces = faces[(depth_v[faces] > NEAR).all(dim=1)]
    screen, depth = screen_v[faces], depth_v[faces]
    low, size = _face_boxes(screen, width, height)
    counts = size[:, 0] * size[:, 1]
    return faces, screen, depth, low, size, counts, torch.nonzero(counts > 0).squeeze(1)


def _zbuffer(screen, depth, low, size, counts, visible, width: int, height: int) -> torch.Tensor:
    """[H * W] the nearest face's depth at each pixel centre (inf where no face covers it)."""
    zbuffer = torch.full((width * height,), float("inf"), device=screen.device)
    for part in _chunks(counts[visible]):
        pixel, _, _, z = _candidates(screen, depth, low, size, visible[part], width)
        zbuffer.scatter_reduce_(0, pixel, z, reduce="amin")
    return zbuffer


def depth_buffer(vertices: torch.Tensor, faces: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor,
                 width: int, height: int) -> torch.Tensor:
    """[H, W]: the distance along the viewing axis to the nearest face at each pixel centre, inf
    where no face covers it (a z-buffer alone, without colour)."""
    projected = _projected_faces(vertices, faces, c2w, intrinsics, width, height)
    return _zbuffer(*projected[1:], width, height).view(height, width)


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
              uvs: torch.Tensor | None = None, texture: torch.Tensor | None = None, vertex_colors: torch.Tensor | None = None,
              supersample: int = 1) -> MeshRender:
    """Render a mesh (vertices [V, 3], faces [F, 3]) through a pinhole camera, coloured by a
    texture (uvs [V, 2] and texture [S, S, 3] in [0, 1]) or else by vertex_colors [V, 3]. With
    `supersample` = k, k x k samples per pixel are averaged, which gives the soft edges a field
    render has."""
    textured = uvs is not None and texture is not None
    if not textured and vertex_colors is None:
        raise ValueError("rasterize needs uvs and a texture, or vertex colours")
    attribute = (uvs if textured else vertex_colors).float()
    k = int(supersample)
    big_w, big_h = width * k, height * k
    fx, fy, cx, cy = intrinsics.unbind(-1)
    scaled = torch.stack([fx * k, fy * k, cx * k, cy * k])
    faces, screen, depth, low, size, counts, visible = _projected_faces(vertices, faces, c2w, scaled, big_w, big_h)
    n_pixels = big_w * big_h
    zbuffer = _zbuffer(screen, depth, low, size, counts, visible, big_w, big_h)
    values = torch.zeros(n_pixels, attribute.shape[1], device=vertices.device)
    for part in _chunks(counts[visible]):
        pixel, owner, weights, z = _candidates(screen, depth, low, size, visible[part], big_w)
        won = z <= zbuffer[pixel]
        values[pixel[won]] = (weights[won].unsqueeze(-1) * attribute[faces[owner[won]]]).sum(dim=1)

    covered = torch.isfinite(zbuffer)
    rgb = torch.zeros(n_pixels, 3, device=vertices.device)
    rgb[covered] = sample_texture(texture.float(), values[covered]) if textured else values[covered]
    depth_image = torch.where(covered, zbuffer, torch.zeros_like(zbuffer))

    def down(image: torch.Tensor) -> torch.Tensor:  # [bigH, bigW, C] -> [H, W, C] box average
        return F.avg_pool2d(image.permute(2, 0, 1).unsqueeze(0), k).squeeze(0).permute(1, 2, 0)

    alpha = covered.float().view(big_h, big_w, 1)
    rgb_premultiplied = down(rgb.view(big_h, big_w, 3))  # zeros where uncovered
    coverage = down(alpha)
    rgb_out = rgb_premultiplied / coverage.clamp_min(1e-6) * (coverage > 0)
    depth_out = down(depth_image.view(big_h, big_w, 1)) / coverage.clamp_min(1e-6) * (coverage > 0)
    return MeshRender(rgb_out, coverage.squeeze(-1), depth_out.squeeze(-1))
