# One image for every role of the chain (ingest, detect, ocr, redact, sight, alert) and the standalone pipeline:
# the role is the command, e.g. `alpr worker detect`. CPU build of torch; weights baked in.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 alpr

WORKDIR /app
COPY pyproject.toml README.md ./
COPY alpr/ alpr/
COPY common/ common/
COPY ingest/ ingest/
COPY detector_worker/ detector_worker/
COPY ocr_worker/ ocr_worker/
COPY redactor_worker/ redactor_worker/
COPY sighting_worker/ sighting_worker/
COPY alert_worker/ alert_worker/
# deploy/ stays out (.dockerignore too): compose bind-mounts the files a container reads, and an
# operator's own there (cameras.yaml with stream passwords, a receivers file) were baked into the image

# torch's CPU wheels (`torch==2.14.1` is met by 2.14.1+cpu); fastanpr only for its best.pt
ENV ALPR_MODEL_DIR=/app/models ALPR_KEEP_DIR=/data/kept YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && pip install --no-cache-dir --no-deps fastanpr==0.1.13 rapidocr==3.10.0 \
    && YOLO_CONFIG_DIR=/tmp/ultralytics alpr setup \
    && alpr demo-clip /app/demo/clip.mp4 \
    && mkdir -p /data/kept /data/ledger && chown -R alpr /data
# /app/models stays root's: the weights are read, never written, at run time (`alpr setup` at build only),
# so a process taken over cannot swap the model every later start loads

USER alpr
ENV YOLO_CONFIG_DIR=/tmp/ultralytics
ENTRYPOINT ["alpr"]
CMD ["--help"]
