# syntax=docker/dockerfile:1
# Dashboard: `cggm dashboard` (Dash); talks to the backend over HTTP only ($CGGM_API).
#   docker build -f docker/dashboard.Dockerfile -t cggm-dashboard .    (from the repository root)

# -- build: a virtualenv in /opt/venv; the runtime stage copies it and nothing else -------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1. torch, CPU build (PyTorch's CPU index, no CUDA wheels): the `cggm` command imports cggm_core,
#    which imports torch, even for `cggm dashboard`.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"
# 2. the other dependencies, read from pyproject.toml alone: rebuilt only when it changes.
COPY pyproject.toml docker/deps.py ./
RUN python deps.py dashboard > requirements.txt && pip install --no-cache-dir -r requirements.txt
# 3. the source, installed without dependencies (all are in place already).
COPY README.md ./
COPY cggm_core/ cggm_core/
COPY dashboard/ dashboard/
RUN pip install --no-cache-dir --no-deps .

# -- runtime --------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CGGM_API=http://backend:8000
RUN useradd --create-home --uid 10001 --user-group cggm
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/cggm
EXPOSE 8050
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8050/', timeout=4)"]
# 0.0.0.0 inside the container. Without CGGM_TOKEN `cggm dashboard` refuses to listen there unless
# CGGM_INSECURE_NO_TOKEN=1, which docker-compose.yml sets because it publishes the port on
# 127.0.0.1 only. The dashboard has no login of its own (README, "Security").
ENTRYPOINT ["cggm", "dashboard"]
CMD ["--host", "0.0.0.0", "--port", "8050"]
