# SPDX-License-Identifier: Apache-2.0
# Multi-stage: build a wheel with its dependencies, then copy only the installed environment
# into a slim runtime image that runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# The dependencies from the hashed lock file (the versions every machine runs), then Bastion alone.
RUN python -m venv /opt/bastion \
 && /opt/bastion/bin/pip install --require-hashes -r requirements.lock \
 && /opt/bastion/bin/pip install --no-deps .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/bastion/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --gid 1000 bastion \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /app --shell /usr/sbin/nologin bastion \
 && mkdir -p /app/var && chown -R 1000:1000 /app
COPY --from=build /opt/bastion /opt/bastion
WORKDIR /app
USER 1000:1000
EXPOSE 8000
# The probe reads the same settings as `serve` (PORT, HOST, ALLOWED_HOSTS), so it passes with any
# valid configuration; FORCE_HTTPS does not redirect a loopback GET /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["bastion", "healthcheck"]
# Migrations run as a separate step (`bastion db upgrade`), never implicitly in production.
CMD ["bastion", "serve"]
