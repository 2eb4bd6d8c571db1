"""The SQL functions dl_enqueue() and dl_request_fingerprint(): enqueue from any language.

dl_enqueue(queue => .., task => .., lock_key => .., ...) creates a job in the caller's own
transaction exactly as the HTTP trigger does: the field rules of app.domain.spec, the reserved
`dl:` namespace of app.domain.idempotency, the idempotency rule, and the same dl_jobs row,
`queued` event, pgqueuer dispatch and dispatch notice (dispatch_ctes, the one builder of
dispatch rows). dl_request_fingerprint() is the one definition of "the same request": the
Python insert (app.db.jobs) computes its fingerprints through it too.

Migration 0011 installs what `install_statements` renders (0013, 0014, 0016 and 0017 again,
with what they added). The
functions are frozen in the database at that moment, so a change to what they render (or to
dispatch_ctes) needs a new migration that installs them again;
tests/integration/test_dl_enqueue_function.py fails until one does.
"""

from __future__ import annotations

from app.db import fairness
from app.db.coalescing import MAX_JOIN_TRIES, differs_sql, event_details_sql, hold_key
from app.db.pgqueuer_tables import ANNOUNCED, dispatch_ctes, next_dispatch_id
from app.db.sql_common import qualified, quote_ident
from app.domain.dependencies import MAX_DEPENDS_ON, RunAfter
from app.domain.idempotency import RESERVED_PREFIX
from app.domain.spec import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    EARLIEST_AVAILABLE_AT,
    LATEST_AVAILABLE_AT,
    MAX_ARGS_DEPTH,
    MAX_CONCURRENCY_LIMIT,
)
from app.domain.states import JobEvent, JobStatus

# The server's default lease (Settings.dl_default_lease_ttl_sec's default). SQL cannot read
# the API's settings: a deployment that changes DL_DEFAULT_LEASE_TTL_SEC passes lease_ttl_sec.
DEFAULT_LEASE_TTL_SEC = 60
# SQLSTATEs callers can rely on (docs/enqueue.md).
INVALID_FIELD_SQLSTATE = "22023"  # invalid_parameter_value; the error's COLUMN names the field
KEY_CONFLICT_SQLSTATE = "23505"  # unique_violation on uq_dl_jobs_idempotency_key
# What Python's str.isspace() (and so `\s` in app.domain.spec's patterns and str.lstrip())
# counts as white space; frozen so the database's answer does not follow a Python upgrade.
PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# dl_enqueue's parameters, in order, with their SQL types and defaults.
PARAMETERS = (
    ("queue", "text", None),
    ("task", "text", None),
    ("lock_key", "text", None),
    ("args", "jsonb", "'{}'::jsonb"),
    ("idempotency_key", "text", "NULL"),
    ("partition_key", "text", "NULL"),
    ("priority", "integer", str(DEFAULT_PRIORITY)),
    ("available_at", "timestamptz", "NULL"),
    ("max_attempts", "integer", str(DEFAULT_MAX_ATTEMPTS)),
    ("lease_ttl_sec", "integer", "NULL"),
    ("producer", "text", "NULL"),
    ("consumer_group", "text", "NULL"),
)
# Added by migration 0013 (concurrency groups).
GROUP_PARAMETERS = (
    ("concurrency_key", "text", "NULL"),
    ("concurrency_limit", "integer", "NULL"),
)
# Added by migration 0014 (rate limits).
RATE_PARAMETERS = (("rate_key", "text", "NULL"),)
# Added by migration 0016 (coalescing triggers), with the OUT columns `coalesced` and
# `differs`.
COALESCING_PARAMETERS = (("coalescing", "boolean", "false"),)
# Added by migration 0018 (dependencies): a job with parents is created waiting
# (app.db.dependency_functions settles it).
DEPENDENCY_PARAMETERS = (("depends_on", "uuid[]", "NULL"), ("run_after", "text", "'succeeded'"))
# dl_enqueue as each migration that (re)installed it rendered it, by revision: a migration
# installs its own release, and a downgrade installs the one before, so a release's text
# never changes once it shipped.
RELEASES: dict[int, tuple[tuple[str, str, str | None], ...]] = {
    11: PARAMETERS,
    13: PARAMETERS + GROUP_PARAMETERS,
    14: PARAMETERS + GROUP_PARAMETERS + RATE_PARAMETERS,
    16: PARAMETERS + GROUP_PARAMETERS + RATE_PARAMETERS + COALESCING_PARAMETERS,
    # Migration 0017 (fair queues): the same parameters; its jobs get their round.
    17: PARAMETERS + GROUP_PARAMETERS + RATE_PARAMETERS + COALESCING_PARAMETERS,
    18: PARAMETERS
    + GROUP_PARAMETERS
    + RATE_PARAMETERS
    + COALESCING_PARAMETERS
    + DEPENDENCY_PARAMETERS,
}
LATEST = max(RELEASES)
# The first release with coalescing triggers.
COALESCING_RELEASE = 16
# The first release that gives a fair queue's jobs their round (app.db.fairness).
FAIR_RELEASE = 17
# The first release with depends_on and run_after.
DEPENDENCY_RELEASE = 18


def parameters(release: int = LATEST) -> tuple[tuple[str, str, str | None], ...]:
    """dl_enqueue's parameters, in order, as `release` (a migration's revision) had them."""
    return RELEASES[release]


def signature(release: int = LATEST) -> str:
    """dl_enqueue's argument types, as DROP FUNCTION names one release of it."""
    return ", ".join(kind for _, kind, _ in parameters(release))


def _unicode_literal(text: str) -> str:
    """`text` as a U&'...' literal: every character escaped, readable in the function body."""
    return "U&'" + "".join(f"\\{ord(char):04x}" for char in text) + "'"


def fingerprint_function(schema: str) -> str:
    """CREATE FUNCTION dl_request_fingerprint(...): the digest of a request, after defaults.

    Every field but idempotency_key, as the job gets it (lease_ttl_sec after its default).
    args compare as jsonb values: key order and spacing do not matter, 1 and 1.0 differ.
    available_at compares as an instant (in UTC, to the microsecond); an omitted one is NULL
    (the server fills in "now", no part of the request), so it matches only another NULL.
    """
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_request_fingerprint(
    queue text, task text, args jsonb, lock_key text, partition_key text, priority integer,
    available_at timestamptz, max_attempts integer, lease_ttl_sec integer, producer text,
    consumer_group text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fingerprint$
    SELECT encode(sha256(convert_to(jsonb_build_object(
        'queue', queue, 'task', task, 'args', args, 'lock_key', lock_key,
        'partition_key', partition_key, 'priority', priority,
        'available_at', to_char(available_at AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'max_attempts', max_attempts, 'lease_ttl_sec', lease_ttl_sec,
        'producer', producer, 'consumer_group', consumer_group
    )::text, 'UTF8')), 'hex')
$fingerprint$
"""


def grouped_fingerprint(
    fingerprint: str, concurrency_key: str, concurrency_limit: str, rate_key: str = "NULL"
) -> str:
    """SQL: the fingerprint of a request with its concurrency group and rate_key.

    `fingerprint` is dl_request_fingerprint() of the other fields; the other arguments are SQL
    expressions. Without a group or rate_key it is that fingerprint unchanged, so every job
    written before they existed keeps its digest; with one, the digest of the fingerprint and
    the fields set (NULLs left out, so a grouped job written before rate keys keeps its
    digest too): the same idempotency_key with another group or rate_key is a different
    request. dl_enqueue() and the Python insert both wrap dl_request_fingerprint() in it, so
    it is one rule for both.
    """
    return f"""CASE WHEN {concurrency_key} IS NULL AND {rate_key} IS NULL THEN {fingerprint}
        ELSE encode(sha256(convert_to(jsonb_strip_nulls(jsonb_build_object(
            'request', {fingerprint}, 'concurrency_key', {concurrency_key},
            'concurrency_limit', {concurrency_limit}, 'rate_key', {rate_key}))::text,
            'UTF8')), 'hex') END"""


def coalescing_fingerprint(fingerprint: str, coalescing: str) -> str:
    """SQL: the fingerprint of a request with its `coalescing` flag (app.db.jobs uses it).

    Like grouped_fingerprint (which it wraps): unchanged for a request that does not
    coalesce, so every job written before coalescing existed keeps its digest; for one that
    does, another digest, so an idempotency_key reused with the other choice is a different
    request.
    """
    return f"""CASE WHEN NOT {coalescing} THEN {fingerprint}
        ELSE encode(sha256(convert_to(jsonb_build_object(
            'request', {fingerprint}, 'coalescing', true)::text, 'UTF8')), 'hex') END"""


def dependencies_fingerprint(fingerprint: str, depends_on: str, run_after: str) -> str:
    """SQL: the fingerprint of a request with its parents (app.db.jobs uses it).

    Like coalescing_fingerprint (which it wraps): unchanged for a request without
    depends_on, so every job written before dependencies existed keeps its digest; with
    them, the digest of the fingerprint, the set of parents (order and repeats do not
    matter) and run_after: the same idempotency_key with other parents is another request.
    `depends_on` is a uuid[] expression (NULL for none).
    """
    return f"""CASE WHEN {depends_on} IS NULL THEN {fingerprint}
        ELSE encode(sha256(convert_to(jsonb_build_object(
            'request', {fingerprint},
            'depends_on', to_jsonb(ARRAY(SELECT DISTINCT p FROM unnest({depends_on}) AS p
                                         ORDER BY p)),
            'run_after', {run_after})::text, 'UTF8')), 'hex') END"""


def _insert_statement(schema: str, release: int) -> str:
    """The one statement that writes the job, its event and its dispatch (like app.db.jobs)."""
    jobs = qualified(schema, "dl_jobs")
    added = [name for name, _, _ in parameters(release)[len(PARAMETERS) :]]
    group_columns = "".join(f", {name}" for name in added)
    group_values = "".join(f", dl_enqueue.{name}" for name in added)
    # Any arbiter: the idempotency_key's, or uq_dl_jobs_coalescing_queued (app.db.coalescing).
    arbiter = (
        "ON CONFLICT DO NOTHING"
        if release >= COALESCING_RELEASE
        else "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
    )
    fair = release >= FAIR_RELEASE
    deps = release >= DEPENDENCY_RELEASE
    fair_first = fair_column = fair_value = fair_join = fair_returned = ""
    if fair:
        rows = "SELECT dl_enqueue.queue AS queue, dl_enqueue.partition_key AS partition_key"
        fair_first = fairness.first_rounds_cte(schema, rows) + ","
        fair_column, fair_value, fair_returned = ", fair_round", ", f.first_round", ", fair_round"
        if deps:  # a waiting job takes its round when it is released
            fair_value = ", CASE WHEN dl_enqueue.depends_on IS NULL THEN f.first_round END"
        fair_join = (
            " LEFT JOIN fair_first f ON f.queue = dl_enqueue.queue"
            " AND f.tenant = coalesce(dl_enqueue.partition_key, '')"
        )
    status, pgq_id, returned, source = f"'{JobStatus.QUEUED.value}'", "i.pgq_id", "", "new_jobs"
    event, to_dispatch = f"'{JobEvent.QUEUED.value}'", ""
    if deps:  # a dependent is written waiting, without a dispatch
        status = (
            f"CASE WHEN dl_enqueue.depends_on IS NULL THEN '{JobStatus.QUEUED.value}'"
            f" ELSE '{JobStatus.WAITING.value}' END"
        )
        pgq_id = "CASE WHEN dl_enqueue.depends_on IS NULL THEN i.pgq_id END"
        returned, source = ", status", "to_dispatch"
        to_dispatch = f"""
    to_dispatch AS (
        SELECT * FROM new_jobs WHERE status = '{JobStatus.QUEUED.value}'
    ),"""
        event = (
            f"CASE WHEN status = '{JobStatus.QUEUED.value}' THEN '{JobEvent.QUEUED.value}'"
            f" ELSE '{JobEvent.WAITING.value}' END"
        )
    return f"""
    WITH input AS MATERIALIZED (
        SELECT {next_dispatch_id(schema)} AS pgq_id, new_id AS job_id
    ),{fair_first}
    new_jobs AS (
        INSERT INTO {jobs} (job_id, queue, task, args, idempotency_key, lock_key,
            partition_key, priority, max_attempts, lease_ttl_sec, producer, consumer_group,
            available_at, request_fingerprint, status, pgq_job_id{group_columns}{fair_column})
        SELECT i.job_id, dl_enqueue.queue, dl_enqueue.task, dl_enqueue.args,
               dl_enqueue.idempotency_key, dl_enqueue.lock_key, dl_enqueue.partition_key,
               dl_enqueue.priority, dl_enqueue.max_attempts, lease, dl_enqueue.producer,
               dl_enqueue.consumer_group, coalesce(dl_enqueue.available_at, now()),
               fingerprint, {status}, {pgq_id}{group_values}{fair_value}
        FROM input i{fair_join}
        {arbiter}
        RETURNING job_id, queue, task, priority, available_at, pgq_job_id{fair_returned}{returned}
    ),{to_dispatch}
    {dispatch_ctes(schema, source, fair=fair)},
    logged AS (
        INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
        SELECT job_id, {event}, 0,
               jsonb_build_object('queue', queue, 'task', task)
        FROM new_jobs
    )
    SELECT count(*) FROM new_jobs, {ANNOUNCED}"""


def _group_checks(refuse: str) -> str:
    """app.domain.spec's rules for a concurrency group: both fields or neither, in bounds."""
    return f"""{_optional_key_check(refuse, "concurrency_key")}
    IF dl_enqueue.concurrency_limit IS NOT NULL
       AND dl_enqueue.concurrency_limit NOT BETWEEN 1 AND {MAX_CONCURRENCY_LIMIT} THEN
        PERFORM {refuse}('concurrency_limit',
            'must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}');
    END IF;
    IF dl_enqueue.concurrency_key IS NOT NULL AND dl_enqueue.concurrency_limit IS NULL THEN
        PERFORM {refuse}('concurrency_limit', 'is required with concurrency_key');
    END IF;
    IF dl_enqueue.concurrency_limit IS NOT NULL AND dl_enqueue.concurrency_key IS NULL THEN
        PERFORM {refuse}('concurrency_key', 'is required with concurrency_limit');
    END IF;"""


def _checks(refuse: str) -> str:
    """The field rules of app.domain.spec and app.domain.idempotency, in PL/pgSQL."""
    white = _unicode_literal(PYTHON_WHITESPACE)
    name_rule = "'^[A-Za-z0-9_.:-]+$'"
    names = "letters, digits and . _ : -"
    earliest = f"{EARLIEST_AVAILABLE_AT:%Y-%m-%d}"
    latest = f"{LATEST_AVAILABLE_AT:%Y-%m-%d}"

    def name(field: str, most: int) -> str:
        return f"""
    IF dl_enqueue.{field} IS NULL OR char_length(dl_enqueue.{field}) NOT BETWEEN 1 AND {most}
       OR dl_enqueue.{field} !~ {name_rule} THEN
        PERFORM {refuse}('{field}',
            'must be 1 to {most} characters, only {names}');
    END IF;"""

    def text(field: str, most: int, *, required: bool = False, reserved: bool = False) -> str:
        missing = f"dl_enqueue.{field} IS NULL OR " if required else ""
        present = "" if required else f"dl_enqueue.{field} IS NOT NULL AND ("
        close = "" if required else ")"
        check = f"""
    IF {missing}{present}char_length(dl_enqueue.{field}) NOT BETWEEN 1 AND {most}
       OR dl_enqueue.{field} !~ ('[^' || {white} || ']'){close} THEN
        PERFORM {refuse}('{field}',
            'must be 1 to {most} characters with at least one that is not white space');
    END IF;"""
        if reserved:
            check += f"""
    IF lower(left(ltrim(dl_enqueue.{field}, {white}), {len(RESERVED_PREFIX)}))
       = '{RESERVED_PREFIX}' THEN
        PERFORM {refuse}('{field}',
            'values starting with ''{RESERVED_PREFIX}'' are reserved for the service''s own jobs');
    END IF;"""
        return check

    def between(field: str, low: int, high: int) -> str:
        return f"""
    IF dl_enqueue.{field} IS NULL OR dl_enqueue.{field} NOT BETWEEN {low} AND {high} THEN
        PERFORM {refuse}('{field}', 'must be an integer from {low} to {high}');
    END IF;"""

    return "".join(
        [
            name("queue", 100),
            name("task", 200),
            text("lock_key", 500, required=True),
            text("idempotency_key", 500, reserved=True),
            text("partition_key", 200),
            text("producer", 200, reserved=True),
            text("consumer_group", 200),
            between("priority", 0, 10_000),
            between("max_attempts", 1, 100),
            f"""
    IF dl_enqueue.lease_ttl_sec IS NOT NULL
       AND dl_enqueue.lease_ttl_sec NOT BETWEEN 1 AND 86400 THEN
        PERFORM {refuse}('lease_ttl_sec', 'must be an integer from 1 to 86400');
    END IF;
    IF dl_enqueue.available_at IS NOT NULL AND NOT (
        dl_enqueue.available_at >= '{EARLIEST_AVAILABLE_AT.isoformat()}'::timestamptz
        AND dl_enqueue.available_at < '{LATEST_AVAILABLE_AT.isoformat()}'::timestamptz) THEN
        PERFORM {refuse}('available_at',
            'must be a time between {earliest} and {latest}');
    END IF;
    IF dl_enqueue.args IS NULL OR jsonb_typeof(dl_enqueue.args) <> 'object' THEN
        PERFORM {refuse}('args', 'must be a JSON object');
    END IF;
    -- As deep as app.domain.spec allows: the args object is level 1, each nesting one more.
    IF EXISTS (
        WITH RECURSIVE walk(value, depth) AS (
            SELECT dl_enqueue.args, 1
            UNION ALL
            SELECT child.value, w.depth + 1
            FROM walk w CROSS JOIN LATERAL (
                SELECT e.value FROM jsonb_each(
                    CASE WHEN jsonb_typeof(w.value) = 'object' THEN w.value END) AS e
                UNION ALL
                SELECT a.value FROM jsonb_array_elements(
                    CASE WHEN jsonb_typeof(w.value) = 'array' THEN w.value END) AS a
            ) AS child
            WHERE w.depth <= {MAX_ARGS_DEPTH}
        )
        SELECT 1 FROM walk WHERE depth > {MAX_ARGS_DEPTH}
    ) THEN
        PERFORM {refuse}('args',
            'must be a JSON object nested at most {MAX_ARGS_DEPTH} levels deep');
    END IF;""",
        ]
    )


def _optional_key_check(refuse: str, field: str) -> str:
    """app.domain.spec's text rule of an optional key (concurrency_key, rate_key)."""
    white = _unicode_literal(PYTHON_WHITESPACE)
    return f"""
    IF dl_enqueue.{field} IS NOT NULL AND (
       char_length(dl_enqueue.{field}) NOT BETWEEN 1 AND 500
       OR dl_enqueue.{field} !~ ('[^' || {white} || ']')) THEN
        PERFORM {refuse}('{field}',
            'must be 1 to 500 characters with at least one that is not white space');
    END IF;"""


def enqueue_function(schema: str, release: int = LATEST) -> str:
    """CREATE FUNCTION dl_enqueue(...): create a job in the caller's transaction.

    Returns (job_id, status, created, coalesced, differs): a new job is `queued` and
    created; an idempotency_key already used by the same request returns that job, whatever
    its state, and writes nothing; by a different request, SQLSTATE 23505 naming the key and
    the job. With `coalescing => true` and a job of a coalescing trigger queued for the same
    queue, task and lock_key, that job is joined (app.db.coalescing): `coalesced` true,
    `differs` the fields in which it differs from this request. A field that breaks a rule
    raises SQLSTATE 22023 whose message and COLUMN name the field. `release` renders the
    version that migration installed (RELEASES): before 16, without coalescing and its OUT
    columns.
    """
    params = ",\n    ".join(
        f"{name} {kind}" + ("" if default is None else f" DEFAULT {default}")
        for name, kind, default in parameters(release)
    )
    fingerprint_args = ", ".join(
        f"{name} => " + ("lease" if name == "lease_ttl_sec" else f"dl_enqueue.{name}")
        for name, _, _ in PARAMETERS
        if name != "idempotency_key"
    )
    fingerprint = f"{quote_ident(schema)}.dl_request_fingerprint({fingerprint_args})"
    refuse = quote_ident(schema) + ".dl_enqueue_refuse"
    checks = _checks(refuse)
    if release >= 13:
        fingerprint = grouped_fingerprint(
            fingerprint,
            "dl_enqueue.concurrency_key",
            "dl_enqueue.concurrency_limit",
            "dl_enqueue.rate_key" if release >= 14 else "NULL",
        )
        checks += _group_checks(refuse)
    if release >= 14:
        checks += _optional_key_check(refuse, "rate_key")
    outs = "OUT job_id uuid, OUT status text, OUT created boolean"
    variables = ""
    insert = _insert_statement(schema, release)
    deps = release >= DEPENDENCY_RELEASE
    if release >= COALESCING_RELEASE:
        fingerprint = coalescing_fingerprint(fingerprint, "dl_enqueue.coalescing")
        checks += f"""
    IF dl_enqueue.coalescing IS NULL THEN
        PERFORM {refuse}('coalescing', 'must be true or false');
    END IF;"""
        outs += ", OUT coalesced boolean, OUT differs text[]"
        variables = "\n    queued_job record;\n    held uuid[] := '{}';\n    tries integer := 0;"
        if deps:
            fingerprint = dependencies_fingerprint(
                fingerprint, "dl_enqueue.depends_on", "dl_enqueue.run_after"
            )
            checks += _dependency_checks(schema, refuse)
            variables += "\n    missing uuid;"
        body = _coalescing_body(schema, insert, deps=deps)
    else:
        body = f"""{insert}
{_return_if_created("    ")}
    -- The key is taken (ON CONFLICT waited for its writer): by this request or another.
{_key_owner(schema, "    ")}
    job_id := owner.job_id;
    status := owner.status;
    created := false;"""
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_enqueue(
    {params},
    {outs}
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $dl_enqueue$
#variable_conflict use_column
DECLARE
    lease integer := coalesce(dl_enqueue.lease_ttl_sec, {DEFAULT_LEASE_TTL_SEC});
    fingerprint text;
    new_id uuid := gen_random_uuid();
    inserted bigint;
    owner record;{variables}
BEGIN
{checks}
    fingerprint := {fingerprint};
{body}
END
$dl_enqueue$
"""


def _return_if_created(indent: str, settle: str = "") -> str:
    """PL/pgSQL: read the insert's count into `inserted`; return the new job if it made one.

    `settle` (the statements of _settle_new, release 18 on) runs before the return.
    """
    block = f"""INTO inserted;
IF inserted = 1 THEN
    job_id := new_id;
    status := '{JobStatus.QUEUED.value}';{settle}
    created := true;
    RETURN;
END IF;"""
    return "\n".join(indent + line for line in block.splitlines())


def _key_owner(schema: str, indent: str) -> str:
    """PL/pgSQL: read the job holding the idempotency_key into `owner`; raise if another
    request made it."""
    block = f"""SELECT j.job_id, j.status, j.request_fingerprint INTO owner
FROM {qualified(schema, "dl_jobs")} j WHERE j.idempotency_key = dl_enqueue.idempotency_key;
IF owner.request_fingerprint IS NOT NULL AND owner.request_fingerprint <> fingerprint THEN
    RAISE EXCEPTION USING
        ERRCODE = '{KEY_CONFLICT_SQLSTATE}',
        CONSTRAINT = 'uq_dl_jobs_idempotency_key',
        COLUMN = 'idempotency_key',
        MESSAGE = format('idempotency_key %L is already used by job %s, created from a '
                         'different request; send the same request to get that job, '
                         'or use another key', dl_enqueue.idempotency_key, owner.job_id),
        DETAIL = format('job_id=%s', owner.job_id);
END IF;"""
    return "\n".join(indent + line for line in block.splitlines())


def _coalescing_body(schema: str, insert: str, *, deps: bool = False) -> str:
    """PL/pgSQL: insert, or find the key's job, or join the queued job (app.db.coalescing).

    With `deps` (release 18 on), a new dependent gets its edges and is settled first.
    """
    jobs = qualified(schema, "dl_jobs")
    settle = _settle_new(schema) if deps else ""

    def value(name: str) -> str:
        return "lease" if name == "lease_ttl_sec" else f"dl_enqueue.{name}"

    differs = differs_sql("j", value)
    inserted = "\n".join("    " + line if line else line for line in insert.splitlines())
    return f"""    coalesced := false;
    LOOP
{inserted}
{_return_if_created("        ", settle)}
        -- Idempotency first: a key already taken answers as it always does.
        IF dl_enqueue.idempotency_key IS NOT NULL THEN
{_key_owner(schema, "            ")}
            IF owner.job_id IS NOT NULL THEN
                job_id := owner.job_id;
                status := owner.status;
                created := false;
                RETURN;
            END IF;
        END IF;
        IF NOT dl_enqueue.coalescing THEN
            RAISE EXCEPTION 'dl_enqueue: job not created, and no job holds its key';
        END IF;
        -- The queued job of this queue, task and lock_key: joined if held since before
        -- the insert above, else held now and proven still queued by the next insert.
        SELECT j.job_id, j.attempt, {differs} AS differs INTO queued_job
        FROM {jobs} j
        WHERE j.queue = dl_enqueue.queue AND j.task = dl_enqueue.task
          AND j.lock_key = dl_enqueue.lock_key
          AND j.status = '{JobStatus.QUEUED.value}' AND j.coalescing;
        IF queued_job.job_id = ANY(held) THEN
            INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
            VALUES (queued_job.job_id, '{JobEvent.COALESCED.value}', queued_job.attempt,
                    {event_details_sql("queued_job.differs", value, "'{}'::jsonb")});
            job_id := queued_job.job_id;
            status := '{JobStatus.QUEUED.value}';
            created := false;
            coalesced := true;
            differs := queued_job.differs;
            RETURN;
        ELSIF queued_job.job_id IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock_shared({hold_key("queued_job.job_id")});
            held := held || queued_job.job_id;
        END IF;
        tries := tries + 1;
        IF tries >= {MAX_JOIN_TRIES} THEN
            RAISE EXCEPTION USING
                ERRCODE = '40001',
                MESSAGE = 'dl_enqueue: the queued job to join kept starting; try again';
        END IF;
    END LOOP;"""


def _dependency_checks(schema: str, refuse: str) -> str:
    """app.domain.spec's rules for depends_on and run_after; then the parents are locked
    and must exist (app.db.dependencies.lock_parents does the same for the Python insert)."""
    jobs = qualified(schema, "dl_jobs")
    run_after = ", ".join(f"''{value.value}''" for value in RunAfter)
    return f"""
    IF cardinality(dl_enqueue.depends_on) = 0 THEN
        dl_enqueue.depends_on := NULL;
    END IF;
    IF dl_enqueue.run_after IS NULL
       OR dl_enqueue.run_after NOT IN ({run_after.replace("''", "'")}) THEN
        PERFORM {refuse}('run_after', 'must be one of {run_after}');
    END IF;
    IF dl_enqueue.depends_on IS NULL
       AND dl_enqueue.run_after <> '{RunAfter.SUCCEEDED.value}' THEN
        PERFORM {refuse}('run_after', 'needs depends_on');
    END IF;
    IF dl_enqueue.depends_on IS NOT NULL THEN
        IF array_position(dl_enqueue.depends_on, NULL) IS NOT NULL THEN
            PERFORM {refuse}('depends_on', 'must not hold NULL');
        END IF;
        IF cardinality(dl_enqueue.depends_on) > {MAX_DEPENDS_ON} THEN
            PERFORM {refuse}('depends_on', 'must name at most {MAX_DEPENDS_ON} jobs');
        END IF;
        IF (SELECT count(DISTINCT p) FROM unnest(dl_enqueue.depends_on) AS p)
           < cardinality(dl_enqueue.depends_on) THEN
            PERFORM {refuse}('depends_on', 'must name each job once');
        END IF;
        IF dl_enqueue.coalescing THEN
            PERFORM {refuse}('coalescing', 'cannot be true for a job with depends_on');
        END IF;
        -- Marked, then locked until commit (in job_id order): a parent cannot end unseen by
        -- the release trigger between here and this job's commit.
        UPDATE {jobs} SET has_dependents = true
        WHERE job_id IN (SELECT j.job_id FROM {jobs} j
                         WHERE j.job_id = ANY(dl_enqueue.depends_on) AND NOT j.has_dependents
                         ORDER BY j.job_id FOR NO KEY UPDATE);
        PERFORM 1 FROM {jobs} j WHERE j.job_id = ANY(dl_enqueue.depends_on)
        ORDER BY j.job_id FOR SHARE;
        SELECT p INTO missing FROM unnest(dl_enqueue.depends_on) AS p
        WHERE NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.job_id = p) LIMIT 1;
        IF missing IS NOT NULL THEN
            PERFORM {refuse}('depends_on', format('no job has the id %s', missing));
        END IF;
    END IF;"""


def _settle_new(schema: str) -> str:
    """PL/pgSQL, run once a dependent was written: its edges, then its status as settled
    (waiting; queued if its parents already ended as it needs; canceled if one failed)."""
    return f"""
    IF dl_enqueue.depends_on IS NOT NULL THEN
        INSERT INTO {qualified(schema, "dl_job_dependencies")} (parent_id, child_id)
        SELECT p, new_id FROM unnest(dl_enqueue.depends_on) AS p;
        SELECT s.status INTO status
        FROM {quote_ident(schema)}.dl_settle_waiting(ARRAY[new_id]) AS s;
    END IF;"""


def refuse_function(schema: str) -> str:
    """CREATE FUNCTION dl_enqueue_refuse(field, rule): raise dl_enqueue's field error."""
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_enqueue_refuse(field text, rule text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $refuse$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = '{INVALID_FIELD_SQLSTATE}',
        COLUMN = field,
        MESSAGE = format('dl_enqueue: invalid %s: %s (field `%s`)', field, rule, field);
END
$refuse$
"""


def install_statements(schema: str, release: int = LATEST) -> list[str]:
    """The statements that (re)install the functions in `schema`, in dependency order.

    `release` renders dl_enqueue as that migration installed it (RELEASES).
    """
    return [
        fingerprint_function(schema),
        refuse_function(schema),
        enqueue_function(schema, release),
    ]


def uninstall_statements(schema: str) -> list[str]:
    """The statements that drop them."""
    s = quote_ident(schema)
    return [
        *(f"DROP FUNCTION IF EXISTS {s}.dl_enqueue({signature(r)})" for r in RELEASES),
        f"DROP FUNCTION IF EXISTS {s}.dl_enqueue_refuse(text, text)",
        f"DROP FUNCTION IF EXISTS {s}.dl_request_fingerprint(text, text, jsonb, text, text, "
        "integer, timestamptz, integer, integer, text, text)",
    ]
