"""A camera's motion during the shutter, as the INS engine sends it to the render server for motion
blur: its poses at evenly spaced times from the shutter's opening to its closing, as Blender's
Motion Blur settings (Shutter, Position) place the shutter around the frame and Cycles reads the
camera's motion. With an object placing the field (placement.py), what blurs is the camera's motion
relative to that object: each pose is the camera's as the field sees it, expressed where the
field stands at the frame, so a field whose object moves blurs as well as one the camera passes."""

from __future__ import annotations

import math

from .camera_model import camera_to_world
from .placement import field_matrix, world_matrix

MOTION_STEPS = 3  # poses over the shutter: its opening, middle and closing (Cycles' default for a camera)


def shutter_span(scene) -> tuple[float, float] | None:
    """(opening, closing) of the shutter in frames from the frame rendered; None with Motion Blur off."""
    settings = scene.render
    shutter = float(settings.motion_blur_shutter)
    if not settings.use_motion_blur or shutter <= 0.0:
        return None
    return {"START": (0.0, shutter), "CENTER": (-0.5 * shutter, 0.5 * shutter), "END": (-shutter, 0.0)}[settings.motion_blur_position]


def camera_motion(scene, camera_object, frame_set, depsgraph=None, field_object=None) -> list[list[list[float]]] | None:
    """The camera's camera-to-world matrices over the shutter (MOTION_STEPS of them), None with Motion
    Blur off or a camera that holds still then (relative to `field_object`, the object placing the
    field, when there is one). `frame_set(frame, subframe)` evaluates the scene at another time
    (RenderEngine.frame_set in a render); the current frame is set again after."""
    return camera_motions(scene, camera_object, frame_set, depsgraph, [field_object])[0]


def camera_motions(scene, camera_object, frame_set, depsgraph, field_objects: list) -> list[list[list[list[float]]] | None]:
    """`camera_motion` relative to each of `field_objects` (None: the world) in one pass over the
    shutter: one field per stylized object, each blurred by its own object's motion and the camera's."""
    span = shutter_span(scene)
    if span is None:
        return [None] * len(field_objects)
    frame, subframe = scene.frame_current, scene.frame_subframe
    at_frame = [None if obj is None else field_matrix(obj, depsgraph) for obj in field_objects]
    poses: list[list] = [[] for _ in field_objects]
    try:
        for step in range(MOTION_STEPS):
            time = frame + subframe + span[0] + (span[1] - span[0]) * step / (MOTION_STEPS - 1)
            whole = math.floor(time)
            frame_set(whole, time - whole)
            camera = world_matrix(camera_object, depsgraph)
            for k, obj in enumerate(field_objects):
                seen = camera
                if obj is not None:  # the camera as the field sees it then, placed as the field is at the frame
                    seen = at_frame[k] @ field_matrix(obj, depsgraph).inverted_safe() @ camera
                poses[k].append(camera_to_world(seen))
    finally:
        frame_set(frame, subframe)
    return [None if _still(each) else each for each in poses]


def _still(poses: list) -> bool:
    return all(abs(a - b) <= 1e-7 for pose in poses[1:] for row_a, row_b in zip(pose, poses[0]) for a, b in zip(row_a, row_b))
