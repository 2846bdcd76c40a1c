# mmdetr: `make install`, `make test`, `make demo`.
# Everything goes into the active Python environment (python3 on PATH, or
# PYTHON=/path/to/python). Each install step is skipped when already done.

PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
MMCV_VERSION ?= 2.1.0
MAX_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0: none)
TEST_WORKERS ?= 2
# run again by `make test` with the kernels torch picks on a CPU without
# AVX-512 (ATEN_CPU_CAPABILITY=avx2): the tests whose numbers depend on them
AVX2_TESTS ?= tests/models tests/extras tests/panoptic tests/compat \
  tests/deploy tests/engine/test_amp.py \
  tests/checkpoints/test_convert_official.py \
  tests/checkpoints/test_convert_official_panoptic.py \
  tests/checkpoints/test_convert_mmdet.py tests/checkpoints/test_hf_convert.py
DEMO_CONFIG ?= configs/detr_r18_shapes_demo.py
DEMO_DATA ?= data/shapes
# training images the demo config is tuned for (val is always the same 200)
DEMO_NUM_TRAIN ?= 3600
DEMO_WORK_DIR ?= work_dirs/detr_r18_shapes_demo
DEMO_SCORE_THR ?= 0.5
# What OpenMP threads do while they wait for work: ACTIVE spins (a training
# step of the demo model takes 0.11 s instead of 0.19 s on an idle 2-core
# machine), PASSIVE sleeps (with other jobs on the same cores, spinning made
# steps 3-30x slower). auto: ACTIVE when the CPUs were at least 90% idle
# over one second just before training, else PASSIVE.
DEMO_OMP_WAIT_POLICY ?= auto
# The panoptic demo (docs/panoptic.md): the box model trained on every
# panoptic segment (things and stuff), then the mask head on it, frozen.
PANOPTIC_BOX_CONFIG ?= configs/detr_r18_shapes_panoptic_boxes.py
PANOPTIC_BOX_WORK_DIR ?= work_dirs/detr_r18_shapes_panoptic_boxes
PANOPTIC_CONFIG ?= configs/detr_r18_shapes_panoptic.py
PANOPTIC_WORK_DIR ?= work_dirs/detr_r18_shapes_panoptic
# DEMO_OMP_WAIT_POLICY=auto: ACTIVE when the CPUs were at least 90% idle
# over one second, else PASSIVE (or when /proc/stat cannot be read)
OMP_AUTO_POLICY = $(PYTHON) -c "import time; r=lambda: [int(x) for x in open('/proc/stat').readline().split()[1:]]; a=r(); time.sleep(1); d=[y-x for x, y in zip(a, r())]; print('ACTIVE' if d[3] + d[4] >= 0.9 * sum(d) else 'PASSIVE')" 2>/dev/null || echo PASSIVE
# The demo recipe pipes test.py through tee; pipefail needs bash.
SHELL := /bin/bash

.PHONY: install test demo demo-panoptic-data demo-panoptic-boxes demo-panoptic help

help:
	@echo "make install              install torch (if absent), mmcv $(MMCV_VERSION) built with ops against it, mmdet, mmdetr"
	@echo "make test                 make install, the test suite, the numerically sensitive tests with AVX2 kernels"
	@echo "make demo                 make install, then train/evaluate DETR on a generated dataset"
	@echo "make demo-panoptic-boxes  make install, then train the panoptic demo's box model (things and stuff)"
	@echo "make demo-panoptic        make install, then train DETR's mask head on it (frozen), evaluate PQ, draw"

# tools/install/install.py says what it keeps, builds and caches
install:
	@PIP_ROOT_USER_ACTION=ignore $(PYTHON) tools/install/install.py \
	  --torch $(TORCH_VERSION) --mmcv $(MMCV_VERSION) --jobs $(MAX_JOBS)

test: install
	$(PYTHON) -m pytest tests -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	@echo "==> [make test] the numerically sensitive tests again, as on a CPU without AVX-512"
	ATEN_CPU_CAPABILITY=avx2 $(PYTHON) -m pytest $(AVX2_TESTS) -m "not slow" \
	  -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: install
	@set -eo pipefail; \
	say() { echo "==> [make demo] $$1"; }; \
	have=$$($(PYTHON) -c "import json,sys; print(len(json.load(open(sys.argv[1]))['images']))" \
	  $(DEMO_DATA)/annotations/instances_train.json 2>/dev/null || echo 0); \
	if [ "$$have" = "$(DEMO_NUM_TRAIN)" ] && \
	   [ -f $(DEMO_DATA)/annotations/instances_val.json ]; then \
	  say "1/4 dataset: keeping $(DEMO_DATA) (delete it to regenerate)"; \
	else \
	  say "1/4 dataset: generating $(DEMO_DATA) ($(DEMO_NUM_TRAIN) train images; it had $$have)"; \
	  $(PYTHON) tools/misc/make_shapes_dataset.py $(DEMO_DATA) --num-train $(DEMO_NUM_TRAIN); \
	fi; \
	policy=$(DEMO_OMP_WAIT_POLICY); \
	if [ "$$policy" = auto ]; then \
	  policy=$$($(OMP_AUTO_POLICY)); \
	  echo "    OMP_WAIT_POLICY=$$policy (DEMO_OMP_WAIT_POLICY=auto: $$( [ $$policy = ACTIVE ] && echo 'the CPUs are idle' || echo 'the CPUs are busy or unreadable'))"; \
	fi; \
	say "2/4 training $(DEMO_CONFIG) from scratch (the budget is 15 minutes on 2 CPU cores)"; \
	start=$$(date +%s); \
	OMP_WAIT_POLICY=$$policy $(PYTHON) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR); \
	echo "    training took $$(( $$(date +%s) - start )) s"; \
	ckpt=$$(cat $(DEMO_WORK_DIR)/last_checkpoint); \
	say "3/4 testing $$ckpt on the val split, drawing the detections"; \
	OMP_WAIT_POLICY=$$policy $(PYTHON) tools/test.py $(DEMO_CONFIG) $$ckpt --eval bbox \
	  --work-dir $(DEMO_WORK_DIR)/test --show-dir $(DEMO_WORK_DIR)/detections \
	  --show-score-thr $(DEMO_SCORE_THR) --out $(DEMO_WORK_DIR)/results.pkl \
	  2>&1 | tee $(DEMO_WORK_DIR)/test_output.log; \
	$(PYTHON) tools/analysis_tools/count_duplicates.py $(DEMO_WORK_DIR)/results.pkl \
	  --score-thr $(DEMO_SCORE_THR) --iou-thr 0.5 | tee $(DEMO_WORK_DIR)/duplicates.txt; \
	$(PYTHON) tools/demo/image_demo.py $(DEMO_DATA)/val/000000.jpg \
	  $(DEMO_CONFIG) $$ckpt --out-file $(DEMO_WORK_DIR)/image_demo.png --score-thr $(DEMO_SCORE_THR); \
	say "4/4 plotting the loss curves and val mAP"; \
	log=$$(ls -td $(DEMO_WORK_DIR)/2*/vis_data/scalars.json | head -n 1); \
	$(PYTHON) tools/analysis_tools/analyze_logs.py plot_curve $$log \
	  --out $(DEMO_WORK_DIR)/curves.png; \
	echo; echo "bbox AP on $(DEMO_DATA)/val, $$ckpt:"; \
	grep -E "Average (Precision|Recall)|bbox_mAP_copypaste" $(DEMO_WORK_DIR)/test_output.log \
	  | sed -e 's/^.*INFO - //'; \
	cat $(DEMO_WORK_DIR)/duplicates.txt; \
	echo; echo "Everything is in $(DEMO_WORK_DIR)/:"; \
	echo "  $$ckpt                 the trained weights"; \
	echo "  $(DEMO_WORK_DIR)/detections/*.jpg   every val image with its detections drawn"; \
	echo "  $(DEMO_WORK_DIR)/results.pkl        the raw detections (tools/test.py --out)"; \
	echo "  $(DEMO_WORK_DIR)/image_demo.png     tools/demo/image_demo.py on val/000000.jpg"; \
	echo "  $(DEMO_WORK_DIR)/curves.png         training losses and val mAP"; \
	echo "  $$log   the training log (json)"

# data/shapes with its panoptic version (the detection files are the same
# bytes with and without it): kept when it has DEMO_NUM_TRAIN panoptic
# training images and the val split
demo-panoptic-data:
	@set -e; \
	have=$$($(PYTHON) -c "import json,sys; print(len(json.load(open(sys.argv[1]))['images']))" \
	  $(DEMO_DATA)/panoptic/annotations/panoptic_train.json 2>/dev/null || echo 0); \
	if [ "$$have" = "$(DEMO_NUM_TRAIN)" ] && \
	   [ -f $(DEMO_DATA)/panoptic/annotations/panoptic_val.json ] && \
	   [ -f $(DEMO_DATA)/panoptic/annotations/instances_val.json ]; then \
	  echo "==> [panoptic data] keeping $(DEMO_DATA)/panoptic (delete it to regenerate)"; \
	else \
	  echo "==> [panoptic data] generating $(DEMO_DATA) with --panoptic ($(DEMO_NUM_TRAIN) train images; it had $$have)"; \
	  $(PYTHON) tools/misc/make_shapes_dataset.py $(DEMO_DATA) --num-train $(DEMO_NUM_TRAIN) --panoptic; \
	fi

demo-panoptic-boxes: install demo-panoptic-data
	@set -eo pipefail; \
	policy=$(DEMO_OMP_WAIT_POLICY); \
	if [ "$$policy" = auto ]; then policy=$$($(OMP_AUTO_POLICY)); fi; \
	echo "==> [make demo-panoptic-boxes] training $(PANOPTIC_BOX_CONFIG) from scratch (OMP_WAIT_POLICY=$$policy)"; \
	start=$$(date +%s); \
	OMP_WAIT_POLICY=$$policy $(PYTHON) tools/train.py $(PANOPTIC_BOX_CONFIG) --work-dir $(PANOPTIC_BOX_WORK_DIR); \
	echo "    box model training took $$(( $$(date +%s) - start )) s: $$(cat $(PANOPTIC_BOX_WORK_DIR)/last_checkpoint)"

demo-panoptic: install demo-panoptic-data
	@set -eo pipefail; \
	say() { echo "==> [make demo-panoptic] $$1"; }; \
	if [ ! -f $(PANOPTIC_BOX_WORK_DIR)/last_checkpoint ]; then \
	  say "1/3 no box model in $(PANOPTIC_BOX_WORK_DIR): make demo-panoptic-boxes first"; \
	  $(MAKE) --no-print-directory -o install -o demo-panoptic-data demo-panoptic-boxes; \
	else \
	  say "1/3 box model: $$(cat $(PANOPTIC_BOX_WORK_DIR)/last_checkpoint) (delete $(PANOPTIC_BOX_WORK_DIR) to retrain)"; \
	fi; \
	boxes=$$(cat $(PANOPTIC_BOX_WORK_DIR)/last_checkpoint); \
	policy=$(DEMO_OMP_WAIT_POLICY); \
	if [ "$$policy" = auto ]; then policy=$$($(OMP_AUTO_POLICY)); fi; \
	say "2/3 training the mask head of $(PANOPTIC_CONFIG) on the frozen box model (OMP_WAIT_POLICY=$$policy)"; \
	start=$$(date +%s); \
	OMP_WAIT_POLICY=$$policy $(PYTHON) tools/train.py $(PANOPTIC_CONFIG) --work-dir $(PANOPTIC_WORK_DIR) \
	  --cfg-options load_from=$$boxes; \
	echo "    mask head training took $$(( $$(date +%s) - start )) s"; \
	ckpt=$$(cat $(PANOPTIC_WORK_DIR)/last_checkpoint); \
	say "3/3 panoptic quality of $$ckpt on the val split, drawing the panoptic segmentations"; \
	OMP_WAIT_POLICY=$$policy $(PYTHON) tools/test.py $(PANOPTIC_CONFIG) $$ckpt --eval pq \
	  --work-dir $(PANOPTIC_WORK_DIR)/test --show-dir $(PANOPTIC_WORK_DIR)/panoptic \
	  --show-score-thr $(DEMO_SCORE_THR) 2>&1 | tee $(PANOPTIC_WORK_DIR)/test_output.log; \
	echo; echo "panoptic quality on $(DEMO_DATA)/panoptic/val, $$ckpt:"; \
	grep -E '^[|+]' $(PANOPTIC_WORK_DIR)/test_output.log | tail -n 7; \
	echo; echo "Everything is in $(PANOPTIC_WORK_DIR)/:"; \
	echo "  $$ckpt                 the box model with the trained mask head"; \
	echo "  $(PANOPTIC_WORK_DIR)/panoptic/*.jpg   every val image with its panoptic segmentation drawn"; \
	echo "  $(PANOPTIC_WORK_DIR)/test_output.log  the PQ table (all, things, stuff)"
