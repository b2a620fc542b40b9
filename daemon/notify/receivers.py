"""Receivers: how a notification message reaches a webhook, Slack, PagerDuty or email.

Each receiver turns a stored message (the incident snapshot and the reason)
into one request and raises `DeliveryError` when it did not get through.
`retryable=False` is for answers that a retry cannot fix (a 4xx other than
408/429): the message is given up at once instead of blocking its incident.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

import yarl

from daemon.notify.config import ReceiverConfig
from daemon.notify.templates import Templates, context, render

if TYPE_CHECKING:  # HTTP delivery loads aiohttp with the daemon's session
    import aiohttp

USER_AGENT = "incidentd-notify/1"
_PD_SEVERITY = {"critical": "critical", "page": "critical", "error": "error", "warning": "warning"}


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Receiver(Protocol):
    name: str
    config: ReceiverConfig

    async def send(self, message: dict[str, Any]) -> None: ...


def origin(url: str) -> str:
    """`scheme://host:port` of a receiver URL: all that a delivery error says of it, since
    its path or query (Slack's /services/T/B/<secret>) or user:password may be a secret."""
    try:
        u = yarl.URL(url)
        return f"{u.scheme}://{u.host}:{u.port}" if u.host else "<receiver URL>"
    except ValueError:
        return "<receiver URL>"


def redact(text: str, url: str) -> str:
    """`text` with the receiver URL in it replaced by its origin; when its path, query or
    password shows up some other way, the text is withheld."""
    try:
        u = yarl.URL(url)
    except ValueError:  # not one check-config let through; its path is what follows the host
        spellings, secrets = {url}, {url.partition("://")[2].partition("/")[2]} - {""}
    else:
        spellings = {url, str(u), u.human_repr()}
        secrets = {p for p in (u.raw_path, u.path, u.raw_query_string, u.query_string, u.raw_password, u.password)
                   if p and p != "/"}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, origin(url))
    if any(secret in text for secret in secrets):
        return "(detail withheld: it names the receiver URL)"
    return text


def webhook_body(message: dict[str, Any], receiver: str, text: str) -> dict[str, Any]:
    """The generic webhook's JSON: the incident, why this notification, links and a readable text."""
    inc = message["incident"]
    return {
        "version": "1",
        "notification_id": message["id"],
        "receiver": receiver,
        "reason": message["reason"],
        "detail": message.get("detail", {}),
        "incident": inc,
        "links": {"incident": message.get("link", "")},
        "message": text,
    }


def pagerduty_body(message: dict[str, Any], rc: ReceiverConfig, summary: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 event: one dedup key per incident, so trigger,
    acknowledge and resolve act on the same alert there."""
    inc = message["incident"]
    reason = message["reason"]
    action = {"acknowledged": "acknowledge", "resolved": "resolve", "merged": "resolve"}.get(reason, "trigger")
    body: dict[str, Any] = {"routing_key": rc.routing_key, "event_action": action, "dedup_key": inc["id"]}
    if action == "trigger":
        body["payload"] = {
            "summary": summary[:1024],
            "source": inc.get("root_cause") or "incidentd",
            "severity": _PD_SEVERITY.get(inc.get("severity", ""), "info"),
            "timestamp": inc.get("opened_at"),
            "component": inc.get("root_cause"),
            "group": inc.get("team"),
            "class": inc.get("priority"),
            "custom_details": {"reason": reason, "impacted": inc.get("impacted", []),
                               "alerts": inc.get("alerts_total"), "state": inc.get("state")},
        }
        if message.get("link"):
            body["links"] = [{"href": message["link"], "text": f"incidentd {inc['id']}"}]
    return body


class HttpReceiver:
    """webhook, slack and pagerduty: one JSON POST per message."""

    def __init__(self, rc: ReceiverConfig, session: aiohttp.ClientSession) -> None:
        self.name = rc.name
        self.config = rc
        self.templates = Templates.for_receiver(rc)
        self.session = session

    def body(self, message: dict[str, Any]) -> dict[str, Any]:
        rc = self.config
        text = render(self.templates.text, context(message, rc.name))
        if rc.type == "slack":
            body: dict[str, Any] = {"text": text, "mrkdwn": True}
            if rc.channel:
                body["channel"] = rc.channel
            return body
        if rc.type == "pagerduty":
            summary = render(self.templates.subject, context(message, rc.name))
            return pagerduty_body(message, rc, summary)
        return webhook_body(message, rc.name, text)

    async def send(self, message: dict[str, Any]) -> None:
        import aiohttp

        rc = self.config
        headers = {"User-Agent": USER_AGENT, "Idempotency-Key": str(message["id"]), **rc.headers}
        try:
            # a redirect is not followed: it would turn the POST into a GET without the message
            async with self.session.post(rc.url, json=self.body(message), headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=rc.timeout)) as resp:
                if 300 <= resp.status < 400:  # neither the Location nor the body: they may hold a secret URL
                    raise DeliveryError(f"HTTP {resp.status}: redirected, not followed")
                text = await resp.text()
                if resp.status >= 300:
                    retryable = resp.status >= 500 or resp.status in (408, 429)
                    # a body may echo the request ("Cannot POST /services/T/B/<secret>")
                    raise DeliveryError(f"HTTP {resp.status}: {redact(text, rc.url)[:200]}", retryable)
        except TimeoutError:
            raise DeliveryError(f"timed out after {rc.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {redact(str(exc), rc.url)}") from None


class EmailReceiver:
    """Email over SMTP: plain text and HTML alternatives. smtplib runs in a
    thread, with the receiver's timeout on the connection. With `starttls`, the
    server's certificate and host name are verified (against `ca_file` if set)
    before the password is sent."""

    def __init__(self, rc: ReceiverConfig) -> None:
        self.name = rc.name
        self.config = rc
        self.templates = Templates.for_receiver(rc)

    def build(self, message: dict[str, Any]) -> EmailMessage:
        rc = self.config
        ctx = context(message, rc.name)
        msg = EmailMessage()
        msg["Subject"] = " ".join(render(self.templates.subject, ctx).split())[:250]
        msg["From"] = rc.sender
        msg["To"] = ", ".join(rc.to)
        msg["X-Incidentd-Notification"] = str(message["id"])
        msg.set_content(render(self.templates.text, ctx))
        msg.add_alternative(render(self.templates.html, ctx), subtype="html")
        return msg

    def _send_sync(self, msg: EmailMessage) -> None:
        rc = self.config
        with smtplib.SMTP(rc.smtp_host, rc.smtp_port, timeout=rc.timeout) as smtp:
            if rc.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=rc.ca_file))
            if rc.username:
                smtp.login(rc.username, rc.password or "")
            smtp.send_message(msg)

    async def send(self, message: dict[str, Any]) -> None:
        msg = self.build(message)
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send_sync, msg), self.config.timeout + 1)
        except TimeoutError:
            raise DeliveryError(f"SMTP timed out after {self.config.timeout:g}s") from None
        except smtplib.SMTPResponseException as exc:
            # 4xx is transient (try again later), 5xx permanent
            raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", exc.smtp_code < 500) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP: {exc}") from None


def make_receiver(rc: ReceiverConfig, session: aiohttp.ClientSession) -> Receiver:
    if rc.type == "email":
        return EmailReceiver(rc)
    return HttpReceiver(rc, session)
