"""Every stylized object a render shows, as fields: the INS engine draws them all in one frame.

The engine's own job (the Render Job, else the latest) stands where *Placement* puts it
(placement.py). Besides it, each stylized mesh Import Result added that this render shows (visible
in the viewport, or in renders for F12) and whose job has the Neural Render output brings its
job's field, placed by the mesh itself: two parts of a scene stylized with two paintings render
together, and a copy of a stylized mesh (Shift+D) is a second copy of its field. The meshes of
the engine's own job count so only while its Placement is one of them (the field follows its
mesh, so each copy of the mesh shows it); placed by anything else (an Empty, or where captured)
that job's field is the Placement's alone. A mesh whose job has no neural render (mesh only,
unfinished, moved away) simply brings none. The server renders each and lays them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ins_core.job import JobPaths

from .placement import checked_placement, field_matrix, field_object, field_placement
from .render_client import render_job, renders_a_field
from .rig import RESULT_PROPERTY, is_ins_result


def job_of(obj) -> JobPaths:
    """The job folder an imported stylized mesh names, resolved."""
    return JobPaths(Path(bpy.path.abspath(str(obj[RESULT_PROPERTY]))).resolve())


def other_fields(scene, depsgraph, job: JobPaths) -> list[tuple[dict, object]]:
    """The render command's `others` for `depsgraph`'s render of `scene`, whose own field is `job`'s,
    each with its object: {"job", "placement", "style_mix", "motion"} for each other stylized mesh
    shown (InputError naming one that is not scaled evenly), its style mix left to the server (the
    one its job was stylized with, as its mesh was baked); the motion is filled in for F12
    (`with_motions`)."""
    if depsgraph is None:
        return []
    own = JobPaths(Path(job.root).resolve())
    placed = field_object(scene)
    copies_of_own = placed is not None and is_ins_result(placed) and job_of(placed).root == own.root
    fields = []
    for shown in depsgraph.objects:  # what this render shows: hidden objects are not in it
        obj = shown.original
        if obj == placed or not is_ins_result(obj):
            continue
        other = job_of(obj)
        if (other.root == own.root and not copies_of_own) or not renders_a_field(other):
            continue
        fields.append(({"job": str(other.root), "placement": checked_placement(obj.name, field_matrix(obj, depsgraph)),
                        "style_mix": None, "motion": None}, obj))
    return sorted(fields, key=lambda pair: (pair[0]["job"], str(pair[0]["placement"]), pair[1].name))  # (a steady order: a steady key)


@dataclass
class FrameFields:
    """What a frame renders: `job`'s field (its server renders the frame) at `placement`, with the
    scene's style weights when `own` (the engine's own job), and the `others` beside it; `objects`
    the objects placing them, that field's first (None: where captured)."""

    job: JobPaths
    placement: list[list[float]] | None
    own: bool
    others: list[dict]
    objects: list

    def with_motions(self, motions: list) -> list | None:
        """`motions` (the camera's over the shutter relative to each of `objects`) in the others;
        the first field's motion returned."""
        for other, motion in zip(self.others, motions[1:]):
            other["motion"] = motion
        return motions[0]


def frame_fields(scene, depsgraph, hidden: str | None) -> FrameFields | None:
    """The fields `depsgraph`'s frame of `scene` shows, `hidden` being placement.field_hidden's word
    on the engine's own; None when it shows none (that field hidden with its Placement, and no other
    stylized mesh shown). EngineError when the scene has no job to render."""
    job = render_job(scene)
    pairs = other_fields(scene, depsgraph, job)
    others, objects = [field for field, _ in pairs], [obj for _, obj in pairs]
    if hidden is None:
        return FrameFields(job, field_placement(scene, depsgraph), True, others, [field_object(scene), *objects])
    if not others:
        return None
    return FrameFields(JobPaths(Path(others[0]["job"])), others[0]["placement"], False, others[1:], objects)  # the first's server
