# mmdetr: `make install`, `make test`, `make demo`.
# Everything goes into the active Python environment (python3 on PATH, or
# PYTHON=/path/to/python). Each install step is skipped when already done.

PYTHON ?= python3
PIP := PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
MMCV_VERSION ?= 2.1.0
MAX_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_ARGS ?=

.PHONY: install test demo help

help:
	@echo "make install  install torch (if absent), mmcv $(MMCV_VERSION) with ops, mmdet, mmdetr"
	@echo "make test     make install, then the test suite"
	@echo "make demo     make install, then train/evaluate DETR on a generated dataset"

install:
	@set -e; \
	step() { echo "==> [make install] $$1"; }; \
	fail() { echo "!! [make install] FAILED at step: $$1" >&2; exit 1; }; \
	step "1/6 torch"; \
	if $(PYTHON) -c "import torch" 2>/dev/null; then \
	  echo "    keeping the installed torch $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	else \
	  $(PIP) install "torch==$(TORCH_VERSION)" || fail "torch==$(TORCH_VERSION) (install the torch build for your platform first, see README)"; \
	fi; \
	step "2/6 build tools (setuptools>=77,<81, wheel)"; \
	$(PIP) install -q -r requirements/build.txt || fail "build tools"; \
	step "3/6 mmcv $(MMCV_VERSION) with compiled ops"; \
	if $(PYTHON) -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$(MMCV_VERSION)'" 2>/dev/null; then \
	  echo "    mmcv $(MMCV_VERSION) with ops already installed"; \
	else \
	  echo "    building from source against the installed torch; the first build takes ~17 min on 2 cores,"; \
	  echo "    later installs reuse the wheel in pip's cache ($$($(PIP) cache dir 2>/dev/null))"; \
	  MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) $(PIP) install --no-build-isolation "mmcv==$(MMCV_VERSION)" \
	    || fail "mmcv==$(MMCV_VERSION) build (needs a C++ compiler and the Python headers)"; \
	fi; \
	step "4/6 mmengine, mmdet, scipy, pycocotools, pytest"; \
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt || fail "runtime requirements"; \
	step "5/6 mmdetr (editable)"; \
	$(PIP) install -q --no-build-isolation --no-deps -e . || fail "mmdetr editable install"; \
	step "6/6 import check"; \
	$(PYTHON) -c "import torch, mmcv, mmcv.ops, mmengine, mmdet, mmdet.models, mmdetr; \
	print('    torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__, \
	'| mmdet', mmdet.__version__, '| mmdetr', mmdetr.__version__)" || fail "import check"

test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: install
	@echo "make demo: trains DETR on a generated shapes dataset, evaluates it and draws detections."
	@echo "Not built yet (its own issue); for now run 'make test'."
