# Everything a student, an instructor or CI needs. `make help` lists the targets.
PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
# Where MNIST lives (torchvision's layout: $(DATA_ROOT)/MNIST/raw/...): DATA_ROOT=..., or DDPM_DATA_ROOT in the
# environment (what the grader and the notebook read), or data/. CI sets DATA_ROOT=../shared/data.
DATA_ROOT ?= $(or $(DDPM_DATA_ROOT),data)
EPOCHS    ?= 8
MINUTES   ?= 30
BUILD     := build
COURSE    := $(BUILD)/course

export DDPM_DATA_ROOT := $(abspath $(DATA_ROOT))
export PYTHONHASHSEED := 0

.PHONY: help venv data sandbox run test test-grader test-notebook assignment course release outputs experiments train train-conditional classifier gpu-check calibrate grade report similarity gradescope bench clean

help:
	@echo "make run         set up, then execute solution.ipynb end to end (into $(BUILD)/solution.ipynb)"
	@echo "make test        set up, then everything CI checks (the grader on solution and assignment, nbval)"
	@echo "make assignment  regenerate assignment.ipynb from solution.ipynb with nbgrader"
	@echo "make outputs     re-execute solution.ipynb in place, refreshing the outputs nbval compares"
	@echo "make train       train the reference model data/ddpm_mnist.pt with the solution's code for MINUTES=$(MINUTES)"
	@echo "                 minutes of training time, at most EPOCHS=$(EPOCHS) epochs"
	@echo "make train-conditional  the optional class-conditional model data/ddpm_mnist_cond.pt (notebook section 10),"
	@echo "                 MINUTES=$(MINUTES) minutes of training time"
	@echo "make classifier  train the evaluation classifier data/mnist_classifier.pt (>= 99 % test accuracy)"
	@echo "make calibrate   re-measure the sample-quality thresholds into grader/calibration.md"
	@echo "make grade SUBMISSIONS=dir/   grade every notebook under dir/ into $(BUILD)/grades (JSON + CSV);"
	@echo "                 STUDENTS=\"alice bob\" and PARTS=ddim regrade only those, keeping the other results"
	@echo "make course COURSE=dir  an nbgrader course folder for this assignment (config, source, release)"
	@echo "make report      the class report of $(BUILD)/grades into $(BUILD)/report/class-report.html (REPORT_ARGS:"
	@echo "                 --gradebook course/gradebook.db or --gradescope dir/ for the other grading paths)"
	@echo "make similarity SUBMISSIONS=dir/   code similarity of the graded cells into $(BUILD)/similarity/similarity.html"
	@echo "make gradescope  build $(BUILD)/gradescope/autograder.zip, the autograder for Gradescope"
	@echo "make release     the folder a student receives: $(BUILD)/release/ and $(BUILD)/release.zip"
	@echo "make bench       speed of the U-Net against diffusers' UNet2DModel into bench/ (about 6 min);"
	@echo "                 QUALITY=1 adds the time to pass the grader's check, 3 seeds (about 80 min); python -m tools.bench -h"
	@echo "make experiments the notebook's experiments into bench/ and data/ablation.pt: the DDIM sweep, sections 9"
	@echo "                 and 10 (about 25 min; EXPERIMENTS=--sweep for one of them)"
	@echo "make gpu-check   on a machine with a CUDA GPU: speed, one timed epoch and the GPU-marked tests"
	@echo "variables: DATA_ROOT=$(DATA_ROOT) PYTHON=$(PYTHON) VENV=$(VENV)"

# The venv has the grader installed (editable: `import grader` works from any folder, and the package stays this
# repository's grader/), and the course's nbgrader configuration in its etc/jupyter, so that nbgrader run with this
# Python grades with the grader in any course folder.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	mkdir -p $(VENV)/etc/jupyter && ln -sf $(abspath nbgrader_config.py) $(VENV)/etc/jupyter/nbgrader_config.py
	touch $@

# Downloads MNIST into DATA_ROOT if it is missing (needs internet; offline, a missing data set is a clear error). Only
# this step may download: the tests and the grader run with DDPM_OFFLINE=1 and never do.
data: venv
	DDPM_OFFLINE= $(PY) -m tools.data

# The grader's sandbox (grader/runner.py): bubblewrap, installed with apt where it is missing and we may. Without it,
# grading falls back to process isolation and says so.
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap >/dev/null; }; }; } || \
	    echo "WARNING: bubblewrap (bwrap) is not installed: submissions will be graded without a sandbox"

run: venv data
	mkdir -p $(BUILD)
	$(PY) -m jupyter nbconvert --to notebook --execute solution.ipynb --output-dir $(BUILD) \
	    --ExecutePreprocessor.timeout=1800

test: export DDPM_OFFLINE := 1
# One pytest run, so that the notebook's cells (nbval, one kernel) run beside the grader's tests; a module (or the
# notebook) runs in one process, so its fixtures (a trained model, build/) are made once.
test: venv data sandbox $(VENV)/.similarity-installed
	$(PY) -m pytest tests solution.ipynb --nbval --nbval-current-env -n auto --dist loadfile --durations=12

test-grader: venv $(VENV)/.similarity-installed
	$(PY) -m pytest tests -n auto --dist loadfile --durations=12

test-notebook: venv
	$(PY) -m pytest --nbval solution.ipynb --nbval-current-env

assignment: venv
	rm -rf $(COURSE) && mkdir -p $(COURSE)/source/ddpm
	cp solution.ipynb $(COURSE)/source/ddpm/assignment.ipynb
	cd $(COURSE) && ../../$(PY) -m nbgrader generate_assignment ddpm --force --no-db \
	    --CourseDirectory.course_id=ddpm --log-level=ERROR
	cp $(COURSE)/release/ddpm/assignment.ipynb assignment.ipynb
	$(PY) -c 'from tools.release import clean; clean("assignment.ipynb")'

# A ready nbgrader course folder: COURSE/nbgrader_config.py, the source notebook, the generated release, the gradebook.
COURSE_DIR = $(abspath $(COURSE))
course: venv
	@[ "$(origin COURSE)" = "command line" ] || { echo "usage: make course COURSE=folder (a new course folder)"; exit 2; }
	mkdir -p $(COURSE_DIR)/source/ddpm
	cp nbgrader_config.py $(COURSE_DIR)/nbgrader_config.py
	cp solution.ipynb $(COURSE_DIR)/source/ddpm/assignment.ipynb
	cd $(COURSE_DIR) && $(abspath $(PY)) -m nbgrader generate_assignment ddpm --force --log-level=ERROR
	@echo "course folder ready: $(COURSE_DIR) (README: For instructors, nbgrader)"

release: venv assignment
	$(PY) -m tools.release $(BUILD)/release

outputs: venv data
	DDPM_OFFLINE=1 $(PY) -m jupyter nbconvert --to notebook --execute --inplace solution.ipynb \
	    --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.store_widget_state=False

train: venv data
	$(PY) -m tools.train --epochs $(EPOCHS) --minutes $(MINUTES) --output data/ddpm_mnist.pt

train-conditional: venv data
	$(PY) -m tools.train --conditional --epochs $(EPOCHS) --minutes $(MINUTES) --output data/ddpm_mnist_cond.pt

classifier: venv data
	$(PY) -m tools.train_classifier

calibrate: venv data
	$(PY) -m tools.calibrate

SUBMISSIONS ?= submissions
STUDENTS ?=
PARTS ?=
grade: export DDPM_OFFLINE := 1
grade: venv data sandbox
	$(PY) -m tools.grade $(SUBMISSIONS) --out $(BUILD)/grades $(if $(STUDENTS),--students $(STUDENTS)) \
	    $(if $(PARTS),--parts $(PARTS))

# The class at a glance (tools/report.py): from make grade's results by default; REPORT_ARGS="--gradebook
# course/gradebook.db" or REPORT_ARGS="--gradescope dir/" reads the other grading paths instead.
REPORT_ARGS ?= $(BUILD)/grades
report: venv
	$(PY) -m tools.report $(REPORT_ARGS) --out $(BUILD)/report

# Code similarity between submissions (tools/similarity.py) needs copydetect, which nothing else does.
$(VENV)/.similarity-installed: requirements-similarity.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-similarity.txt
	touch $@

similarity: venv $(VENV)/.similarity-installed
	$(PY) -m tools.similarity $(SUBMISSIONS) --out $(BUILD)/similarity

# Gradescope's autograder: build/gradescope/autograder.zip (README: For instructors, Gradescope).
gradescope: venv data
	$(PY) -m tools.gradescope.build $(BUILD)/gradescope/autograder.zip

# The benchmark needs diffusers, which nothing else does.
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

QUALITY ?=
bench: venv data $(VENV)/.bench-installed
	$(PY) -m tools.bench $(if $(QUALITY),--quality) $(BENCH_ARGS)

EXPERIMENTS ?= --sweep --objective --guidance
experiments: venv data
	$(PY) -m tools.experiments $(EXPERIMENTS)

# The prepared check for a machine with a GPU: the speed benchmark and one timed epoch on it (into bench/, under
# "gpu" and "gpu_epoch"), then the GPU-marked tests, which are skipped elsewhere.
gpu-check: export DDPM_OFFLINE := 1
gpu-check: venv data $(VENV)/.bench-installed
	$(PY) -m tools.bench --epoch --full-sampling --repeats 3
	$(PY) -m pytest tests -m gpu

clean:
	rm -rf $(BUILD)
