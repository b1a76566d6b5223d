# syntax=docker/dockerfile:1
# Backend: `cggm serve` (FastAPI API + run store). SQLite file in the /data volume by default;
# PostgreSQL when CGGM_DB_URL is set (see README, "Run in containers").
#   docker build -f docker/backend.Dockerfile -t cggm-backend .      (from the repository root)

# -- build: a virtualenv in /opt/venv; the runtime stage copies it and nothing else -------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1. torch first (the largest layer, changes least): the CPU build from PyTorch's CPU index, so no
#    CUDA wheels are pulled. The backend imports cggm_core (the catalog) but never trains.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"
# 2. the other dependencies, read from pyproject.toml alone: rebuilt only when it changes.
COPY pyproject.toml docker/deps.py ./
RUN python deps.py server > requirements.txt && pip install --no-cache-dir -r requirements.txt
# 3. the source, installed without dependencies (all are in place already).
COPY README.md ./
COPY cggm_core/ cggm_core/
COPY backend/ backend/
RUN pip install --no-cache-dir --no-deps .

# -- runtime --------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 --user-group cggm && install -d -o cggm -g cggm /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/cggm
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]
# 0.0.0.0 inside the container. Without CGGM_TOKEN `cggm serve` refuses to listen there unless
# CGGM_INSECURE_NO_TOKEN=1, which docker-compose.yml sets because it publishes the port on
# 127.0.0.1 only. Publishing it beyond this machine needs CGGM_TOKEN (README, "Security").
ENTRYPOINT ["cggm", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--db-dir", "/data"]
