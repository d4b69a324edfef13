# The hub's image: `docker build -t ps-integration-hub .`, or `docker compose build` (docker-compose.yml).
# One image for every role, chosen by the command: serve (default), worker, simulate erp|sharepoint|docusign, ...
#
# tests/test_deploy.py copies what the COPY lines name, makes the copy read-only and runs this file's
# `pip install` step on it: the build backend (hatchling) must write nothing into the sources.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hub
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub/ hub/
COPY actors/ actors/
COPY connectors/ connectors/
COPY observability/ observability/
COPY simulators/ simulators/
COPY schemas/ schemas/
RUN /opt/hub/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
# Containers never fall back to the embedded mode, and listen beyond their own loopback.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/hub/bin:$PATH \
    HUB_EMBEDDED=off \
    HUB_HTTP_BIND=0.0.0.0:8080
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /home/hub --create-home --shell /usr/sbin/nologin hub
COPY --from=build /opt/hub /opt/hub
# Numeric, so that an orchestrator's "run as non-root" check can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /home/hub
EXPOSE 8080
# Exec form: `hub` itself receives SIGTERM (no shell in between) and shuts down gracefully.
ENTRYPOINT ["hub"]
CMD ["serve"]
