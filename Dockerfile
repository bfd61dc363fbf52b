# One image for every process of the stack: the API, the workers, the scheduler, migrations, and (for
# docker-compose.yml only) the local Stripe-compatible server. The command is chosen per service.
#
#   docker build -t bookings:local .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... bookings:local

# Stage 1: build the project's wheel (sources and build tools stay out of the final image).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the runtime.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PORT=8000
# The project without its [local] extra (no embedded PostgreSQL or Redis: compose runs real ones),
# plus localstripe, which only the compose `stripe` service runs (`python -m cli.localstripe_server`).
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl "localstripe>=1.15.10" \
    && rm -rf /tmp/wheels
RUN groupadd --system --gid 10001 bookings \
    && useradd --system --uid 10001 --gid bookings --home-dir /app --create-home \
        --shell /usr/sbin/nologin bookings
WORKDIR /app
USER bookings:bookings
EXPOSE 8000
# The Procfile's web line; compose and other platforms override the command per process.
CMD ["sh", "-c", "exec gunicorn 'api.wsgi:create()' --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2} --no-control-socket -c python:api.gunicorn_conf"]
