"""What is particular to each broker: finding and killing a worker process, restarting the broker."""

from __future__ import annotations

import json
import os

import psutil
import redis

from services import queues


def restart_figure(broker: str) -> str:
    return "Redis restarted empty / PostgreSQL restarted" if broker == "redis" else "RabbitMQ restarted / PostgreSQL restarted"


def rabbitmq_url() -> str:
    configured = os.environ.get("BROKER_URL", "")
    return configured if configured.startswith(("amqp://", "amqps://")) else "amqp://guest:guest@127.0.0.1:5672/%2F"


def restart_rabbitmq(timeout: float = 60.0) -> bool:
    """`rabbitmqctl stop_app` then `start_app`: every connection drops, RabbitMQ is away for a few
    seconds and comes back with its durable queues. Needs rabbitmqctl's rights (root, or the
    rabbitmq user); without them the fault is not played and the figure says so."""
    import subprocess

    try:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return False
    # Started again whatever happens next: the machine's other users need it.
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=timeout)
    subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=timeout)
    return True


def kill_rabbitmq_consumer(supervisor_pid: int) -> set[str] | None:
    """SIGKILL the supervisor's worker process, found by its connection to RabbitMQ; what it had
    fetched is not visible over AMQP, so no bookings are returned for the settle-time figure."""
    try:
        children = psutil.Process(supervisor_pid).children(recursive=True)
        for child in children:
            if any(c.raddr and c.raddr.port == 5672 for c in child.net_connections(kind="tcp")):
                child.kill()
                return set()
    except psutil.Error:
        pass
    return None


def pid_of(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 2)[-2])  # broker ids are host-pid-random




def fetched_placements(client: redis.Redis, worker_id: str) -> set[str]:
    """The bookings whose placement message the worker had fetched and not acknowledged."""
    redis_ids = client.smembers(f"chaos:__acks__.{worker_id}.{queues.BOOKINGS}")
    bodies = client.hmget(f"chaos:{queues.BOOKINGS}.msgs", list(redis_ids)) if redis_ids else []
    messages = [json.loads(body) for body in bodies if body]
    return {m["args"][0] for m in messages if m.get("actor_name") == queues.PLACE_BOOKING.actor_name}
