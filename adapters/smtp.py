"""Sending an email through the SMTP server of `SMTP_URL`, with the standard library's smtplib:
maintained with Python itself, and a blocking client suits the workers' threads.

`smtp://[user:password@]host[:port]` upgrades with STARTTLS when the server offers it (and must,
with credentials); `smtps://` speaks TLS from the start.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit


class MailRefused(Exception):
    """The server refused this message for good (a 5xx to its sender, recipient or data)."""


class MailNotSent(Exception):
    """The message could not be sent now (unreachable, 4xx, a dropped connection); try later."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://[user:password@]host:port")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            parts.hostname, parts.port or (465 if implicit_tls else 25), implicit_tls,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )


class SmtpMailer:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.server = SmtpServer.parse(url)
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as refused:
            codes = [code for code, _ in refused.recipients.values()]
            raise (MailRefused if all(code >= 500 for code in codes) else MailNotSent)(str(refused)) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as refused:
            raise (MailRefused if refused.smtp_code >= 500 else MailNotSent)(str(refused)) from None
        except (smtplib.SMTPException, OSError) as failure:
            # Authentication, connection and protocol trouble is the server's or ours, not the
            # message's: the mail waits for it to be fixed rather than being given up on.
            raise MailNotSent(f"{type(failure).__name__}: {failure}") from None

    def _connect(self) -> smtplib.SMTP:
        server, context = self.server, ssl.create_default_context()
        smtp: smtplib.SMTP
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif server.username:
                smtp.close()
                raise MailNotSent("the SMTP server does not offer STARTTLS; credentials are not sent in clear")
        if server.username:
            smtp.login(server.username, server.password or "")
        return smtp
