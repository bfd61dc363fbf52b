# One image for every process of the stack: the API, the workers, the scheduler and migrations. The
# command is chosen per service. The `localstripe` stage is the local Stripe-compatible server that
# docker-compose.yml runs; the production image (the last stage, the default target) has neither it
# nor the development tools.
#
#   docker build -t bookings:local .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... bookings:local

# Stage 1: build the project's wheel (sources and build tools stay out of the final image).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# For docker-compose.yml only (its `stripe` service gives the command): localstripe with the
# repository's additions (devtools/).
FROM python:3.11-slim AS localstripe
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN pip install "localstripe>=1.15.10"
WORKDIR /app
COPY devtools/__init__.py devtools/localstripe_server.py devtools/localstripe_additions.py devtools/
USER 10001:10001
EXPOSE 8420

# Stage 2: the runtime.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PORT=8000
# The project without its [local] extra (no embedded PostgreSQL or Redis: compose runs real ones).
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
RUN groupadd --system --gid 10001 bookings \
    && useradd --system --uid 10001 --gid bookings --home-dir /app --create-home \
        --shell /usr/sbin/nologin bookings
WORKDIR /app
USER bookings:bookings
EXPOSE 8000
# The Procfile's web line; compose and other platforms override the command per process.
CMD ["sh", "-c", "exec gunicorn 'api.wsgi:create()' --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2} --no-control-socket -c python:api.gunicorn_conf"]
