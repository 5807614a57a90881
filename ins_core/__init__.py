"""INS core: implicit neural representations and Implicit Neural Stylization.

The top-level import stays free of torch so that the Blender extension can use the job
specification (`ins_core.job`) and the worker protocol (`ins_core.protocol`) without it.
"""

__version__ = "0.1.0"
