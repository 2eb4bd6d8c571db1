"""Built-in `email.send` through real `pgq run` workers against a real local SMTP server."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import smtp_server, where_secret_appears
from tests.support.workers import WorkerFleet

TIMEOUT = 30
SENDER = "dataloader@example.com"


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    """Worker settings for a plain-text SMTP server on 127.0.0.1:<port>."""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": SENDER,
        "SMTP_TIMEOUT_SEC": "5",
        "EMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com",
        **extra,
    }


def parse(content: bytes) -> EmailMessage:
    """The received message as an EmailMessage."""
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_email_send_delivers_text_and_html_as_alternatives(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    with smtp_server() as server:
        await fleet.start_ready(env=smtp_env(server.port))
        job_id = await jobs_db.enqueue(
            "email.send",
            {
                "to": ["ann@example.com", "bob@example.com"],
                "cc": ["carl@example.com"],
                "bcc": ["dora@example.com"],
                "subject": "Report ready: Ünïcode ✓",
                "text": "Hello, the report is ready.",
                "html": "<p>Hello, the <b>report</b> is ready.</p>",
                "reply_to": "help@example.com",
            },
        )
        done = await jobs_db.wait_status(
            job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

    assert done["attempt"] == 1
    assert done["result"] == {"recipients": 4, "refused": {}}
    [mail] = server.messages
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == [
        "ann@example.com",
        "bob@example.com",
        "carl@example.com",
        "dora@example.com",
    ]
    message = parse(mail.content)
    assert message["From"] == SENDER
    assert message["To"] == "ann@example.com, bob@example.com"
    assert message["Cc"] == "carl@example.com"
    assert message["Bcc"] is None, "bcc recipients stay off the message"
    assert message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Report ready: Ünïcode ✓"
    assert message["Message-ID"] == f"<job-{job_id}@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().strip() == "Hello, the report is ready."
    assert html.get_content().strip() == "<p>Hello, the <b>report</b> is ready.</p>"


async def test_email_send_html_only_is_a_single_html_part(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    with smtp_server() as server:
        await fleet.start_ready(env=smtp_env(server.port))
        job_id = await jobs_db.enqueue(
            "email.send", {"to": ["ann@example.com"], "subject": "s", "html": "<i>hi</i>"}
        )
        await jobs_db.wait_status(
            job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

    message = parse(server.messages[0].content)
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<i>hi</i>"


# The test server takes AUTH over plain text (no certificate to set up on loopback).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_email_send_authenticates_and_never_shows_the_password(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with smtp_server(login=("mailer", password)) as server:
        env = smtp_env(server.port, SMTP_USERNAME="mailer", SMTP_PASSWORD=password)
        worker = await fleet.start_ready(env=env)
        sent = await jobs_db.enqueue("email.send", {"to": ["ann@example.com"], "text": "hi"})
        await jobs_db.wait_status(sent, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)

        # The same server refusing a wrong password: 535 is permanent.
        wrong = await fleet.start_ready(
            env=smtp_env(server.port, SMTP_USERNAME="mailer", SMTP_PASSWORD=password + "-old"),
            queues={"mail.wrong": 1},
        )
        refused = await jobs_db.enqueue(
            "email.send", {"to": ["ann@example.com"], "text": "hi"}, queue="mail.wrong"
        )
        failed = await jobs_db.wait_status(
            refused, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

    [mail] = server.messages
    assert mail.login == "mailer"
    assert failed["attempt"] == 1
    assert failed["error"].startswith("PermanentError: SMTP 535")
    logs = {"worker": worker.log(), "wrong": wrong.log()}
    assert await where_secret_appears(jobs_db, password, logs) == []


async def test_email_send_refused_recipient_fails_at_once(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    with smtp_server(refuse={"gone@example.com", "old@example.com"}) as server:
        await fleet.start_ready(env=smtp_env(server.port))
        all_refused = await jobs_db.enqueue(
            "email.send", {"to": ["gone@example.com"], "text": "hi"}, max_attempts=5
        )
        some_refused = await jobs_db.enqueue(
            "email.send", {"to": ["ann@example.com", "old@example.com"], "text": "hi"}
        )
        failed = await jobs_db.wait_status(
            all_refused, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )
        partial = await jobs_db.wait_status(
            some_refused, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

    assert failed["attempt"] == 1
    assert failed["error"] == (
        "PermanentError: every recipient refused: gone@example.com: 550 5.1.1 mailbox unavailable"
    )
    assert await jobs_db.event_names(all_refused) == ["queued", "started", "failed"]
    # Delivered to one of two: a retry would send it twice to her, so the job reports the rest.
    assert partial["result"] == {
        "recipients": 1,
        "refused": {"old@example.com": "550 5.1.1 mailbox unavailable"},
    }
    [mail] = server.messages
    assert mail.rcpt_tos == ["ann@example.com"]


async def test_email_send_server_down_is_retried(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    port = free_port()
    await fleet.start_ready(env=smtp_env(port))
    job_id = await jobs_db.enqueue(
        "email.send", {"to": ["ann@example.com"], "text": "hi"}, max_attempts=2
    )

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert failed["attempt"] == 2
    assert failed["error"].startswith(f"EmailSendError: SMTP 127.0.0.1:{port}: SMTPConnectError")
    assert await jobs_db.event_names(job_id) == [
        "queued",
        "started",
        "retry_scheduled",
        "started",
        "failed",
    ]


async def test_email_send_without_smtp_host_fails_at_once(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready(env={"SMTP_HOST": ""})
    job_id = await jobs_db.enqueue("email.send", {"to": ["a@example.com"], "text": "x"})

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert (failed["attempt"], failed["error"]) == (1, "PermanentError: SMTP_HOST is not set")
