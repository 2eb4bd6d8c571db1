"""Built-in `email.send`: send one message through the SMTP server in the settings."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Annotated, Any

import aiosmtplib
import msgspec

from app.pipelines.context import PipelineContext
from app.pipelines.errors import DestinationRefusedError, PermanentError
from app.pipelines.registry import pipeline
from app.settings import Settings, get_settings

# A bare address: no display name, spaces, brackets or separators that could smuggle in
# another recipient or header.
Address = Annotated[
    str, msgspec.Meta(pattern=r"^[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+$", max_length=320)
]
Recipients = Annotated[list[Address], msgspec.Meta(max_length=100)]


class EmailSendArgs(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Args of `email.send`; the sender is SMTP_FROM, never an arg."""

    to: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=100)]
    cc: Recipients = []
    bcc: Recipients = []
    subject: Annotated[str, msgspec.Meta(pattern=r"^[^\r\n]*$", max_length=998)] = ""
    text: str | None = None
    html: str | None = None
    reply_to: Address | None = None

    def __post_init__(self) -> None:
        if self.text is None and self.html is None:
            # msgspec turns a ValueError here into a ValidationError, so trigger answers 400.
            raise ValueError("text or html is required")


class EmailSendError(Exception):
    """The server did not take the message this time (4xx, network, timeout): retried."""


def _domain_allowed(domain: str, allowed: list[str]) -> bool:
    """Whether `domain` is one of `allowed`: exact, `*.parent` for any name below, or `*`."""
    return any(
        entry == "*" or domain == entry or (entry.startswith("*.") and domain.endswith(entry[1:]))
        for entry in allowed
    )


def check_recipients(args: EmailSendArgs, settings: Settings) -> None:
    """Refuse the message unless every address it names is in an allowed domain.

    Raises DestinationRefusedError naming the first address refused and the setting.
    """
    allowed = settings.email_allowed_recipient_domains
    named = [*args.to, *args.cc, *args.bcc, *([args.reply_to] if args.reply_to else [])]
    for address in named:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if not _domain_allowed(domain, allowed):
            raise DestinationRefusedError(
                f"recipient {address!r} is not in a domain EMAIL_ALLOWED_RECIPIENT_DOMAINS"
                " allows" + ("" if allowed else " (it is empty: email.send sends to nobody)")
            )


async def check_email_destination(args: EmailSendArgs, settings: Settings) -> None:
    """At trigger time: every recipient is in an allowed domain."""
    check_recipients(args, settings)


def _message(args: EmailSendArgs, sender: str, ctx: PipelineContext) -> EmailMessage:
    """The MIME message: text, html, or both as multipart/alternative. Bcc stays off it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(args.to)
    if args.cc:
        message["Cc"] = ", ".join(args.cc)
    if args.reply_to:
        message["Reply-To"] = args.reply_to
    message["Subject"] = args.subject
    message["Date"] = formatdate(localtime=False)
    # The same id on every attempt, so a receiver can tell a retried message is one message.
    domain = sender.rpartition("@")[2] or "dataloader"
    message["Message-ID"] = f"<job-{ctx.job_id}@{domain}>"
    if args.text is not None:
        message.set_content(args.text)
        if args.html is not None:
            message.add_alternative(args.html, subtype="html")
    elif args.html is not None:
        message.set_content(args.html, subtype="html")
    return message


def _server(settings: Settings) -> dict[str, Any]:
    """aiosmtplib's connection keywords from the SMTP_* settings."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port,
        "use_tls": settings.smtp_security == "tls",
        # False, not None: None would let aiosmtplib upgrade whenever the server offers it.
        "start_tls": settings.smtp_security == "starttls",
        "username": settings.smtp_username,
        "password": password if settings.smtp_username else None,
        "timeout": settings.smtp_timeout_sec,
    }


def _redact(text: str, settings: Settings) -> str:
    """`text` without the SMTP password, in case a server or library quoted it."""
    if settings.smtp_password and settings.smtp_password.get_secret_value():
        text = text.replace(settings.smtp_password.get_secret_value(), "***")
    return text


def _refused(exc: aiosmtplib.SMTPRecipientsRefused) -> tuple[bool, str]:
    """Whether every refusal is permanent (5xx), and who was refused why."""
    parts = [f"{error.recipient}: {error.code} {error.message}" for error in exc.recipients]
    return all(error.code >= 500 for error in exc.recipients), "; ".join(parts)


@pipeline("email.send", args=EmailSendArgs, check_destination=check_email_destination)
async def email_send(args: EmailSendArgs, ctx: PipelineContext) -> dict[str, Any]:
    """Send the message; 5xx replies fail the job at once, 4xx and network errors retry."""
    settings = get_settings()
    if not settings.smtp_host:
        raise PermanentError("SMTP_HOST is not set")
    if not settings.smtp_from:
        raise PermanentError("SMTP_FROM is not set")
    check_recipients(args, settings)  # again: the job may predate a change of the setting
    recipients = [*args.to, *args.cc, *args.bcc]
    message = _message(args, settings.smtp_from, ctx)
    try:
        errors, _ = await aiosmtplib.send(
            message, sender=settings.smtp_from, recipients=recipients, **_server(settings)
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        permanent, who = _refused(exc)
        error = PermanentError if permanent else EmailSendError
        raise error(_redact(f"every recipient refused: {who}", settings)) from None
    except aiosmtplib.SMTPResponseException as exc:
        text = _redact(f"SMTP {exc.code} {exc.message} ({type(exc).__name__})", settings)
        raise (PermanentError if exc.code >= 500 else EmailSendError)(text) from None
    except OSError as exc:  # aiosmtplib's disconnects and timeouts are OSErrors too
        text = _redact(f"{type(exc).__name__}: {exc}", settings)
        raise EmailSendError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {text}") from None
    except aiosmtplib.SMTPException as exc:
        # What is left is the server lacking what the settings ask for (STARTTLS, AUTH).
        raise PermanentError(_redact(f"SMTP server: {exc}", settings)) from None
    # Some recipients took it: sending again would duplicate it for them, so report the rest.
    refused = {address: f"{reply.code} {reply.message}" for address, reply in errors.items()}
    return {"recipients": len(recipients) - len(refused), "refused": refused}
