"""The run directory: what `fit` writes and `render`, `eval`, `export` and `stylize` read.

RUN/
  run.json              kind, data, model settings, training settings, scene box, progress
  checkpoints/last.pt   model + optimiser state, written atomically
  metrics.json          from `eval`
  loss.png              the loss and PSNR curves
  renders/              from `render`
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import InputError
from ..json_files import read_json, write_json_atomic

RUN_VERSION = 1


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "run.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def renders_dir(self) -> Path:
        return self.root / "renders"

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict:
        if not self.exists():
            raise InputError(f"'{self.root}' is not a trained run (it has no run.json); train one with: python -m ins_core fit --data DIR --out {self.root}")
        config = read_json(self.config_path, "run.json")
        if not isinstance(config, dict) or config.get("version") != RUN_VERSION or "kind" not in config:
            raise InputError(f"{self.config_path} is not a run file of this version; train the run again with --force.")
        return config

    def write_config(self, config: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, {"version": RUN_VERSION, **{k: v for k, v in config.items() if k != "version"}})

    def require_trained(self) -> dict:
        config = self.read_config()
        if not self.checkpoint_path.is_file():
            raise InputError(f"Run '{self.root}' has no checkpoint yet; let `fit` finish (it resumes when run again).")
        return config

    def prepare_new(self, signature: dict, force: bool) -> bool:
        """Get the folder ready for a fit; returns True when an unfinished matching run should resume.

        An existing run with other settings is only replaced with `force`; a folder with files that
        are not a run is never emptied.
        """
        if not self.root.exists() or (self.root.is_dir() and not any(self.root.iterdir())):
            return False
        if not self.root.is_dir():
            raise InputError(f"Output '{self.root}' is a file; choose a folder path for --out.")
        if not self.exists():
            raise InputError(f"Output folder '{self.root}' is not empty and holds no run; choose an empty or new folder for --out.")
        if force:
            shutil.rmtree(self.root)
            return False
        stored = self.read_config().get("signature", {})
        if stored != signature:
            differing = sorted(key for key in set(signature) | set(stored) if stored.get(key) != signature.get(key))
            raise InputError(f"Output folder '{self.root}' holds another run (different {', '.join(differing)}); choose another --out or pass --force to replace it.")
        return True
