"""Masking of secrets in logged values."""

from __future__ import annotations

from app.observability.masking import MASK, Masker, mask_url_passwords
from app.settings import load_settings


def test_masker_masks_sensitive_keys_at_any_depth() -> None:
    masker = Masker()
    value = {
        "password": "p1",
        "DB_PASSWORD": "p2",
        "nested": {"api_key": "k1", "items": [{"Authorization": "Bearer t1"}, {"ok": 1}]},
        "X-Api-Token": "t2",
        "client_secret": "s1",
        "Cookie": "c1",
        "plain": "visible",
    }

    masked = masker.mask(value)

    assert masked == {
        "password": MASK,
        "DB_PASSWORD": MASK,
        "nested": {"api_key": MASK, "items": [{"Authorization": MASK}, {"ok": 1}]},
        "X-Api-Token": MASK,
        "client_secret": MASK,
        "Cookie": MASK,
        "plain": "visible",
    }
    assert value["password"] == "p1", "the original is left alone"


def test_masker_keeps_our_well_known_non_secret_keys() -> None:
    masker = Masker()
    value = {
        "lock_key": "customer:42",
        "idempotency_key": "cbr_2025-01-10",
        "partition_key": "2025-01-10",
        "routing_key": "order.created",
        "key": "hidden",
        "sort_key": "hidden",
    }

    assert masker.mask(value) == {
        "lock_key": "customer:42",
        "idempotency_key": "cbr_2025-01-10",
        "partition_key": "2025-01-10",
        "routing_key": "order.created",
        "key": MASK,
        "sort_key": MASK,
    }


def test_masker_extra_words_come_from_dl_log_mask_keys() -> None:
    settings = load_settings(dl_log_mask_keys="iban, Card-Number")
    masker = Masker(settings.dl_log_mask_keys)

    assert settings.dl_log_mask_keys == ["iban", "Card-Number"]
    assert masker.mask({"customer_IBAN": "DE00", "card_number": "4111", "name": "Ann"}) == {
        "customer_IBAN": MASK,
        "card_number": MASK,
        "name": "Ann",
    }


def test_masker_masks_header_pairs_and_tuples() -> None:
    masker = Masker()
    headers = [("Authorization", "Bearer x"), ("Accept", "text/plain"), ["X-Secret", "y"]]

    assert masker.mask(headers) == [
        ("Authorization", MASK),
        ("Accept", "text/plain"),
        ["X-Secret", MASK],
    ]
    assert masker.mask(({"token": "t"}, 3)) == ({"token": MASK}, 3)


def test_mask_url_passwords_hides_the_password_of_any_url_in_text() -> None:
    text = "connect postgresql://app:hunter2@db:5432/x failed; amqp://guest:guest@mq/ too"

    assert mask_url_passwords(text) == (
        "connect postgresql://app:***@db:5432/x failed; amqp://guest:***@mq/ too"
    )
    assert mask_url_passwords("http://host:8080/path") == "http://host:8080/path"
    assert Masker().mask(["redis://:pw@cache/0"]) == ["redis://:***@cache/0"]


def test_masker_masks_secret_query_parameters() -> None:
    masker = Masker()

    assert masker.mask_query("/api/v1/jobs?token=abc&status=failed") == (
        "/api/v1/jobs?token=***&status=failed"
    )
    assert masker.mask_query("/api/v1/jobs?status=failed") == "/api/v1/jobs?status=failed"
    assert masker.mask_query("/health") == "/health"
