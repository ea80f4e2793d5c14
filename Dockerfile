# SakaiBot: a small image that runs `sakaibot run` as an unprivileged user.
# The config and the job store live in /data (a volume): config.toml, sakaibot.db, optional .env.
#   docker build -t sakaibot .
#   docker run --env-file .env -v sakaibot-data:/data sakaibot

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY core ./core
COPY platforms ./platforms
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SAKAIBOT_CONFIG=/data/config.toml \
    SAKAIBOT_PLATFORMS__CONSOLE__ENABLED=false
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin sakaibot \
    && mkdir -p /data && chown sakaibot:sakaibot /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The shipped config, copied into a new named volume on first use; a bind mount brings its own.
COPY --chown=sakaibot:sakaibot config.toml /data/config.toml
WORKDIR /data
USER sakaibot
VOLUME ["/data"]
# `sakaibot check` exits non-zero when something configured is unusable. It reaches every backend,
# so keep it infrequent (a Worker may make an image for each HEAD request).
HEALTHCHECK --interval=15m --timeout=60s --start-period=30s --retries=2 CMD ["sakaibot", "check"]
ENTRYPOINT ["sakaibot"]
CMD ["run"]
