"""Built-in `rabbitmq.publish`: publish one message with publisher confirms via aio-pika."""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiormq.exceptions
import msgspec
from aio_pika.abc import AbstractRobustConnection

from app.pipelines.context import PipelineContext
from app.pipelines.errors import DestinationRefusedError, PermanentError
from app.pipelines.registry import pipeline
from app.settings import Settings, get_settings

HeaderValue = str | int | float | bool | None
# How RABBITMQ_ALLOWED_EXCHANGES names the default exchange (a job says "").
DEFAULT_EXCHANGE = "amq.default"
# aio-pika waits 5 s between reconnects by default; jobs wait for the connection meanwhile.
RECONNECT_INTERVAL_SEC = 2.0


class RabbitmqPublishArgs(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Args of `rabbitmq.publish`; unknown fields are rejected at trigger time."""

    routing_key: Annotated[str, msgspec.Meta(max_length=255)]
    body: dict[str, Any] | str
    exchange: Annotated[str, msgspec.Meta(max_length=255)] = ""  # "": the default exchange
    headers: dict[Annotated[str, msgspec.Meta(max_length=255)], HeaderValue] = {}
    persistent: bool = True
    content_type: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    timeout_sec: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0


def check_exchange(args: RabbitmqPublishArgs, settings: Settings) -> None:
    """Refuse the publish unless its exchange, and routing key if restricted, are allowed.

    Raises DestinationRefusedError naming what is refused and the setting that allows it.
    """
    allowed = settings.rabbitmq_allowed_exchanges
    exchange = args.exchange or DEFAULT_EXCHANGE
    if not any(fnmatchcase(exchange, pattern) for pattern in allowed):
        raise DestinationRefusedError(
            f"exchange {exchange!r} is not in RABBITMQ_ALLOWED_EXCHANGES"
            + ("" if allowed else " (it is empty: rabbitmq.publish publishes nowhere)")
        )
    patterns = settings.rabbitmq_allowed_routing_keys
    if patterns and not any(fnmatchcase(args.routing_key, p) for p in patterns):
        raise DestinationRefusedError(
            f"routing key {args.routing_key!r} matches no pattern of RABBITMQ_ALLOWED_ROUTING_KEYS"
        )


async def check_rabbitmq_destination(args: RabbitmqPublishArgs, settings: Settings) -> None:
    """At trigger time: the exchange and routing key are allowed."""
    check_exchange(args, settings)


class RabbitmqPublishError(Exception):
    """The message was not confirmed this time (broker away, nack, unroutable): retried."""


class _Connections:
    """One robust connection per worker process, opened on first use, reopened when closed."""

    def __init__(self) -> None:
        self.connection: AbstractRobustConnection | None = None
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock: asyncio.Lock | None = None

    async def get(self, url: str, timeout_sec: float) -> AbstractRobustConnection:
        """The live connection to `url`, connecting when there is none (or it was closed)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a connection belongs to the loop that opened it
            self.connection, self.loop, self.lock = None, loop, asyncio.Lock()
        assert self.lock is not None
        async with self.lock:  # concurrent jobs share one connection attempt
            if self.connection is None or self.connection.is_closed or self.url != url:
                # aio-pika reconnects a robust connection by itself once it has connected;
                # a first connect that fails raises, and the next job tries again.
                options: dict[str, Any] = {"timeout": timeout_sec}
                if "reconnect_interval" not in url:  # the URL's own choice wins
                    options["reconnect_interval"] = RECONNECT_INTERVAL_SEC
                self.connection = await aio_pika.connect_robust(url, **options)
                self.url = url
            return self.connection

    async def close(self) -> None:
        """Close the connection, if any (worker shutdown, tests)."""
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
        self.connection = None


_connections = _Connections()


async def close_connection() -> None:
    """Close this process's broker connection; call it when the worker shuts down."""
    await _connections.close()


def _secrets(url: str) -> list[str]:
    """The URL and its password in every spelling an error message might quote."""
    password = urlsplit(url).password or ""
    spellings = {url, password, unquote(password), quote(unquote(password), safe="")}
    return sorted((s for s in spellings if s), key=len, reverse=True)


def _redact(text: str, secrets: list[str]) -> str:
    """`text` without the URL or its password."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _message(args: RabbitmqPublishArgs, ctx: PipelineContext) -> aio_pika.Message:
    """The AMQP message; its message_id is the job id, so consumers can drop redeliveries."""
    if isinstance(args.body, str):
        body, content_type = args.body.encode(), "text/plain; charset=utf-8"
    else:
        body, content_type = msgspec.json.encode(args.body), "application/json"
    mode = (
        aio_pika.DeliveryMode.PERSISTENT
        if args.persistent
        else aio_pika.DeliveryMode.NOT_PERSISTENT
    )
    return aio_pika.Message(
        body,
        headers=dict(args.headers),
        content_type=args.content_type or content_type,
        delivery_mode=mode,
        message_id=str(ctx.job_id),
        app_id="dataloader",
    )


async def _publish(
    connection: AbstractRobustConnection, args: RabbitmqPublishArgs, ctx: PipelineContext
) -> None:
    """Publish on a channel of its own: a channel error (no such exchange) closes only it."""
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        if args.exchange:
            exchange = await channel.get_exchange(args.exchange, ensure=True)  # passive declare
        else:
            exchange = channel.default_exchange
        await exchange.publish(_message(args, ctx), routing_key=args.routing_key, mandatory=True)


@pipeline(
    "rabbitmq.publish", args=RabbitmqPublishArgs, check_destination=check_rabbitmq_destination
)
async def rabbitmq_publish(args: RabbitmqPublishArgs, ctx: PipelineContext) -> dict[str, Any]:
    """Publish and wait for the broker's confirm; a missing exchange fails the job at once."""
    settings = get_settings()
    secret = settings.rabbitmq_url
    url = secret.get_secret_value() if secret is not None else ""
    if not url:
        raise PermanentError("RABBITMQ_URL is not set")
    check_exchange(args, settings)  # again: the job may predate a change of the setting
    secrets = _secrets(url)
    where = f"exchange {args.exchange!r} routing key {args.routing_key!r}"
    stage = "connecting to RabbitMQ"
    try:
        async with asyncio.timeout(args.timeout_sec):
            connection = await _connections.get(url, args.timeout_sec)
            await connection.ready()  # a robust connection may be between reconnects
            stage = "publishing"
            await _publish(connection, args, ctx)
    except TimeoutError:
        raise RabbitmqPublishError(
            f"{where}: timed out after {args.timeout_sec:g}s {stage}"
        ) from None
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise PermanentError(f"exchange {args.exchange!r} does not exist") from None
    except (
        aiormq.exceptions.ProbableAuthenticationError,
        aiormq.exceptions.AuthenticationError,
        aiormq.exceptions.ChannelAccessRefused,
    ) as exc:
        # Credentials and permissions do not change between attempts of one process.
        raise PermanentError(f"{where}: access refused: {_redact(str(exc), secrets)}") from None
    except aiormq.exceptions.PublishError:
        raise RabbitmqPublishError(f"{where}: unroutable, no queue is bound") from None
    except aiormq.exceptions.DeliveryError as exc:
        raise RabbitmqPublishError(f"{where}: the broker refused the message: {exc}") from None
    except Exception as exc:  # any other failure may pass; never let it quote the URL
        message = _redact(f"{type(exc).__name__}: {exc}", secrets)
        raise RabbitmqPublishError(f"{where}: publish failed: {message}") from None
    return {"published": True}
