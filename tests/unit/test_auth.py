"""app.http.auth and the token settings: declared scopes, token matching, start-up refusal."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient

from app.asgi import create_app
from app.cli import refuse_open_exposure
from app.http.auth import TokenGuard, route_scope
from app.settings import ApiToken, Settings, SettingsError, load_settings

# Routes that need no token; everything else must declare read, write or admin.
OPEN_PATHS = ("/health", "/ready", "/dashboard", "/schema")
READ_TOKEN = "r" * 16
WRITE_TOKEN = "w" * 20
ADMIN_TOKEN = "a" * 24
TOKENS = [
    {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
    {"name": "writer", "token": WRITE_TOKEN, "scopes": ["write"]},
    {"name": "boss", "token": ADMIN_TOKEN, "scopes": ["admin"]},
]


def _settings(**overrides: object) -> Settings:
    return load_settings(
        database_url="postgresql://nobody@127.0.0.1:1/nowhere",
        api_tokens_json=json.dumps(TOKENS),
        **overrides,
    )


def test_every_route_declares_a_scope_or_is_open() -> None:
    app = create_app(_settings())
    undeclared = []
    for route in app.routes:
        for handler in route.route_handlers:
            methods = getattr(handler, "http_methods", set())
            if methods == {"OPTIONS"}:
                continue
            declared = handler.opt.get("scope")
            if declared in ("read", "write", "admin"):
                continue
            if declared == "open" and route.path.startswith(OPEN_PATHS):
                continue
            undeclared.append((route.path, sorted(methods), declared))
    assert undeclared == []


def test_route_scope_defaults_to_admin() -> None:
    class Handler:
        http_methods = {"POST"}
        opt: dict[str, object] = {}

    assert route_scope(Handler()) == "admin"  # type: ignore[arg-type]


def test_token_guard_matches_by_secret_and_grants_nested_scopes() -> None:
    guard = TokenGuard([ApiToken.model_validate(t) for t in TOKENS])
    assert guard.identify(READ_TOKEN) == ("reader", frozenset({"read"}))
    assert guard.identify(WRITE_TOKEN) == ("writer", frozenset({"read", "write"}))
    assert guard.identify(ADMIN_TOKEN) == ("boss", frozenset({"read", "write", "admin"}))
    assert guard.identify("reader") is None
    assert guard.identify(READ_TOKEN + "x") is None
    assert guard.identify("") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"name": "a", "token": "short", "scopes": ["read"]}]', "at least 16"),
        ('[{"name": "a", "token": "xxxxxxxxxxxxxxxx", "scopes": ["root"]}]', "API_TOKENS_JSON"),
        (
            '[{"name": "a", "token": "xxxxxxxxxxxxxxxx", "scopes": ["read"]},'
            ' {"name": "a", "token": "yyyyyyyyyyyyyyyy", "scopes": ["read"]}]',
            "names a token twice",
        ),
        ("not json", "API_TOKENS_JSON"),
    ],
)
def test_settings_reject_bad_tokens(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings(api_tokens_json=value)
    assert "xxxxxxxxxxxxxxxx" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_serve_refuses_open_api_off_loopback(host: str, loopback: bool) -> None:
    open_settings = load_settings(app_host=host)
    refusal = refuse_open_exposure(open_settings)
    assert (refusal is None) is loopback
    assert refuse_open_exposure(_settings(app_host=host)) is None


def test_guard_answers_401_and_403_with_json() -> None:
    with TestClient(create_app(_settings())) as client:
        response = client.post("/api/v1/queues/q/pause")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["status_code"] == 401
        response = client.post(
            "/api/v1/queues/q/pause", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
        )
        assert response.status_code == 403
        assert "admin" in response.json()["detail"]
        assert client.get("/health").status_code == 200
        assert client.get("/schema/openapi.json").status_code == 200
