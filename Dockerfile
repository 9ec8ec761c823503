# syntax=docker/dockerfile:1
# Librarian image. One image runs every part (api, worker, beat, flower): the compose service
# or systemd unit chooses the `librarian <part>` command.
#
#   docker build --target prod -t librarian:local .   # what docker-compose.yml builds
#   docker build --target dev  -t librarian:dev .     # with the test extras: `pytest` inside
ARG PYTHON_VERSION=3.11.11

# ---------------------------------------------------------------------------- base
FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/var/lib/librarian
# The runtime user (uid/gid 10001) and the only directories it may write. Named volumes
# mounted there start with this ownership.
RUN groupadd --system --gid 10001 librarian \
 && useradd --system --uid 10001 --gid librarian --home-dir /var/lib/librarian \
      --no-create-home --shell /usr/sbin/nologin librarian \
 && mkdir -p /var/lib/librarian/storage /data \
 && chown -R librarian:librarian /var/lib/librarian /data
WORKDIR /app
# Pinned third-party dependencies first: this layer is cached until the lock file changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# ---------------------------------------------------------------------------- dev
FROM base AS dev
COPY . .
RUN pip install -e ".[test,postgres]" \
 && chown -R librarian:librarian /app
USER librarian
CMD ["pytest", "-q"]

# ---------------------------------------------------------------------------- prod
FROM base AS prod
# Only the package: the lock file already brought every dependency, hence --no-deps.
COPY pyproject.toml README.md /tmp/src/
COPY app /tmp/src/app
RUN pip install --no-deps /tmp/src \
 && rm -rf /tmp/src
# The rulesets as code, checked at start-up (a bad file stops the process). The working directory
# is VAR_DIR, hence an absolute RULESETS_DIR; mount a team's own directory over it to replace them.
COPY rulesets /app/rulesets
ENV RULESETS_DIR=/app/rulesets
WORKDIR /var/lib/librarian
USER librarian
EXPOSE 8000 9808 5555
# No image-level HEALTHCHECK: the same image runs four different processes; each compose
# service (docker-compose.yml) defines the check that fits it.
CMD ["librarian", "api", "--host", "0.0.0.0", "--port", "8000"]
