"""Before and after: an imported stylized mesh shown in place of the objects it was made from, or
those objects again.

The capture names the objects it stylized in the dataset (`captured_objects` in
transforms_train.json: the objects that made the scene box); Import Result keeps those names on the
new object (`ORIGINALS_PROPERTY`) and shows it in their place (and in place of results made from
them before). *Show Stylized* hides them (in the viewport and in renders) and shows the result;
*Show Originals* does the reverse: an artist compares the two in one click, and renders the
stylized scene without hiding objects by hand. Visibility only: nothing is deleted, and each
switch is one undo step (the operator's, Import Result's, Stylize Scene's).
"""

from __future__ import annotations

import json
from pathlib import Path

from .rig import is_ins_result

ORIGINALS_PROPERTY = "ins_originals"


def captured_names(dataset_dir: Path) -> list[str]:
    """The names of the objects the job's capture stylized ([] when its dataset does not say)."""
    try:
        names = json.loads((Path(dataset_dir) / "transforms_train.json").read_text(encoding="utf-8")).get("captured_objects", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def result_in_focus(context):
    """The INS result the buttons act on: the active object when it is one, else the field's Placement
    when it is one; None otherwise."""
    active = getattr(context, "active_object", None)
    if active is not None and is_ins_result(active):
        return active
    settings = getattr(context.scene, "ins", None)
    placed = settings.field_object if settings is not None else None
    return placed if placed is not None and is_ins_result(placed) else None


def originals_of(result, scene) -> list:
    """The scene's objects the result was made from (those still there under their names)."""
    names = result.get(ORIGINALS_PROPERTY, [])
    return [scene.objects[name] for name in names if isinstance(name, str) and name in scene.objects]


def showing_stylized(result) -> bool:
    return not result.hide_render


def _set_shown(obj, view_layer, shown: bool) -> None:
    obj.hide_render = not shown
    try:
        obj.hide_set(not shown, view_layer=view_layer)
    except RuntimeError:  # not in this view layer (an excluded collection): renders decide
        pass


def rivals_of(result, scene) -> list:
    """The scene's other INS results made from any of the same objects (another painting, say)."""
    names = set(result.get(ORIGINALS_PROPERTY, []))
    return [obj for obj in scene.objects if obj is not result and is_ins_result(obj)
            and names & set(obj.get(ORIGINALS_PROPERTY, []))]


def show(result, scene, view_layer, stylized: bool) -> int:
    """The result shown and its originals hidden (`stylized`; the other results made from them too),
    or the reverse; how many originals."""
    originals = originals_of(result, scene)
    _set_shown(result, view_layer, stylized)
    for obj in originals:
        _set_shown(obj, view_layer, not stylized)
    if stylized:
        for other in rivals_of(result, scene):
            _set_shown(other, view_layer, False)
    return len(originals)


def show_imported(result, scene, view_layer) -> None:
    """After Import Result: the new mesh in place of the objects it was made from, and of the results
    made from them before (what the artist asked for when they pressed Stylize Scene); Show
    Originals brings the objects back. Nothing is hidden when the job does not name its objects."""
    if originals_of(result, scene):
        show(result, scene, view_layer, stylized=True)
