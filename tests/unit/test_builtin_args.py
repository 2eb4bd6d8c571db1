"""Args of the built-in pipelines: what a trigger accepts, and the 400 for what it does not."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.errors import InvalidJobError
from app.jobs.validation import check_spec
from app.pipelines.email_send import EmailSendArgs
from app.pipelines.errors import InvalidArgsError
from app.pipelines.http_callback import HttpCallbackArgs
from app.pipelines.rabbitmq_publish import RabbitmqPublishArgs, _redact, _secrets
from app.pipelines.registry import convert_args
from tests.support.specs import echo_spec


def rejected(task: str, args: dict[str, Any]) -> str:
    """The message check_spec gives for these args (it must reject them)."""
    with pytest.raises(InvalidJobError) as caught:
        check_spec(echo_spec(task=task, args=args))
    return caught.value.message


def test_http_callback_args_defaults() -> None:
    args = convert_args("http.callback", {"url": "https://example.com/hook"})

    assert args == HttpCallbackArgs(url="https://example.com/hook")
    assert (args.method, args.data, args.headers, args.timeout_sec) == ("POST", None, {}, 30.0)
    assert args.credentials is None


def test_http_callback_args_accept_object_or_string_data() -> None:
    as_json = convert_args("http.callback", {"url": "http://x/a", "data": {"n": [1, 2]}})
    as_text = convert_args("http.callback", {"url": "http://x/a", "data": "raw"})

    assert as_json.data == {"n": [1, 2]}
    assert as_text.data == "raw"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"url": "ftp://example.com/x"}, "$.url"),
        ({"url": "example.com"}, "$.url"),
        ({"url": "http://"}, "$.url"),
        ({"url": "http://x", "method": "TRACE"}, "$.method"),
        ({"url": "http://x", "method": "post"}, "$.method"),
        ({"url": "http://x", "data": [1, 2]}, "$.data"),
        ({"url": "http://x", "timeout_sec": 0}, "$.timeout_sec"),
        ({"url": "http://x", "headers": {"X-A": "1\r\nX-B: 2"}}, "$.headers"),
        ({"url": "http://x", "headers": {"bad name": "1"}}, "$.headers"),
        ({"url": "http://x", "extra": 1}, "unknown field `extra`"),
        ({"data": "x"}, "missing required field `url`"),
    ],
)
def test_http_callback_bad_args_are_rejected_at_trigger(
    args: dict[str, Any], fragment: str
) -> None:
    message = rejected("http.callback", args)

    assert "invalid args for task 'http.callback'" in message
    assert fragment in message


def test_rabbitmq_publish_args_defaults() -> None:
    args = convert_args("rabbitmq.publish", {"routing_key": "q", "body": {"a": 1}})

    assert args == RabbitmqPublishArgs(routing_key="q", body={"a": 1})
    assert (args.exchange, args.headers, args.persistent, args.content_type) == ("", {}, True, None)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"body": "x"}, "missing required field `routing_key`"),
        ({"routing_key": "q"}, "missing required field `body`"),
        ({"routing_key": "q", "body": [1]}, "$.body"),
        ({"routing_key": "q", "body": "x", "headers": {"h": [1]}}, "$.headers"),
        ({"routing_key": "q", "body": "x", "persistent": "yes"}, "$.persistent"),
        ({"routing_key": "q", "body": "x", "url": "amqp://x"}, "unknown field `url`"),
    ],
)
def test_rabbitmq_publish_bad_args_are_rejected_at_trigger(
    args: dict[str, Any], fragment: str
) -> None:
    assert fragment in rejected("rabbitmq.publish", args)


def test_rabbitmq_redaction_removes_url_and_password_in_every_spelling() -> None:
    url = "amqp://app:p%40ss%2Fw0rd@broker:5672/vhost"
    secrets = _secrets(url)
    text = f"could not connect to {url} (password p@ss/w0rd, quoted p%40ss%2Fw0rd)"

    redacted = _redact(text, secrets)

    assert "p@ss/w0rd" not in redacted
    assert "p%40ss%2Fw0rd" not in redacted
    assert "broker" not in redacted  # the whole URL went


def test_email_send_args_defaults() -> None:
    args = convert_args("email.send", {"to": ["a@example.com"], "text": "hi"})

    assert args == EmailSendArgs(to=["a@example.com"], text="hi")
    assert (args.cc, args.bcc, args.subject, args.html, args.reply_to) == ([], [], "", None, None)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"to": ["a@example.com"]}, "text or html is required"),
        ({"to": [], "text": "x"}, "$.to"),
        ({"to": [f"u{i}@example.com" for i in range(101)], "text": "x"}, "$.to"),
        ({"to": ["not-an-address"], "text": "x"}, "$.to[0]"),
        ({"to": ["a@example.com, b@example.com"], "text": "x"}, "$.to[0]"),
        ({"to": ["Ann <a@example.com>"], "text": "x"}, "$.to[0]"),
        ({"to": ["a@example.com"], "cc": ["bad"], "text": "x"}, "$.cc[0]"),
        ({"to": ["a@example.com"], "subject": "a\r\nBcc: x@y.z", "text": "x"}, "$.subject"),
        ({"to": ["a@example.com"], "text": "x", "from": "me@example.com"}, "unknown field `from`"),
        ({"to": "a@example.com", "text": "x"}, "$.to"),
    ],
)
def test_email_send_bad_args_are_rejected_at_trigger(args: dict[str, Any], fragment: str) -> None:
    assert fragment in rejected("email.send", args)


def test_convert_args_raises_invalid_args_error_the_worker_treats_as_permanent() -> None:
    with pytest.raises(InvalidArgsError, match=r"email\.send"):
        convert_args("email.send", {"to": ["a@example.com"]})


@pytest.mark.parametrize(
    "url", ["http://exa mple.com/", "http://example.com:99999/", "http://x:abc/", "http://:80/"]
)
def test_http_callback_url_checks_beyond_the_pattern(url: str) -> None:
    assert "url" in rejected("http.callback", {"url": url})
