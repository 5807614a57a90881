"""INS for Blender: stylize 3D scenes with Implicit Neural Stylization.

Registration only (the extension's metadata is in blender_manifest.toml). register() and
unregister() can each run any number of times in a row, in any order; unregister stops every
worker and render server this add-on started.
"""

from __future__ import annotations

_MODULES = ("properties", "preferences", "operators", "panels", "engine", "batch")  # batch: the --command
_registered = False


def _modules():
    import importlib

    return [importlib.import_module(f"{__name__}.{name}") for name in _MODULES]


def forget_replaced_core() -> None:
    """Drop ins_core from the imported modules when its files were replaced since it was imported.

    Installing a new build of the extension into a running Blender replaces ins_core in the
    extensions' site-packages and reloads the add-on, but Python keeps the ins_core modules it
    imported from the old files, so the new add-on would import from those (Blender 4.3, upgrading
    over a build without a name the new one imports: "cannot import name ..." in register()). A
    build from before `loaded_from_current_files` counts as replaced."""
    import sys

    core = sys.modules.get("ins_core")
    current = getattr(core, "loaded_from_current_files", None)
    if core is None or (current is not None and current()):
        return
    for name in [name for name in sys.modules if name == "ins_core" or name.startswith("ins_core.")]:
        del sys.modules[name]


def register() -> None:
    global _registered
    if _registered:
        unregister()
    forget_replaced_core()
    from . import jobs

    done = []
    try:
        for module in _modules():
            module.register()
            done.append(module)
        jobs.register()
    except Exception:
        for module in reversed(done):
            try:
                module.unregister()
            except Exception:  # noqa: BLE001 - roll back as much as possible
                pass
        raise
    _registered = True


def unregister() -> None:
    global _registered
    from . import jobs

    jobs.unregister()  # stops the timer, the handlers, every worker
    for module in reversed(_modules()):
        module.unregister()
    _registered = False
