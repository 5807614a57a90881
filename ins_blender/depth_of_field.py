"""A Blender camera's depth of field as the INS engine sends it to the render server (the fields
of ins_core.data.lens.ThinLens), taken as Cycles takes it."""

from __future__ import annotations

from mathutils import Vector


def focus_distance(camera_object) -> float:
    """The distance in focus along the camera's axis: the Focus Object's (or its bone's) along the
    axis when one is set, else the Focus Distance."""
    dof = camera_object.data.dof
    target = dof.focus_object
    if target is None:
        return float(dof.focus_distance)
    where = target.matrix_world.translation
    bone = target.pose.bones.get(dof.focus_subtarget) if target.pose is not None and dof.focus_subtarget else None
    if bone is not None:
        where = (target.matrix_world @ bone.matrix).translation
    axis = Vector(camera_object.matrix_world.col[2].xyz).normalized()
    return abs(axis.dot(camera_object.matrix_world.translation - where))


def depth_of_field(camera_object) -> dict | None:
    """{focus_distance, aperture_radius, ratio, blades, rotation} of a camera whose Depth of Field
    is on, None otherwise. The aperture's radius is, as in Cycles, the focal length in metres over
    twice the f-stop (an orthographic camera's 1 over twice it), whatever the scene's units."""
    camera = camera_object.data
    dof = camera.dof
    if not dof.use_dof:
        return None
    fstop = max(float(dof.aperture_fstop), 1e-5)
    blades = int(dof.aperture_blades)
    radius = 1.0 / (2.0 * fstop) if camera.type == "ORTHO" else camera.lens * 1e-3 / (2.0 * fstop)
    return {"focus_distance": max(focus_distance(camera_object), 1e-5), "aperture_radius": radius,
            "ratio": float(dof.aperture_ratio), "blades": blades if blades >= 3 else 0,  # fewer than 3: round
            "rotation": float(dof.aperture_rotation)}
