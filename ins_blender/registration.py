"""Registering a module's Blender classes (in order) and unregistering them (in reverse)."""

from __future__ import annotations

import bpy


def class_registrar(classes: tuple) -> tuple:
    """(register, unregister) for `classes`; unregistering skips classes that are not registered,
    so a failed or repeated unregister leaves Blender clean."""

    def register() -> None:
        for cls in classes:
            bpy.utils.register_class(cls)

    def unregister() -> None:
        for cls in reversed(classes):
            if getattr(cls, "is_registered", False):
                bpy.utils.unregister_class(cls)

    return register, unregister
