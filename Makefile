# One place for the commands the README, CI and pre-commit share.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: system-deps install setup demo test lint mypy format bench bench-chain eval all

system-deps:  ## Debian/Ubuntu packages: Tesseract (the C library and English data), venv support
	@command -v tesseract >/dev/null && ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf >/dev/null 2>&1 && $(PYTHON) -c "import ensurepip" 2>/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-eng python3-venv fonts-dejavu-core; }

$(BIN)/alpr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,train]'
	$(BIN)/pip install -q --no-deps fastanpr==0.1.13  # only for its best.pt; its own deps are not needed
	$(BIN)/pip install -q --no-deps rapidocr==3.10.0  # only for its PP-OCRv6 recogniser (ONNX)
	touch $(BIN)/alpr

install: system-deps $(BIN)/alpr

setup: install  ## weights in place, ONNX export
	$(BIN)/alpr setup

demo: setup  ## the quickstart: synthetic clip, then the standalone pipeline on it
	$(BIN)/alpr demo-clip demo/clip.mp4
	$(BIN)/alpr run demo/clip.mp4 --out demo/out --sqlite demo/reads.sqlite

test: setup
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy:
	$(BIN)/mypy common ingest detector_worker ocr_worker redactor_worker sighting_worker alert_worker alpr

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/bench_cores.py

bench-chain: setup  ## needs redis-server and Postgres (ALPR_BENCH_DATABASE_URL)
	$(BIN)/python benchmarks/bench_chain.py

eval: setup
	$(BIN)/alpr eval ../shared/datasets/openalpr-endtoend --json eval.json

all: lint mypy test
