"""Built-in `rabbitmq.publish` through real `pgq run` workers against the local RabbitMQ."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from app.devserver.embedded_postgres import free_port
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import TcpProxy, port_answers, where_secret_appears
from tests.support.workers import WorkerFleet

HOST, PORT = "127.0.0.1", 5672
BROKER_URL = f"amqp://guest:guest@{HOST}:{PORT}/"
TIMEOUT = 30

# A user's machine may have no broker: skip there. CI (DL_REQUIRE_RABBITMQ=1, set by .ci/run)
# runs on machines that have one, so a missing broker fails instead of passing silently.
_BROKER_MISSING = not port_answers(HOST, PORT)
if _BROKER_MISSING and os.environ.get("DL_REQUIRE_RABBITMQ") == "1":
    raise RuntimeError(f"DL_REQUIRE_RABBITMQ=1 but no RabbitMQ answers at {HOST}:{PORT}")
pytestmark = pytest.mark.skipif(
    _BROKER_MISSING,
    reason=f"no RabbitMQ answers at {HOST}:{PORT} (guest/guest): rabbitmq.publish tests skipped",
)


@pytest.fixture
async def broker() -> AsyncIterator[AbstractRobustConnection]:
    """The test's own connection to the broker, to declare queues and consume."""
    connection = await aio_pika.connect_robust(BROKER_URL)
    yield connection
    await connection.close()


@pytest.fixture
async def queue(broker: AbstractRobustConnection) -> AbstractQueue:
    """A uniquely named queue, bound to the default exchange by its name; gone after the test."""
    channel = await broker.channel()
    # Exclusive: deleted when the test's connection closes, whatever the test did.
    return await channel.declare_queue(f"dl-test-{uuid.uuid4().hex[:12]}", exclusive=True)


async def received(queue: AbstractQueue) -> AbstractIncomingMessage:
    """The next message on `queue` (waits up to a few seconds), acknowledged."""
    message = await queue.get(timeout=5, fail=True)
    assert message is not None
    await message.ack()
    return message


# The default exchange and the exchanges these tests declare (or leave missing on purpose).
TEST_EXCHANGES = "amq.default,dl-test-*,dl-missing-*"


def broker_env(url: str = BROKER_URL) -> dict[str, str]:
    """Worker settings pointing rabbitmq.publish at `url`, allowed the tests' exchanges."""
    return {"RABBITMQ_URL": url, "RABBITMQ_ALLOWED_EXCHANGES": TEST_EXCHANGES}


async def test_rabbitmq_publish_delivers_json_persistent_with_headers(
    jobs_db: JobsDb, fleet: WorkerFleet, queue: AbstractQueue
) -> None:
    worker = await fleet.start_ready(env=broker_env())
    body = {"order": 42, "items": ["a", "ü"]}
    job_id = await jobs_db.enqueue(
        "rabbitmq.publish",
        {"routing_key": queue.name, "body": body, "headers": {"x-trace": "t-1", "n": 3}},
    )

    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert (done["attempt"], done["result"]) == (1, {"published": True})
    message = await received(queue)
    assert json.loads(message.body) == body
    assert message.content_type == "application/json"
    assert message.headers == {"x-trace": "t-1", "n": 3}
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == str(job_id)
    logs = {"worker": worker.log()}
    # The user is "guest" too, so look for the password where a URL would carry it.
    for leak in ("guest:guest", ":guest@"):
        assert await where_secret_appears(jobs_db, leak, logs) == []


async def test_rabbitmq_publish_string_body_transient_through_a_named_exchange(
    jobs_db: JobsDb, fleet: WorkerFleet, broker: AbstractRobustConnection, queue: AbstractQueue
) -> None:
    channel = await broker.channel()
    exchange = await channel.declare_exchange(
        f"dl-test-{uuid.uuid4().hex[:12]}", aio_pika.ExchangeType.DIRECT, auto_delete=True
    )
    await queue.bind(exchange, routing_key="orders.created")
    await fleet.start_ready(env=broker_env())
    job_id = await jobs_db.enqueue(
        "rabbitmq.publish",
        {
            "exchange": exchange.name,
            "routing_key": "orders.created",
            "body": "id;total\n42;9.50",
            "content_type": "text/csv",
            "persistent": False,
        },
    )

    await jobs_db.wait_status(job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)

    message = await received(queue)
    assert message.body == b"id;total\n42;9.50"
    assert message.content_type == "text/csv"
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert message.exchange == exchange.name
    await exchange.delete()


async def test_rabbitmq_publish_unknown_exchange_fails_at_once(
    jobs_db: JobsDb, fleet: WorkerFleet, queue: AbstractQueue
) -> None:
    await fleet.start_ready(env=broker_env())
    name = f"dl-missing-{uuid.uuid4().hex[:12]}"
    job_id = await jobs_db.enqueue(
        "rabbitmq.publish", {"exchange": name, "routing_key": "x", "body": "x"}, max_attempts=5
    )

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert failed["attempt"] == 1
    assert failed["error"] == f"PermanentError: exchange {name!r} does not exist"
    assert await jobs_db.event_names(job_id) == ["queued", "started", "failed"]
    # The channel error closed only that job's channel: the next job publishes fine.
    after = await jobs_db.enqueue("rabbitmq.publish", {"routing_key": queue.name, "body": "ok"})
    await jobs_db.wait_status(after, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)
    assert (await received(queue)).body == b"ok"


async def test_rabbitmq_publish_unroutable_message_is_retried(
    jobs_db: JobsDb, fleet: WorkerFleet, queue: AbstractQueue
) -> None:
    await fleet.start_ready(env=broker_env())
    nowhere = f"dl-no-queue-{uuid.uuid4().hex[:12]}"
    unroutable = await jobs_db.enqueue(
        "rabbitmq.publish", {"routing_key": nowhere, "body": "x"}, max_attempts=2
    )
    failed = await jobs_db.wait_status(
        unroutable, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )
    after = await jobs_db.enqueue("rabbitmq.publish", {"routing_key": queue.name, "body": "ok"})
    await jobs_db.wait_status(after, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)

    assert failed["attempt"] == 2
    assert failed["error"] == (
        f"RabbitmqPublishError: exchange '' routing key {nowhere!r}: unroutable, no queue is bound"
    )
    assert (await received(queue)).body == b"ok"


async def test_rabbitmq_publish_without_url_fails_at_once(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready(env={"RABBITMQ_URL": ""})
    job_id = await jobs_db.enqueue("rabbitmq.publish", {"routing_key": "q", "body": "x"})

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert (failed["attempt"], failed["error"]) == (1, "PermanentError: RABBITMQ_URL is not set")


async def test_rabbitmq_publish_never_shows_the_password(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    refused_by_broker = await fleet.start_ready(
        env=broker_env(f"amqp://guest:{password}@{HOST}:{PORT}/"), queues={"mq.wrong": 1}
    )
    nobody_listens = await fleet.start_ready(
        env=broker_env(f"amqp://guest:{password}@{HOST}:{free_port()}/"), queues={"mq.down": 1}
    )
    args = {"routing_key": "q", "body": "x"}
    wrong = await jobs_db.enqueue("rabbitmq.publish", args, queue="mq.wrong", max_attempts=3)
    down = await jobs_db.enqueue("rabbitmq.publish", args, queue="mq.down", max_attempts=2)

    refused = await jobs_db.wait_status(
        wrong, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )
    retried = await jobs_db.wait_status(
        down, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert refused["attempt"] == 1, "a refused login does not get better by retrying"
    assert "access refused: ACCESS_REFUSED" in refused["error"]
    assert retried["attempt"] == 2
    assert "publish failed: AMQPConnectionError" in retried["error"]
    logs = {"wrong": refused_by_broker.log(), "down": nobody_listens.log()}
    assert await where_secret_appears(jobs_db, password, logs) == []


async def test_rabbitmq_publish_reuses_one_connection_and_survives_its_loss(
    jobs_db: JobsDb, fleet: WorkerFleet, queue: AbstractQueue
) -> None:
    proxy = await TcpProxy(HOST, PORT).start()
    try:
        await fleet.start_ready(env=broker_env(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"))
        first = [
            await jobs_db.enqueue("rabbitmq.publish", {"routing_key": queue.name, "body": str(i)})
            for i in range(5)
        ]
        for job_id in first:
            await jobs_db.wait_status(
                job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
            )
        assert proxy.connections == 1, "five jobs, one connection"

        proxy.cut()  # as a broker restart would
        after = await jobs_db.enqueue("rabbitmq.publish", {"routing_key": queue.name, "body": "5"})
        done = await jobs_db.wait_status(
            after, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )
    finally:
        await proxy.stop()

    assert proxy.connections == 2, "reconnected once"
    assert done["attempt"] == 1, "the job waited for the reconnect instead of failing"
    bodies = sorted([(await received(queue)).body for _ in range(6)])
    assert bodies == [str(i).encode() for i in range(6)]
