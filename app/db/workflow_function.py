"""dl_enqueue_workflow(): create a workflow from SQL, in the caller's transaction.

`SELECT * FROM dl_enqueue_workflow('nightly', '[{"name": .., "job": {..}, "depends_on": [..],
"run_after": ..}, ..]')` takes the steps as POST /api/v1/workflows does and answers one row
per step (workflow_id, step, job_id, status). It checks the shape first (each step's keys and
types, duplicate names, a depends_on naming neither a step nor a job id, a step named twice
in one depends_on, the step cap, a cycle, named by its steps), then creates the steps in an
order where parents come first, each through dl_enqueue() with its parents' ids as
depends_on (so each step's fields follow dl_enqueue's rules, and a parent outside the
workflow must exist), and finally stamps them with the workflow's id and their names.

Errors are SQLSTATE 22023 (or the class 22 error a cast raised) whose COLUMN names the
field, `steps[i]...` counted from 0 as over HTTP. Migration 0018 installs what this module
renders; a change needs a migration that installs it again.
"""

from __future__ import annotations

from app.db.enqueue_function import PYTHON_WHITESPACE
from app.db.sql_common import qualified, quote_ident
from app.domain.dependencies import MAX_DEPENDS_ON, RunAfter
from app.domain.spec import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY
from app.domain.workflows import MAX_WORKFLOW_STEPS

STEP_KEYS = ("name", "job", "depends_on", "run_after")
# What a step's job may hold: dl_enqueue's fields but the ones a step may not use
# (idempotency and coalescing make no sense for one step of a DAG; parents are the step's).
JOB_KEYS = (
    "queue",
    "task",
    "lock_key",
    "args",
    "partition_key",
    "priority",
    "available_at",
    "max_attempts",
    "lease_ttl_sec",
    "producer",
    "consumer_group",
    "concurrency_key",
    "concurrency_limit",
    "rate_key",
)
UUID_TEXT = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
STEP_NAME = "^[A-Za-z0-9_.:-]+$"


def _list(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


def refuse_function(schema: str) -> str:
    """CREATE FUNCTION dl_enqueue_workflow_refuse(field, rule): raise the field's error."""
    return f"""
CREATE OR REPLACE FUNCTION {quote_ident(schema)}.dl_enqueue_workflow_refuse(
    field text, rule text
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $refuse$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = '22023',
        COLUMN = field,
        MESSAGE = format('dl_enqueue_workflow: invalid %s: %s (field `%s`)', field, rule, field);
END
$refuse$
"""


def workflow_function(schema: str) -> str:
    """CREATE FUNCTION dl_enqueue_workflow(name, steps): see the module docstring."""
    s = quote_ident(schema)
    jobs = qualified(schema, "dl_jobs")
    refuse = f"{s}.dl_enqueue_workflow_refuse"
    white = "U&'" + "".join(f"\\{ord(char):04x}" for char in PYTHON_WHITESPACE) + "'"
    run_after = ", ".join(f"''{value.value}''" for value in RunAfter)
    return f"""
CREATE OR REPLACE FUNCTION {s}.dl_enqueue_workflow(name text, steps jsonb)
RETURNS TABLE (workflow_id uuid, step text, job_id uuid, status text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $workflow$
#variable_conflict use_column
DECLARE
    v_workflow uuid := gen_random_uuid();
    v_n integer;
    v_step jsonb;
    v_job jsonb;
    v_field text;
    v_bad text;
    v_names text[] := '{{}}';
    -- Step-to-step parents by child, as a list per child: v_adj[v_start[i] .. + v_deg[i] - 1].
    v_adj integer[];
    v_start integer[];
    v_deg integer[];
    v_external uuid[];
    v_state integer[];
    v_order integer[] := '{{}}';
    v_path integer[] := '{{}}';
    v_next integer[] := '{{}}';
    v_top integer;
    v_node integer;
    v_parent integer;
    v_ids uuid[];
    v_parents uuid[];
    v_created record;
    v_where text;
    v_sqlstate text;
    v_message text;
    v_column text;
BEGIN
    IF dl_enqueue_workflow.name IS NULL
       OR char_length(dl_enqueue_workflow.name) NOT BETWEEN 1 AND 200
       OR dl_enqueue_workflow.name !~ ('[^' || {white} || ']') THEN
        PERFORM {refuse}('name',
            'must be 1 to 200 characters with at least one that is not white space');
    END IF;
    IF jsonb_typeof(dl_enqueue_workflow.steps) IS DISTINCT FROM 'array'
       OR jsonb_array_length(dl_enqueue_workflow.steps) NOT BETWEEN 1 AND {MAX_WORKFLOW_STEPS} THEN
        PERFORM {refuse}('steps', 'must be a JSON array of 1 to {MAX_WORKFLOW_STEPS} steps');
    END IF;
    v_n := jsonb_array_length(dl_enqueue_workflow.steps);
    FOR i IN 0 .. v_n - 1 LOOP
        v_step := dl_enqueue_workflow.steps -> i;
        v_field := format('steps[%s]', i);
        IF jsonb_typeof(v_step) IS DISTINCT FROM 'object' THEN
            PERFORM {refuse}(v_field, 'must be a JSON object');
        END IF;
        SELECT k INTO v_bad FROM jsonb_object_keys(v_step) AS k
        WHERE k <> ALL({_list(STEP_KEYS)}) ORDER BY k LIMIT 1;
        IF v_bad IS NOT NULL THEN
            PERFORM {refuse}(v_field || '.' || v_bad, 'is not a field of a step');
        END IF;
        IF jsonb_typeof(v_step -> 'name') IS DISTINCT FROM 'string'
           OR char_length(v_step ->> 'name') NOT BETWEEN 1 AND 200
           OR (v_step ->> 'name') !~ '{STEP_NAME}' THEN
            PERFORM {refuse}(v_field || '.name',
                'must be 1 to 200 characters, only letters, digits and . _ : -');
        END IF;
        IF array_position(v_names, v_step ->> 'name') IS NOT NULL THEN
            PERFORM {refuse}(v_field || '.name', format('step name %L is taken by steps[%s]',
                v_step ->> 'name', array_position(v_names, v_step ->> 'name') - 1));
        END IF;
        v_names := v_names || (v_step ->> 'name');
        IF jsonb_typeof(v_step -> 'job') IS DISTINCT FROM 'object' THEN
            PERFORM {refuse}(v_field || '.job', 'must be a JSON object');
        END IF;
        SELECT k INTO v_bad FROM jsonb_object_keys(v_step -> 'job') AS k
        WHERE k <> ALL({_list(JOB_KEYS)}) ORDER BY k LIMIT 1;
        IF v_bad IS NOT NULL THEN
            PERFORM {refuse}(v_field || '.job.' || v_bad, 'is not a field a step''s job may set');
        END IF;
        IF v_step ? 'depends_on' AND (
            jsonb_typeof(v_step -> 'depends_on') IS DISTINCT FROM 'array'
            OR jsonb_array_length(v_step -> 'depends_on') > {MAX_DEPENDS_ON}
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_step -> 'depends_on') AS d
                       WHERE jsonb_typeof(d) IS DISTINCT FROM 'string')) THEN
            PERFORM {refuse}(v_field || '.depends_on',
                'must be a JSON array of at most {MAX_DEPENDS_ON} step names or job ids');
        END IF;
        IF v_step ? 'run_after' AND (v_step ->> 'run_after') IS DISTINCT FROM 'succeeded'
           AND (v_step ->> 'run_after') IS DISTINCT FROM 'any' THEN
            PERFORM {refuse}(v_field || '.run_after', 'must be one of {run_after}');
        END IF;
        IF coalesce(jsonb_array_length(v_step -> 'depends_on'), 0) = 0
           AND coalesce(v_step ->> 'run_after', 'succeeded') <> 'succeeded' THEN
            PERFORM {refuse}(v_field || '.run_after', 'needs depends_on');
        END IF;
    END LOOP;

    -- Each depends_on entry: a step of this workflow (a name wins over an id), or a job id.
    WITH entries AS (
        SELECT (t.ord - 1)::integer AS child, (d.ord - 1)::integer AS pos, d.value AS dep,
               array_position(v_names, d.value) AS parent
        FROM jsonb_array_elements(dl_enqueue_workflow.steps) WITH ORDINALITY AS t(step, ord),
             jsonb_array_elements_text(coalesce(t.step -> 'depends_on', '[]'))
                 WITH ORDINALITY AS d(value, ord)
    ),
    problems AS (
        SELECT format('steps[%s].depends_on[%s]', e.child, e.pos) AS field,
               format('no step is named %L, and it is not a job id', e.dep) AS rule,
               e.child, e.pos
        FROM entries e WHERE e.parent IS NULL AND e.dep !~ '{UUID_TEXT}'
        UNION ALL
        SELECT format('steps[%s].depends_on[%s]', e.child, e.pos),
               format('%L is named twice', e.dep), e.child, e.pos
        FROM (SELECT e.*, row_number() OVER (PARTITION BY e.child, e.dep ORDER BY e.pos) AS n
              FROM entries e) e
        WHERE e.n > 1
    )
    SELECT p.field || E'\\x1f' || p.rule INTO v_bad FROM problems p
    ORDER BY p.child, p.pos LIMIT 1;
    IF v_bad IS NOT NULL THEN
        PERFORM {refuse}(split_part(v_bad, E'\\x1f', 1), split_part(v_bad, E'\\x1f', 2));
    END IF;
    -- The step-to-step edges as lists per child (1-based step numbers from here on).
    WITH edges AS (
        SELECT t.ord::integer AS child, array_position(v_names, d.value) AS parent
        FROM jsonb_array_elements(dl_enqueue_workflow.steps) WITH ORDINALITY AS t(step, ord),
             jsonb_array_elements_text(coalesce(t.step -> 'depends_on', '[]')) AS d(value)
        WHERE array_position(v_names, d.value) IS NOT NULL
    ),
    degrees AS (
        SELECT g.i, count(e.parent)::integer AS deg
        FROM generate_series(1, v_n) AS g(i) LEFT JOIN edges e ON e.child = g.i
        GROUP BY g.i
    ),
    starts AS (
        SELECT d.i, d.deg, (sum(d.deg) OVER (ORDER BY d.i) - d.deg + 1)::integer AS first
        FROM degrees d
    )
    SELECT (SELECT coalesce(array_agg(e.parent ORDER BY e.child, e.parent), '{{}}') FROM edges e),
           array_agg(st.first ORDER BY st.i), array_agg(st.deg ORDER BY st.i)
    INTO v_adj, v_start, v_deg
    FROM starts st;
    -- Depth-first, parents first; a parent met again on the current path closes a cycle.
    v_state := array_fill(0, ARRAY[v_n]);
    FOR root IN 1 .. v_n LOOP
        CONTINUE WHEN v_state[root] <> 0;
        v_top := 1;
        v_path[1] := root;
        v_next[1] := 0;
        v_state[root] := 1;
        WHILE v_top > 0 LOOP
            v_node := v_path[v_top];
            IF v_next[v_top] < v_deg[v_node] THEN
                v_parent := v_adj[v_start[v_node] + v_next[v_top]];
                v_next[v_top] := v_next[v_top] + 1;
                IF v_state[v_parent] = 1 THEN
                    SELECT string_agg(v_names[v_path[k]], ' -> ' ORDER BY k DESC)
                    INTO v_bad
                    FROM generate_series(array_position(v_path[1:v_top], v_parent), v_top) AS k;
                    PERFORM {refuse}('steps', format(
                        'the steps depend on each other in a cycle: %s -> %s '
                        '(each waits for the one before it)', v_bad, v_names[v_node]));
                ELSIF v_state[v_parent] = 0 THEN
                    v_state[v_parent] := 1;
                    v_top := v_top + 1;
                    v_path[v_top] := v_parent;
                    v_next[v_top] := 0;
                END IF;
            ELSE
                v_state[v_node] := 2;
                v_order := v_order || v_node;
                v_top := v_top - 1;
            END IF;
        END LOOP;
    END LOOP;

    INSERT INTO {qualified(schema, "dl_workflows")} (workflow_id, name, step_count)
    VALUES (v_workflow, dl_enqueue_workflow.name, v_n);
    v_ids := array_fill(NULL::uuid, ARRAY[v_n]);
    BEGIN
        FOREACH v_node IN ARRAY v_order LOOP
            v_where := format('steps[%s]', v_node - 1);
            v_step := dl_enqueue_workflow.steps -> (v_node - 1);
            v_job := v_step -> 'job';
            SELECT array_agg(coalesce(v_ids[array_position(v_names, d.value)], d.value::uuid)
                             ORDER BY d.ord)
            INTO v_parents
            FROM jsonb_array_elements_text(coalesce(v_step -> 'depends_on', '[]'))
                 WITH ORDINALITY AS d(value, ord);
            SELECT e.job_id, e.status INTO v_created FROM {s}.dl_enqueue(
                queue => v_job ->> 'queue',
                task => v_job ->> 'task',
                lock_key => v_job ->> 'lock_key',
                args => coalesce(v_job -> 'args', '{{}}'::jsonb),
                partition_key => v_job ->> 'partition_key',
                priority => coalesce((v_job ->> 'priority')::integer, {DEFAULT_PRIORITY}),
                available_at => (v_job ->> 'available_at')::timestamptz,
                max_attempts => coalesce((v_job ->> 'max_attempts')::integer,
                                         {DEFAULT_MAX_ATTEMPTS}),
                lease_ttl_sec => (v_job ->> 'lease_ttl_sec')::integer,
                producer => v_job ->> 'producer',
                consumer_group => v_job ->> 'consumer_group',
                concurrency_key => v_job ->> 'concurrency_key',
                concurrency_limit => (v_job ->> 'concurrency_limit')::integer,
                rate_key => v_job ->> 'rate_key',
                depends_on => v_parents,
                run_after => coalesce(v_step ->> 'run_after', 'succeeded')) AS e;
            v_ids[v_node] := v_created.job_id;
        END LOOP;
    EXCEPTION WHEN data_exception THEN
        -- One block around the loop (one subtransaction, not one per step): the step it
        -- failed on is still in v_where.
        GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                v_column = COLUMN_NAME;
        RAISE EXCEPTION USING
            ERRCODE = v_sqlstate,
            -- dl_enqueue names a job's field; the parents are the step's own.
            COLUMN = v_where || CASE WHEN v_column IN ('depends_on', 'run_after')
                                     THEN '.' || v_column
                                     WHEN coalesce(v_column, '') = '' THEN '.job'
                                     ELSE '.job.' || v_column END,
            MESSAGE = format('dl_enqueue_workflow: %s: %s', v_where, v_message);
    END;
    UPDATE {jobs} j SET workflow_id = v_workflow, step_name = n.name
    FROM unnest(v_ids, v_names) AS n(id, name)
    WHERE j.job_id = n.id;
    RETURN QUERY
        SELECT v_workflow, n.name, n.id, j.status
        FROM unnest(v_ids, v_names) WITH ORDINALITY AS n(id, name, ord)
        JOIN {jobs} j ON j.job_id = n.id
        ORDER BY n.ord;
END
$workflow$
"""


def install_statements(schema: str) -> list[str]:
    """The statements that install the function and its refusal helper."""
    return [refuse_function(schema), workflow_function(schema)]


def uninstall_statements(schema: str) -> list[str]:
    """The statements that drop them."""
    s = quote_ident(schema)
    return [
        f"DROP FUNCTION IF EXISTS {s}.dl_enqueue_workflow(text, jsonb)",
        f"DROP FUNCTION IF EXISTS {s}.dl_enqueue_workflow_refuse(text, text)",
    ]
