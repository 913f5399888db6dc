# syntax=docker/dockerfile:1
# Patroli service image.
#
#   docker build -t patroli .
#   docker run -p 8000:8000 -e PATROLI_ADMIN_KEY=... patroli                 # embedded SQLite
#   docker run -p 8000:8000 -e PATROLI_DATABASE_URL=postgresql+psycopg://... patroli
#
# With PostgreSQL the entrypoint (scripts/docker-entrypoint.sh) waits for the database and
# runs `patroli migrate` before serving; docker-compose.yml wires this up with PostGIS.
# By default the store is the SQLite file /var/lib/patroli/patroli.db (mount a volume at
# /var/lib/patroli to keep it). The Alembic migrations ship inside the package (the wheel maps
# migrations/ to service/migrations, see pyproject.toml); the runtime stage copies no sources.

# --- build: wheels for the package and all its dependencies ------------------------------
# Every RUN that calls pip here and in the runtime stage is run as written by
# tests/test_install.py (with /wheels in a temporary folder), so the image's install path is
# tested on every CI run even where no container engine is available.
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, at the exact versions and hashes of the lock file (`make lock` writes
# it from pyproject.toml), so that a code change reuses this layer and a build six months
# from now installs the same versions.
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock

COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

# --- runtime -----------------------------------------------------------------------------
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 patroli \
    && useradd --system --uid 10001 --gid patroli --home-dir /var/lib/patroli --create-home \
        --shell /usr/sbin/nologin patroli

# A regular (non-editable) install from the wheels built above; no sources stay behind.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels patroli

COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

USER patroli:patroli
WORKDIR /opt/patroli
ENV PATROLI_DATABASE_URL=sqlite:////var/lib/patroli/patroli.db

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["patroli", "serve", "--host", "0.0.0.0", "--port", "8000"]
