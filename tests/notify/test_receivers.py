"""Each receiver type against a real server on loopback: what arrives, and how it reads."""

import asyncio

from aiosmtpd.controller import Controller
from notify_helpers import alert, free_port, write_config


def receivers_config(hook: str, slack: str, pd: str, smtp_port: int = 9) -> str:
    return f"""
receivers:
  - {{name: hook, type: webhook, url: "{hook}"}}
  - {{name: chat, type: slack, url: "{slack}", channel: "#ops"}}
  - {{name: pager, type: pagerduty, url: "{pd}", routing_key: KEY123}}
  - {{name: mail, type: email, smtp: "127.0.0.1:{smtp_port}", from: incidentd@example.com, to: [oncall@example.com]}}
notify:
  group_wait: 0s
  default: {{receivers: [hook, chat, pager]}}
"""


async def test_webhook_slack_and_pagerduty_get_the_opened_incident(tmp_path, sink, daemon_for):
    hook, slack, pd = await sink(), await sink(), await sink()
    c = await daemon_for(write_config(tmp_path, receivers_config(hook.url, slack.url, pd.url)))
    await c.post_alerts(alert(service="checkout", severity="critical"))

    [got] = await hook.wait_for(1)
    body = got["body"]
    assert body["reason"] == "opened"
    assert body["incident"]["id"] == "INC-000001"
    assert body["incident"]["severity"] == "critical"
    assert body["incident"]["alerts"][0]["labels"]["service"] == "checkout"
    assert body["links"]["incident"].endswith("/api/v1/incidents/INC-000001")
    assert "INC-000001 opened" in body["message"]
    assert got["headers"]["Idempotency-Key"] == str(body["notification_id"])

    [msg] = await slack.wait_for(1)
    assert msg["body"]["channel"] == "#ops"
    assert "INC-000001" in msg["body"]["text"] and "opened" in msg["body"]["text"]
    assert "HighErrorRate" in msg["body"]["text"]

    [event] = await pd.wait_for(1)
    assert event["body"]["event_action"] == "trigger"
    assert event["body"]["dedup_key"] == "INC-000001"
    assert event["body"]["routing_key"] == "KEY123"
    assert event["body"]["payload"]["severity"] == "critical"


async def test_pagerduty_gets_acknowledge_and_resolve_with_the_same_dedup_key(tmp_path, sink, daemon_for):
    hook, slack, pd = await sink(), await sink(), await sink()
    c = await daemon_for(write_config(tmp_path, receivers_config(hook.url, slack.url, pd.url)))
    await c.post_alerts(alert(service="checkout", severity="critical"))
    await pd.wait_for(1)
    status, _ = await c.call("POST", "/api/v1/incidents/INC-000001/ack", {"author": "alice"})
    assert status == 200
    status, _ = await c.call("POST", "/api/v1/incidents/INC-000001/resolve", {"author": "alice"})
    assert status == 200
    events = [e["body"] for e in await pd.wait_for(3)]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"INC-000001"}
    # the webhook is told about the resolve (on by default), not the ack (off by default)
    bodies = [m["body"] for m in await hook.wait_for(2)]
    assert [b["reason"] for b in bodies] == ["opened", "resolved"]


class Mailbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


async def test_email_arrives_with_plain_text_and_html(tmp_path, sink, daemon_for):
    import email

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        hook = await sink()
        text = receivers_config(hook.url, hook.url, hook.url, port).replace(
            "default: {receivers: [hook, chat, pager]}", "default: {receivers: [mail]}")
        c = await daemon_for(write_config(tmp_path, text))
        await c.post_alerts(alert(service="payments", severity="warning"))
        for _ in range(500):
            if mailbox.messages:
                break
            await asyncio.sleep(0.01)
        [env] = mailbox.messages
        assert env.rcpt_tos == ["oncall@example.com"]
        msg = email.message_from_bytes(env.content)
        assert msg["Subject"].startswith("[P3] INC-000001 opened")
        kinds = [part.get_content_type() for part in msg.walk()]
        assert "text/plain" in kinds and "text/html" in kinds
        html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_payload(decode=True)
        assert b"<h2>" in html and b"HighErrorRate" in html
    finally:
        controller.stop()


async def test_delivery_outcome_is_in_the_timeline_and_metrics(tmp_path, sink, daemon_for):
    hook, slack, pd = await sink(), await sink(), await sink()
    c = await daemon_for(write_config(tmp_path, receivers_config(hook.url, slack.url, pd.url)))
    await c.post_alerts(alert(service="checkout"))
    await hook.wait_for(1)
    await c.daemon.components.parts["notify"].deliverer.drained()
    inc = await c.until(lambda b: sum(e["kind"] == "notification" for e in b["timeline"]) >= 3,
                        "/api/v1/incidents/INC-000001")
    texts = [e["text"] for e in inc["timeline"] if e["kind"] == "notification"]
    assert any(t.startswith("notified hook (opened), attempt 1") for t in texts)
    _, metrics = await c.call("GET", "/metrics")
    assert 'incidentd_notification_attempts_total{outcome="delivered",receiver="hook"} 1.0' in metrics
