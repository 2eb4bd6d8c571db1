"""HTTP layer: one package per resource (jobs, schedules, queues, system, dashboard).

Each package holds its controller (one resource per controller file) and `schemas.py`, the
one place its bodies come from. Rule, one owner per type: a body the job services also take
or return (`Job`, `JobCreate`, `Schedule`, `Queue`, ...) is a domain type, defined once in
app.domain and named after its resource, and `schemas.py` only re-exports it; `schemas.py`
defines just the bodies HTTP alone has (`JobBulkCreate`, `SchedulePage`, the probes' answers).
A class's name is its OpenAPI component name.

Shared by every resource: `auth` (scopes and the token guard), `errors` (the one mapping
from errors to answers, and the `ErrorResponse` body), `dependencies` (the one factory
handing controllers what app.asgi put on app.state) and `json_body` (the 415 check).
"""
