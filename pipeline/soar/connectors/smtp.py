"""E-mail over SMTP with STARTTLS (`smtplib`), optional AUTH after TLS.

Settings: host, port (587), from, to (list or comma-separated), username/password, starttls (default true),
ca_file (trust a private CA), timeout. With starttls on, a server that does not offer STARTTLS is an error:
mail is never sent in clear. SMTP 4xx replies, disconnects and timeouts are retried; 5xx are not.
The mail is plain text: control and bidi characters of titles and values show as escapes (a line break in a
title cannot add a header line).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from pipeline.soar.connectors.base import Connector, ConnectorError, DryRun, Message, RetryPolicy
from pipeline.textsafe import visible


class Email(Connector):
    type = "email"
    required = ("host", "from", "to")
    markup = "text"

    @property
    def recipients(self) -> list[str]:
        to = self.settings["to"]
        return [a.strip() for a in (to.split(",") if isinstance(to, str) else to) if a.strip()]

    def build(self, msg: Message) -> EmailMessage:
        m = EmailMessage()
        m["Subject"] = visible(f"[{msg.priority}] {msg.title}")
        m["From"] = self.settings["from"]
        m["To"] = ", ".join(self.recipients)
        m["Date"] = formatdate(localtime=False)
        m["Message-ID"] = make_msgid(domain="mdr.local")
        if msg.incident_id:
            m["X-MDR-Incident"] = msg.incident_id
        m.set_content(self.body(msg.text, msg.markup))
        return m

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        mail = self.build(msg)
        if self.dry_run:
            raise DryRun(
                {
                    "method": "SMTP",
                    "url": f"smtp://{self.settings['host']}:{self.port}",
                    "body": {
                        "from": mail["From"],
                        "to": self.recipients,
                        "subject": mail["Subject"],
                        "text": self.body(msg.text, msg.markup)[:500],
                    },
                }
            )
        return self.with_retry(lambda: self._send(mail, timeout or self.timeout), retry)

    @property
    def port(self) -> int:
        return int(self.settings.get("port", 587))

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.get("ca_file"))
        if self.settings.get("verify", True) is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _send(self, mail: EmailMessage, timeout: float) -> dict[str, Any]:
        where = f"smtp {self.settings['host']}:{self.port}"
        try:
            with smtplib.SMTP(self.settings["host"], self.port, timeout=timeout) as s:
                s.ehlo()
                if self.settings.get("starttls", True):
                    s.starttls(context=self._context())
                    s.ehlo()
                if self.settings.get("username"):
                    s.login(self.settings["username"], self.settings.get("password", ""))
                refused = s.send_message(mail)
        except smtplib.SMTPNotSupportedError as e:
            raise ConnectorError(f"{where}: {e} (refusing to send without TLS)", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as e:
            codes = [c for c, _ in e.recipients.values()]
            raise ConnectorError(
                f"{where}: recipients refused {codes}", retryable=all(400 <= c < 500 for c in codes)
            ) from None
        except smtplib.SMTPResponseException as e:
            text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
            raise ConnectorError(
                f"{where}: {e.smtp_code} {self.redact(text)}",
                retryable=400 <= e.smtp_code < 500,
                status=e.smtp_code,
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            kind = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise ConnectorError(f"{where}: {self.redact(kind)}", retryable=True) from None
        return {"recipients": len(self.recipients) - len(refused), "message_id": mail["Message-ID"]}
