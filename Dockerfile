# One image for every service: `python -m chat_<service>` picks the process
# (deploy/k8s sets the command). Built from the locked workspace, without dev tools.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv>=0.13.9,<0.14"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
RUN uv sync --frozen --no-dev --no-editable --compile-bytecode

FROM python:3.11-slim
# The gateway serves many sockets: no per-socket state is kept in the image's
# writable layer, so the root filesystem can be read-only (see deploy/k8s).
COPY --from=build /src/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
CMD ["python", "-m", "chat_gateway"]
