# syntax=docker/dockerfile:1
# mimicbot in one image: the Discord daemon (`mimicbot run`, the default command) and the admin CLI.
#
#   CPU host:     docker compose up -d
#   NVIDIA host:  docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d
#   Ray node:     docker run --gpus all mimicbot:gpu ray start --address=HEAD:6379 --block   (EXTRAS must hold ray)
#
# Settings come from the environment (compose passes .env); none are baked in: .env is in .dockerignore.
FROM python:3.11-slim

# torch first, from the CPU index by default: PyPI's Linux torch wheel is the multi-GB CUDA build.
# docker-compose.gpu.yml sets TORCH_INDEX_URL to PyPI to get exactly that build on a GPU host.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# Optional extras of mimicbot, comma-separated: hub (models push), wandb (tracking), ray (scale-out).
ARG EXTRAS=hub,wandb,int8

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MIMICBOT_DATA_DIR=/app/data \
    MIMICBOT_MODELS_DIR=/app/models \
    HF_HOME=/app/data/hf-cache \
    WANDB_DIR=/app/data

RUN useradd --create-home --uid 1000 --user-group mimicbot
WORKDIR /app

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY bot ./bot
RUN if [ -n "${EXTRAS}" ]; then pip install ".[${EXTRAS}]"; else pip install .; fi \
    && mkdir -p /app/data /app/models \
    && chown mimicbot:mimicbot /app/data /app/models

USER mimicbot
VOLUME ["/app/data", "/app/models"]

# Database reachable, daemon heartbeat fresh, Discord connected, training pool alive (see bot/ops.py).
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 CMD ["mimicbot", "health"]
CMD ["mimicbot", "--log-level", "INFO", "run"]
