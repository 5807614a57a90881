"""Mesh clean-up after marching cubes: drop floaters, decimate to a face budget, smooth, vertex normals.

Plain numpy on (vertices [V, 3], faces [F, 3]) arrays. Connected components use a vectorised
union-find (hooking plus pointer jumping), which in practice takes a handful of passes over the
edges rather than one per vertex along the mesh's diameter as label propagation would; no scipy
or networkx needed. Decimation is quadric edge collapse (fast_simplification).
"""

from __future__ import annotations

import numpy as np

from ins_core.errors import require

DEFAULT_MIN_FRACTION = 0.02
# Taubin's pair: a shrinking step, then a slightly larger inflating one, so that the surface's
# bumps (high frequencies) fade while its shape (low ones) keeps its size.
TAUBIN_SHRINK, TAUBIN_INFLATE = 0.5, -0.53


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces to match."""
    used, new_faces = np.unique(faces, return_inverse=True)
    return vertices[used], new_faces.reshape(-1, 3).astype(np.int64)


def component_labels(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Label [V] of each vertex's connected component (faces sharing a vertex are connected);
    a label is the smallest vertex index in its component."""
    parent = np.arange(n_vertices, dtype=np.int64)
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        low = np.minimum(root_a[differ], root_b[differ])
        high = np.maximum(root_a[differ], root_b[differ])
        # Hook each root onto the smallest root it touches; parents only ever point to smaller
        # indices, so no cycles form, then jump pointers until every vertex points at a root.
        np.minimum.at(parent, high, low)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def keep_largest(
    vertices: np.ndarray,
    faces: np.ndarray,
    n_components: int = 1,
    min_fraction: float = DEFAULT_MIN_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the `n_components` largest connected pieces (by face count), plus any other piece
    holding at least `min_fraction` of all faces, so a scene of several separate objects keeps
    them all while small floaters go. Unused vertices are dropped."""
    require(n_components >= 1, f"keep_largest needs n_components >= 1, not {n_components}.")
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return vertices, faces
    labels = component_labels(faces, len(vertices))[faces[:, 0]]
    names, face_label, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(names))
    keep_component = (rank < n_components) | (sizes >= min_fraction * len(faces))
    return compact(vertices, faces[keep_component[face_label]])


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce the mesh to at most `target_faces` faces by quadric edge collapse (the
    Fast-Quadric-Mesh-Simplification library), which keeps curvature and sharp edges where
    marching cubes spent many small faces on flat parts. Open borders (a surface cut by the scene
    box, the edge of what the cameras saw) stay where they are, unless the budget cannot be met
    while they do: then they are simplified too."""
    require(target_faces >= 4, f"The face budget must be at least 4 faces, not {target_faces}.")
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) <= target_faces:
        return vertices, faces
    # Imported here: only meshes over their face budget need the compiled library.
    import fast_simplification

    for preserve_border in (True, False):
        new_vertices, new_faces = fast_simplification.simplify(
            np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.int32),
            target_count=int(target_faces), preserve_border=preserve_border,
        )
        new_faces = np.asarray(new_faces, dtype=np.int64).reshape(-1, 3)
        if len(new_faces) <= target_faces:
            break
    return compact(np.asarray(new_vertices, dtype=vertices.dtype), new_faces)


def _unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each undirected edge once [E, 2] (smaller index first), and how many faces use it [E]."""
    pairs = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(pairs, axis=0, return_counts=True)


def smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Vertices [V, 3] moved by `iterations` rounds of Taubin smoothing (each vertex toward the mean
    of its neighbours, then a little back out). A NeRF's density is noisy at the scale of its
    encoding, so its level set comes out bumpy, and the bumps, shaded by a light, read as grain;
    the filter takes them away without shrinking the shape. Vertices on an open border (the edge
    of what the cameras saw) stay put: with neighbours on one side only, they would creep inward."""
    require(iterations >= 0, f"The smoothing iterations must be 0 or more, not {iterations}.")
    faces = np.asarray(faces, dtype=np.int64)
    if iterations == 0 or len(faces) == 0:
        return vertices
    edges, uses = _unique_edges(faces)
    ends = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(ends[:, 0], minlength=len(vertices)).astype(np.float64)
    movable = np.ones(len(vertices), dtype=bool)
    movable[edges[uses == 1].reshape(-1)] = False
    movable &= degree > 0
    scale = (movable / np.maximum(degree, 1.0))[:, None]
    points = np.asarray(vertices, dtype=np.float64).copy()

    def toward_neighbours(x: np.ndarray) -> np.ndarray:
        summed = np.stack([np.bincount(ends[:, 0], weights=x[ends[:, 1], k], minlength=len(x)) for k in range(3)], axis=1)
        return scale * (summed - degree[:, None] * x)

    for _ in range(iterations):
        points += TAUBIN_SHRINK * toward_neighbours(points)
        points += TAUBIN_INFLATE * toward_neighbours(points)
    return points.astype(np.asarray(vertices).dtype)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [V, 3] float32, the area-weighted mean of the faces around each vertex
    (the unnormalised cross product is twice the face area, so the weight comes for free)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    corners = f.reshape(-1)
    summed = np.stack(
        [np.bincount(corners, weights=np.repeat(face_normals[:, k], 3), minlength=len(v)) for k in range(3)], axis=1
    )
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    normals = np.where(length > 0, summed / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0]))
    return normals.astype(np.float32)
