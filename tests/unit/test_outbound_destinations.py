"""Destinations a job may name: credential URL prefixes, mail domains, broker exchanges."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.domain.errors import InvalidJobError
from app.jobs.validation import check_destinations
from app.pipelines.email_send import EmailSendArgs, check_recipients
from app.pipelines.errors import DestinationRefusedError
from app.pipelines.rabbitmq_publish import RabbitmqPublishArgs, check_exchange
from app.settings import Settings, SettingsError, UrlPrefix, load_settings
from tests.support.specs import echo_spec

PARTNER = "https://api.partner.example/hooks/"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.partner.example/hooks/",
        "https://api.partner.example/hooks/orders?id=1",
        "https://API.Partner.example:443/hooks/a/b",
        "https://user@api.partner.example/hooks/x",
    ],
)
def test_url_prefix_matches_urls_below_it(url: str) -> None:
    assert UrlPrefix.parse(PARTNER).matches(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.partner.example.evil.com/hooks/",  # a longer host, same start
        "https://evil.com/api.partner.example/hooks/",
        "https://api.partner.example@evil.com/hooks/",  # user info, then another host
        "https://api.partner.example\\@evil.com/hooks/",  # httpx reads evil.com as the host
        "http://api.partner.example/hooks/",  # another scheme
        "https://api.partner.example:8443/hooks/",  # another port
        "https://api.partner.example/hooksmith/",  # not at a segment boundary
        "https://api.partner.example/hooks/../admin",  # normalised to /admin
        "https://api.partner.example/",
        "https://xapi.partner.example/hooks/",
        "not a url",
    ],
)
def test_url_prefix_refuses_urls_outside_it(url: str) -> None:
    assert not UrlPrefix.parse(PARTNER).matches(url)


def test_url_prefix_path_is_a_whole_segment_with_or_without_its_slash() -> None:
    with_slash = UrlPrefix.parse("https://h.example/hooks/")
    without = UrlPrefix.parse("https://h.example/hooks")

    assert not with_slash.matches("https://h.example/hooks")
    assert without.matches("https://h.example/hooks")
    assert without.matches("https://h.example/hooks/a")
    assert not without.matches("https://h.example/hooksmith")


def test_url_prefix_of_a_host_covers_only_that_host_and_port() -> None:
    prefix = UrlPrefix.parse("http://127.0.0.1:8080")

    assert prefix.matches("http://127.0.0.1:8080/any/path")
    assert not prefix.matches("http://127.0.0.1:8081/")
    assert not prefix.matches("http://127.0.0.1/")


@pytest.mark.parametrize(
    "text", ["ftp://x/", "api.partner.example/hooks", "https://x/?q=1", "https://u:p@x/"]
)
def test_url_prefix_rejects_what_cannot_be_a_prefix(text: str) -> None:
    with pytest.raises(ValueError, match="must"):
        UrlPrefix.parse(text)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"partner": {"Authorization": "Bearer x"}}, 'needs "headers" and "urls"'),
        ({"partner": {"headers": {"Authorization": "x"}}}, 'needs "headers" and "urls"'),
        ({"partner": {"headers": {"A": "x"}, "urls": []}}, "at least one URL prefix"),
        ({"partner": {"headers": {"A": "x"}, "urls": ["ftp://x/"]}}, "http:// or https://"),
    ],
)
def test_credentials_without_url_prefixes_fail_at_start_naming_the_setting(
    value: dict[str, Any], words: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(http_callback_credentials_json=json.dumps(value))

    assert str(caught.value).startswith("invalid setting HTTP_CALLBACK_CREDENTIALS_JSON: ")
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def _settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


async def test_credentials_for_another_url_are_refused_at_trigger() -> None:
    credentials = {"partner": {"headers": {"Authorization": "Bearer s3cret"}, "urls": [PARTNER]}}
    settings = _settings(http_callback_credentials_json=json.dumps(credentials))
    spec = echo_spec(
        task="http.callback",
        args={"url": "https://api.partner.example.evil.com/hooks/", "credentials": "partner"},
    )

    with pytest.raises(InvalidJobError) as caught:
        await check_destinations([spec], settings)

    assert caught.value.message == (
        "args of task 'http.callback': credentials 'partner' may not be sent to this url: it"
        " is under none of the URL prefixes HTTP_CALLBACK_CREDENTIALS_JSON binds them to"
    )
    assert "s3cret" not in caught.value.message


async def test_a_refused_item_of_a_bulk_trigger_is_named() -> None:
    specs = [
        echo_spec(task="http.callback", args={"url": "http://8.8.8.8/"}),
        echo_spec(task="http.callback", args={"url": "http://169.254.169.254/latest/"}),
    ]

    with pytest.raises(InvalidJobError) as caught:
        await check_destinations(specs, _settings(), bulk=True)

    assert caught.value.message.startswith(
        "jobs[1]: args of task 'http.callback': url host 169.254.169.254 is a link-local"
    )


def _mail(**fields: Any) -> EmailSendArgs:
    return EmailSendArgs(**{"to": ["ann@example.com"], "text": "hi", **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"to": ["Ann@EXAMPLE.com"]},
        {"cc": ["b@sub.partner.example"]},
        {"bcc": ["c@deep.sub.partner.example"], "reply_to": "d@example.com"},
    ],
)
def test_email_recipients_in_allowed_domains_pass(fields: dict[str, Any]) -> None:
    settings = _settings(email_allowed_recipient_domains="example.com,*.partner.example")

    check_recipients(_mail(**fields), settings)


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"to": ["ann@example.org"]}, "ann@example.org"),
        ({"cc": ["b@example.com.evil.org"]}, "b@example.com.evil.org"),
        ({"bcc": ["c@partner.example"]}, "c@partner.example"),  # *. covers names below only
        ({"bcc": ["c@evilpartner.example"]}, "c@evilpartner.example"),
        ({"reply_to": "x@evil.org"}, "x@evil.org"),
    ],
)
def test_email_recipients_outside_allowed_domains_are_refused(
    fields: dict[str, Any], refused: str
) -> None:
    settings = _settings(email_allowed_recipient_domains="example.com,*.partner.example")

    with pytest.raises(DestinationRefusedError) as caught:
        check_recipients(_mail(**fields), settings)

    assert str(caught.value) == (
        f"recipient {refused!r} is not in a domain EMAIL_ALLOWED_RECIPIENT_DOMAINS allows"
    )


def test_email_with_no_allowed_domain_sends_to_nobody_unless_star() -> None:
    with pytest.raises(DestinationRefusedError, match=r"it is empty: email\.send sends to nobody"):
        check_recipients(_mail(), _settings())
    check_recipients(_mail(to=["a@anywhere.test"]), _settings(email_allowed_recipient_domains="*"))


def _publish(**fields: Any) -> RabbitmqPublishArgs:
    return RabbitmqPublishArgs(**{"routing_key": "orders.created", "body": "x", **fields})


def test_rabbitmq_exchanges_and_routing_keys_are_allow_listed() -> None:
    settings = _settings(
        rabbitmq_allowed_exchanges="orders,events.*",
        rabbitmq_allowed_routing_keys="orders.*,audit",
    )

    check_exchange(_publish(exchange="orders"), settings)
    check_exchange(_publish(exchange="events.eu", routing_key="audit"), settings)
    with pytest.raises(DestinationRefusedError) as default:
        check_exchange(_publish(), settings)
    with pytest.raises(DestinationRefusedError) as other:
        check_exchange(_publish(exchange="amq.topic"), settings)
    with pytest.raises(DestinationRefusedError) as key:
        check_exchange(_publish(exchange="orders", routing_key="payments.made"), settings)

    assert str(default.value) == "exchange 'amq.default' is not in RABBITMQ_ALLOWED_EXCHANGES"
    assert str(other.value) == "exchange 'amq.topic' is not in RABBITMQ_ALLOWED_EXCHANGES"
    assert str(key.value) == (
        "routing key 'payments.made' matches no pattern of RABBITMQ_ALLOWED_ROUTING_KEYS"
    )


def test_rabbitmq_with_no_allowed_exchange_publishes_nowhere() -> None:
    with pytest.raises(DestinationRefusedError, match=r"it is empty: rabbitmq\.publish publishes"):
        check_exchange(_publish(exchange="orders"), _settings())
    check_exchange(_publish(), _settings(rabbitmq_allowed_exchanges="amq.default"))
