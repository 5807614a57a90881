"""INS core: implicit neural representations and Implicit Neural Stylization.

The top-level import stays free of torch so that the Blender extension can use the job
specification (`ins_core.job`) and the worker protocol (`ins_core.protocol`) without it.
"""

__version__ = "0.1.0"

import os as _os


def _file_identity() -> tuple[int, int, int] | None:
    try:
        stat = _os.stat(__file__)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


_LOADED_FROM = _file_identity()


def loaded_from_current_files() -> bool:
    """Whether this package's files on disk are still the ones it was imported from. Installing a
    new build of the Blender extension replaces them under a running Blender, which keeps the old
    modules imported (`ins_blender.forget_replaced_core`)."""
    return _file_identity() == _LOADED_FROM
