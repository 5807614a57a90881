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


def register() -> None:
    global _registered
    if _registered:
        unregister()
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
