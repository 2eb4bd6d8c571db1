"""Settings from the environment (and a `.env` file), built once per process."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class SettingsError(Exception):
    """A setting from the environment is missing or invalid."""


class QueueConfig(BaseModel):
    """One queue a worker serves and how many of its jobs may run at once, fleet-wide.

    Concurrency 0 sets no fleet-wide limit: each worker takes what its own
    `pgq run --max-concurrent-tasks` allows. pgqueuer then dequeues without counting the
    picked jobs of the queue, which is several times cheaper for short jobs.
    """

    queue: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]
    concurrency: Annotated[int, Field(ge=0, le=10_000)] = 1


ApiScope = Literal["read", "write", "admin"]


class ApiToken(BaseModel):
    """One API token: a unique name (logged), the secret (never logged) and its scopes.

    `admin` implies `write` and `read`; `write` implies `read` (see app.http.auth).
    """

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]
    token: SecretStr
    scopes: Annotated[list[ApiScope], Field(min_length=1)]

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("a token must be at least 16 characters")
        return value


_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class UrlPrefix:
    """Where a credential set may be sent: a scheme, host, port and path prefix.

    Compared as parsed components, never as strings, so `https://good.example` does not
    cover `https://good.example.evil.com`; the path matches at a segment boundary. Parsed
    by httpx, the library that sends the request, so both sides read a URL alike.
    """

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        """The prefix `text` names; ValueError when it is not an http(s) URL without query."""
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{text!r} is not a valid URL: {exc}") from None
        if url.scheme not in _DEFAULT_PORTS or not url.host:
            raise ValueError(f"{text!r} must be an http:// or https:// URL with a host")
        if url.query or url.fragment or url.userinfo:
            raise ValueError(f"{text!r} must not carry a query, fragment or user info")
        return cls(url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme], url.path)

    def matches(self, url: str) -> bool:
        """Whether `url` is under this prefix: same scheme, host and port, path below it."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            return False
        if (target.scheme, target.host) != (self.scheme, self.host):
            return False
        if (target.port or _DEFAULT_PORTS.get(target.scheme)) != self.port:
            return False
        base = self.path.rstrip("/")
        return target.path == self.path or target.path.startswith(base + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


class CallbackCredentials(BaseModel):
    """One credential set of `http.callback`: its headers and the URL prefixes it may go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    headers: Annotated[dict[str, SecretStr], Field(min_length=1)]
    urls: list[str]

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, value: object) -> object:
        # The old form was {name: {header: value}}: say what changed, not "field required".
        if isinstance(value, dict) and ("headers" not in value or "urls" not in value):
            raise ValueError(
                'each credential set needs "headers" and "urls" (the URL prefixes it may be'
                ' sent to), e.g. {"partner": {"headers": {"Authorization": "Bearer …"},'
                ' "urls": ["https://api.partner.example/hooks/"]}}'
            )
        return value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('a credential set needs at least one URL prefix in "urls"')
        for text in value:
            UrlPrefix.parse(text)
        return value

    @property
    def prefixes(self) -> list[UrlPrefix]:
        """The parsed URL prefixes."""
        return [UrlPrefix.parse(text) for text in self.urls]


class Settings(BaseSettings):
    """Every tunable of the API and the worker, named as in the original spec.

    Each field's docstring is its documentation: `python -m app.settings_doc` renders them
    into docs/configuration.md, and a unit test fails when a field has none.
    """

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, use_attribute_docstrings=True
    )

    app_host: str = "127.0.0.1"
    """Address the API listens on. Without `API_TOKENS_JSON` only loopback (`127.0.0.0/8`,
    `::1`, `localhost`) is allowed: elsewhere the API refuses to start."""
    app_port: Annotated[int, Field(ge=1, le=65535)] = 8081
    """Port the API listens on."""
    app_env: str = "development"
    """Environment name, shown by `GET /info`."""
    app_workers: Annotated[int, Field(ge=1, le=64)] = 1
    """API processes sharing the port (`python -m app serve --workers N` overrides it)."""
    app_access_log: bool = True
    """uvicorn's access log: one line per request."""
    app_max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """Largest request body; a larger one is answered 413."""
    app_stream_keepalive_sec: Annotated[float, Field(gt=0, le=3600)] = 15
    """A job stream (`GET /api/v1/jobs/{id}/stream`) sends a `: keep-alive` comment after
    this much quiet, so proxies keep the connection open."""
    app_header_max_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    """Largest request head (request line and headers); a larger one is answered 431 and
    the connection closed, without reading the rest (see [security](security.md#http-edge))."""
    app_header_timeout_sec: Annotated[float, Field(gt=0, le=3600)] = 10
    """Time a client has to send a request's complete head, from connecting (or from the
    first byte of a further request on a kept-alive connection); a client still sending
    after it is answered 408 and disconnected, one that sent nothing is disconnected."""
    app_keepalive_timeout_sec: Annotated[float, Field(gt=0, le=3600)] = 5
    """An idle kept-alive connection is closed after this long without a new request."""
    app_max_concurrent_requests: Annotated[int, Field(ge=1, le=100_000)] = 256
    """Requests one API process handles at once; one more is answered 503 with
    `Retry-After` at once instead of waiting. `/health` and `/ready` are never refused, and
    job streams count against `APP_STREAM_MAX` instead, once their answer has started."""
    app_stream_max: Annotated[int, Field(ge=1, le=100_000)] = 200
    """Job streams (`GET /api/v1/jobs/{id}/stream`) open at once in one API process; one
    more is answered 429 with `Retry-After`."""
    app_stream_max_per_token: Annotated[int, Field(ge=1, le=100_000)] = 20
    """Job streams one API token may hold open at once in one API process; one more is
    answered 429 with `Retry-After`. Without `API_TOKENS_JSON` only `APP_STREAM_MAX` applies."""
    app_busy_retry_after_sec: Annotated[int, Field(ge=1, le=3600)] = 2
    """`Retry-After` (seconds) of the 503 for too many requests and the 429 for too many
    streams."""
    api_tokens_json: list[ApiToken] = Field(default_factory=list)
    """Bearer tokens with scopes, a JSON list:
    `[{"name": "ops", "token": "<16+ characters>", "scopes": ["admin"]}]`. Empty: the API is
    open, and `serve` then refuses any non-loopback `APP_HOST` (see [security](security.md)).
    Read once at start; to rotate tokens without a restart use `API_TOKENS_FILE` instead."""
    api_tokens_file: str | None = None
    """A file holding the token list in the format of `API_TOKENS_JSON`; set one of the two,
    not both. Each API process re-reads it when it changes (see `API_TOKENS_FILE_CHECK_SEC`)
    and on `SIGHUP`; an unreadable or invalid file (an empty list included) keeps the tokens
    read before and logs one error line. It must be valid at start. See
    [security](security.md#rotating-tokens)."""
    api_tokens_file_check_sec: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """How often, at most, an API process looks whether `API_TOKENS_FILE` changed (one `stat`,
    on a request); a removed token is refused within this time. 0: only on `SIGHUP`."""

    database_url: str | None = None
    """`postgresql://…` or `postgresql+asyncpg://…`. With neither it nor `PG_HOST`, `make run`
    starts an embedded PostgreSQL, and `python -m app serve` / `migrate` refuse to start."""
    pg_host: str | None = None
    """Database host, used (with the other `PG_*`) when `DATABASE_URL` is unset."""
    pg_port: Annotated[int, Field(ge=1, le=65535)] = 5432
    """Database port, when `DATABASE_URL` is unset."""
    pg_user: str = "postgres"
    """Database user, when `DATABASE_URL` is unset."""
    pg_password: str = ""
    """Database password, when `DATABASE_URL` is unset."""
    pg_database: str = "dataloader"
    """Database name, when `DATABASE_URL` is unset."""
    pg_schema_queue: str = "public"
    """Schema holding the `dl_*` tables and pgqueuer's (a lower-case SQL identifier)."""
    database_direct_url: str | None = None
    """A URL that reaches PostgreSQL itself, for the connections that need a session of
    their own (locks, LISTEN, session settings; see [connections](connections.md)). Set it
    when `DATABASE_URL` points at a pooler such as PgBouncer in transaction mode; unset,
    those connections use `DATABASE_URL` too."""
    pg_pool_size: Annotated[int, Field(ge=1, le=1000)] = 4
    """Pooled connections of each API process (request handlers, trigger rounds, metrics)."""
    pg_max_overflow: Annotated[int, Field(ge=0, le=1000)] = 0
    """Connections an API process's pool may open beyond `PG_POOL_SIZE` under load."""
    dl_worker_pool_size: Annotated[int, Field(ge=1, le=1000)] = 1
    """Pooled connections of each worker (heartbeats, progress, retries, schedule sync, and
    maintenance on the leader); a worker holds this many plus three (see
    [connections](connections.md))."""

    workers_json: list[QueueConfig] = Field(
        default_factory=lambda: [QueueConfig(queue="etl.default", concurrency=2)]
    )
    """Queues a worker serves, a JSON list of `{"queue", "concurrency"}`. Concurrency is a
    limit for the queue across the fleet; 0 sets none (see [operations](operations.md#workers))."""
    worker_id: str | None = None
    """Identity of a worker (or API process) in jobs, events and logs; default host name and
    pid."""
    # NoDecode lets the validator below see the raw text.
    dl_pipeline_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Modules that register pipelines, besides the built-ins: comma-separated or a JSON
    list."""
    dl_heartbeat_sec: Annotated[float, Field(gt=0, le=3600)] = 10
    """Heartbeat period of a running job: extends its lease, saves progress and reads the
    cancel flag."""
    dl_progress_sec: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """New progress is saved at most this often (sooner than the heartbeat), for live
    views."""
    dl_result_max_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """Largest result a pipeline may return, in bytes of compact UTF-8 JSON; a bigger one
    fails the job (no retry: a rerun would redo the work to return the same value). A
    worker may hold this much per running job while it finishes."""
    dl_default_lease_ttl_sec: Annotated[int, Field(ge=1, le=86_400)] = 60
    """Lease of a job that gives no `lease_ttl_sec`."""
    dl_reaper_period_sec: Annotated[float, Field(gt=0, le=3600)] = 10
    """How often the maintenance leader reaps expired leases; also how soon another worker
    takes over when the leader dies."""
    dl_worker_refresh_sec: Annotated[float, Field(gt=0, le=3600)] = 30
    """How often a worker says it lives in `dl_workers` (one statement). A worker not seen
    for three periods is gone: `/api/v1/workers` leaves it out, its queues count as
    unserved and new jobs wake other workers. API processes and workers must agree on it."""
    dl_claim_backoff_sec: Annotated[float, Field(ge=0, le=86_400)] = 15
    """How long a job waits when another job holds its `lock_key` (a `lock_busy` event), its
    concurrency group runs its limit (a `concurrency_busy` event), or a coalescing trigger
    that joined it has not committed yet (a `trigger_open` event); the attempt is not
    counted."""
    dl_retry_backoff_sec: Annotated[float, Field(ge=0, le=86_400)] = 30
    """Retry delay after a failed attempt: this x the attempt number, ± `DL_RETRY_JITTER`."""
    dl_retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Random spread of the retry delay, as a fraction of it."""
    dl_shutdown_timeout_sec: Annotated[float, Field(ge=0, le=86_400)] = 30
    """On SIGTERM, how long running jobs get to finish before they are stopped and
    requeued."""
    dl_schedule_period_sec: Annotated[float, Field(gt=0, le=3600)] = 60
    """The longest the leader's scheduler sleeps between two looks at the schedules. It
    sleeps until the next fire time, and a change made through the API or by a worker's
    start wakes it at once; this bounds how late it sees a change whose notice it missed
    (a row edited by hand, a lost connection), and when a schedule that failed to fire is
    tried again."""
    dl_retention_days: Annotated[float, Field(ge=0, le=36_500)] = 7
    """Finished jobs with their events, and pgqueuer's log and statistics rows, older than
    this many days are deleted (fractions allowed); 0 keeps everything."""
    dl_retention_period_sec: Annotated[float, Field(gt=0, le=86_400)] = 300
    """How often the leader runs a retention pass (every `DL_REAPER_PERIOD_SEC` while a
    backlog remains)."""
    dl_retention_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Jobs (with their events) or pgqueuer rows deleted per batch; each batch is one
    transaction."""
    dl_retention_max_batches_per_pass: Annotated[int, Field(ge=1, le=10_000)] = 20
    """Batches per retention pass at most."""

    log_format: Literal["json", "console"] = "json"
    """`json`: one object a line; `console`: for people (`make run` uses it unless
    `LOG_FORMAT` is set)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Either case. At `DEBUG` the runner logs each attempt's start with its args
    (masked)."""
    dl_log_mask_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """More words that make a logged key secret, comma-separated (`iban,card_number`), beside
    password, passwd, secret, token, key, authorization and cookie."""
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Port of a worker's own Prometheus endpoint (`/metrics`); 0: none. `make run` gives its
    workers 9464, 9465, … unless it is set."""
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other hosts
    """Address of a worker's Prometheus endpoint."""

    # Built-in pipelines. Credentials live here, never in job args.
    http_callback_credentials_json: dict[str, CallbackCredentials] = Field(default_factory=dict)
    """Named header sets for `http.callback`, each bound to the URL prefixes it may be sent
    to, a JSON object: `{"partner": {"headers": {"Authorization": "Bearer …"}, "urls":
    ["https://api.partner.example/hooks/"]}}`; a job picks one with `"credentials":
    "partner"`, and only for a URL under one of its prefixes (scheme, host, port, path at a
    segment boundary)."""
    http_callback_allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list
    )
    """Non-public networks `http.callback` may reach anyway, as CIDRs (`10.1.2.0/24`,
    `127.0.0.1/32`). Without one, a URL resolving to a loopback, private, link-local,
    unique-local, multicast, shared or reserved address is refused (see
    [security](security.md#outbound-guard))."""
    http_callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host names `http.callback` may reach whatever they resolve to (`hooks.internal`);
    exact names, or `*.internal.example` for any name below one."""
    email_allowed_recipient_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Domains `email.send` may write to (`to`, `cc`, `bcc` and `reply_to`): `example.com`,
    `*.example.com` for any subdomain, `*` for any. Empty: every recipient is refused."""
    rabbitmq_allowed_exchanges: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Exchanges `rabbitmq.publish` may publish to, as names or patterns (`orders.*`; `*`
    matches any run of characters); `amq.default` names the default exchange (`""` in a
    job), which routes to any queue by its name. Empty: every publish is refused."""
    rabbitmq_allowed_routing_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Routing-key patterns `rabbitmq.publish` may use (`orders.*`; `*` matches any run of
    characters, dots included). Empty: any routing key on an allowed exchange."""
    rabbitmq_url: SecretStr | None = None
    """Broker of `rabbitmq.publish`: `amqp://user:password@host:5672/vhost` or
    `amqps://…`."""
    smtp_host: str | None = None
    """SMTP server of `email.send` (required by it)."""
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    """SMTP port."""
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    """`starttls` upgrades a plain connection and fails if the server cannot; `tls` is TLS
    from the first byte (usually port 465); `none` is plain text."""
    smtp_username: str | None = None
    """SMTP AUTH is used when a username is set."""
    smtp_password: SecretStr | None = None
    """SMTP password."""
    smtp_from: str | None = None
    """Sender of every email (required by `email.send`); its domain ends each
    `Message-ID`."""
    smtp_timeout_sec: Annotated[float, Field(gt=0, le=600)] = 30
    """Limit for each SMTP step."""

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^postgres(ql)?(\+asyncpg)?://", value):
            raise ValueError("must start with postgresql:// or postgresql+asyncpg://")
        return value

    @field_validator("pg_schema_queue")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        if not _SCHEMA_NAME.match(value):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _)")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "dl_pipeline_modules",
        "dl_log_mask_keys",
        "http_callback_allowed_networks",
        "http_callback_allowed_hosts",
        "email_allowed_recipient_domains",
        "rabbitmq_allowed_exchanges",
        "rabbitmq_allowed_routing_keys",
        mode="before",
    )
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("http_callback_allowed_hosts", "email_allowed_recipient_domains")
    @classmethod
    def _lower_names(cls, value: list[str]) -> list[str]:
        return [name.strip().lower().rstrip(".") for name in value]

    @field_validator(
        "workers_json", "http_callback_credentials_json", "api_tokens_json", mode="before"
    )
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @model_validator(mode="after")
    def _check_queues_unique(self) -> Settings:
        names = [q.queue for q in self.workers_json]
        if len(names) != len(set(names)):
            raise ValueError("WORKERS_JSON lists a queue twice")
        if not names:
            raise ValueError("WORKERS_JSON lists no queue")
        token_names = [t.name for t in self.api_tokens_json]
        if len(token_names) != len(set(token_names)):
            raise ValueError("API_TOKENS_JSON names a token twice")
        if self.api_tokens_file and self.api_tokens_json:
            # Two sources would leave it unclear which one a rotation must edit.
            raise ValueError("set API_TOKENS_JSON or API_TOKENS_FILE, not both")
        return self

    @property
    def host_is_loopback(self) -> bool:
        """Whether APP_HOST only accepts connections from this machine."""
        host = self.app_host.strip().strip("[]")
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name other than localhost may resolve anywhere
            return False

    @property
    def has_database(self) -> bool:
        """Whether a server was configured (else the dev runner starts an embedded one)."""
        return bool(self.database_url or self.pg_host)

    @property
    def asyncpg_dsn(self) -> str:
        """The plain `postgresql://` DSN that asyncpg and `pgq` accept."""
        if self.database_url:
            return _plain_dsn(self.database_url)
        if not self.pg_host:
            raise SettingsError("DATABASE_URL or PG_HOST must be set")
        auth = quote(self.pg_user, safe="")
        if self.pg_password:
            auth += ":" + quote(self.pg_password, safe="")
        return f"postgresql://{auth}@{self.pg_host}:{self.pg_port}/{quote(self.pg_database)}"

    @property
    def sqlalchemy_url(self) -> str:
        """The same DSN spelled for SQLAlchemy's asyncpg dialect."""
        return self.asyncpg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    @property
    def behind_pooler(self) -> bool:
        """Whether DATABASE_URL is taken to be a pooler in transaction mode: it is, when a
        DATABASE_DIRECT_URL is given for the connections that need a session."""
        return bool(self.database_direct_url)

    @property
    def session_dsn(self) -> str:
        """The DSN for connections that need a session of their own: DATABASE_DIRECT_URL,
        else the same as `asyncpg_dsn`."""
        if self.database_direct_url:
            return _plain_dsn(self.database_direct_url)
        return self.asyncpg_dsn

    @property
    def session_sqlalchemy_url(self) -> str:
        """`session_dsn` spelled for SQLAlchemy (migrations run on a session of their own)."""
        return self.session_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def _plain_dsn(url: str) -> str:
    """`postgres://`, `postgresql://` or `postgresql+asyncpg://` as asyncpg spells it."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first bad setting by its environment variable."""
    first = error.errors()[0]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    loc = first.get("loc")
    if not loc:  # a check across settings: its message names the variable itself
        return f"invalid setting: {message}"
    return f"invalid setting {str(loc[0]).upper()}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning a validation error into SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    except ValueError as exc:  # pydantic-settings could not decode a JSON-valued variable
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "settings"
        raise SettingsError(f"invalid setting {name}: not valid JSON") from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def settings_or_exit(program: str) -> Settings:
    """The process settings, or one line naming the bad setting and exit code 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
