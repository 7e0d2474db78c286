# syntax=docker/dockerfile:1
# One image for every service: `python -m chat_<service>` picks the process (the
# Deployments in deploy/k8s set the command). Built from the locked workspace, no dev
# tools, no test kit. uv's documented layering: the dependency layer is rebuilt only
# when a pyproject.toml or uv.lock changes, not on every source change.
#
# The base image: pin it by digest for release builds, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11-slim` prints it); the prod overlay
# then pins the built image by its own digest.
ARG PYTHON_IMAGE=python:3.11-slim

# Only the workspace's manifests: this stage re-runs on any change (cheap), but its
# output — and so the dependency layer below — changes only with a manifest.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /out && cp pyproject.toml uv.lock /out/ \
    && find libs services -name pyproject.toml -exec cp --parents {} /out/ \;

FROM ${PYTHON_IMAGE} AS build
# The uv that wrote uv.lock (as ./taskw pins it).
RUN pip install --no-cache-dir "uv>=0.13.9,<0.14"
# Bytecode compiled at install: the root filesystem is read-only at run time.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY --from=manifests /out/ ./
# 1. Third-party dependencies, exactly as locked (fails if uv.lock is stale).
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace
# 2. Our packages, as wheels (not editable: the image holds no source tree).
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

FROM ${PYTHON_IMAGE}
COPY --from=build /app/.venv /app/.venv
# PYTHONDONTWRITEBYTECODE: nothing to write on a read-only root (all compiled above).
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The numeric user the pods' securityContext runs as (runAsNonRoot needs a number).
USER 10001:10001
# 8080 gateway (Socket.IO), 8081 media (HTTP), 9090 every process's ops port.
EXPOSE 8080 8081 9090
CMD ["python", "-m", "chat_gateway"]
