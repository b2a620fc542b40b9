"""Each receiver type against a real server on loopback: what arrives, and how it reads."""

import asyncio
import ssl
import subprocess

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from notify_helpers import alert, free_port, outbox_rows, write_config


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


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (CN and SAN) and its key, made with the openssl CLI."""
    cert, key = tmp_path / "relay.crt", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def mail_config(host: str, port: int, extra: str = "") -> str:
    return f"""
receivers:
  - {{name: mail, type: email, smtp: "{host}:{port}", from: incidentd@example.com, to: [oncall@example.com],
     starttls: true, username: alice, password: S3cret{extra}}}
notify:
  group_wait: 0s
  retry: {{max_attempts: 1}}
  default: {{receivers: [mail]}}
"""


async def test_starttls_sends_the_password_only_to_a_relay_whose_certificate_verifies(tmp_path, daemon_for):
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=authenticator)
    controller.start()
    try:
        # a certificate no system CA signed; then the private CA, for another host name
        for name, host, extra in (("untrusted", "127.0.0.1", ""), ("other-host", "localhost", f", ca_file: {cert}")):
            (tmp_path / name).mkdir()
            c = await daemon_for(write_config(tmp_path / name, mail_config(host, port, extra)))
            await c.post_alerts(alert(service="payments"))
            await c.until(lambda b: b["incidents"], "/api/v1/incidents")
            await c.daemon.components.parts["notify"].deliverer.drained()
            [row] = outbox_rows(c.daemon)
            assert row[4] == "failed", name
            [(error,)] = c.daemon.store.query("SELECT last_error FROM notify_outbox")
            assert "CERTIFICATE_VERIFY_FAILED" in error, (name, error)
            assert logins == [] and mailbox.messages == []
            await c.stop()
        (tmp_path / "trusted").mkdir()
        c = await daemon_for(write_config(tmp_path / "trusted", mail_config("127.0.0.1", port, f", ca_file: {cert}")))
        await c.post_alerts(alert(service="payments"))
        await c.until(lambda b: b["incidents"], "/api/v1/incidents")
        await c.daemon.components.parts["notify"].deliverer.drained()
        assert [r[4] for r in outbox_rows(c.daemon)] == ["delivered"]
        assert logins == [(b"alice", b"S3cret")]
        [env] = mailbox.messages
        assert env.rcpt_tos == ["oncall@example.com"]
    finally:
        controller.stop()


def test_check_config_refuses_a_ca_file_that_is_missing_or_holds_no_certificate(tmp_path):
    from daemon.cli import check_config_errors

    (tmp_path / "notes.txt").write_text("not a certificate\n")
    for ca_file, why in (("missing.pem", f"file not found: {tmp_path / 'missing.pem'}"),
                         ("notes.txt", f"cannot load {tmp_path / 'notes.txt'}: no certificate in it")):
        path = write_config(tmp_path, mail_config("127.0.0.1", 25, f", ca_file: {ca_file}"))
        assert check_config_errors(path) == [f"{path}:5: receivers[0].ca_file: {why}"]
    cert, _ = self_signed(tmp_path)
    assert check_config_errors(write_config(tmp_path, mail_config("127.0.0.1", 25, f", ca_file: {cert}"))) == []
    path = write_config(tmp_path, mail_config("127.0.0.1", 25, f", ca_file: {cert}").replace("starttls: true", 'starttls: "false"'))
    assert check_config_errors(path) == [
        f"{path}:5: receivers[0].starttls must be true or false, not 'false'",
        f"{path}:5: receivers[0].ca_file verifies the relay's STARTTLS certificate: it needs starttls: true"]


async def test_a_template_failing_at_render_time_still_notifies_with_the_built_in_text(tmp_path, sink, daemon_for):
    from structlog.testing import capture_logs

    (tmp_path / "ratio.j2").write_text("{{ incident.id }}:\n{{ incident.alerts_total // (incident.alerts_firing - 1) }}")
    hook = await sink()
    c = await daemon_for(write_config(tmp_path, f"""
receivers:
  - {{name: hook, type: webhook, url: "{hook.url}", template: ratio.j2}}
notify:
  group_wait: 0s
  default: {{receivers: [hook]}}
"""))
    with capture_logs() as logs:
        await c.post_alerts(alert(service="checkout"))  # one alert firing: 1 // 0
        [got] = await hook.wait_for(1)
    assert got["body"]["message"] == (
        "(template error: ZeroDivisionError: integer division or modulo by zero) INC-000001 opened")
    await c.daemon.components.parts["notify"].deliverer.drained()
    assert [r[4:] for r in outbox_rows(c.daemon)] == [("delivered", 1)]
    [entry] = [e for e in logs if e["event"].startswith("message template failed")]
    assert (entry["receiver"], entry["incident_id"]) == ("hook", "INC-000001")
    assert entry["template"] == f"{tmp_path / 'ratio.j2'}:2"
    assert entry["error"].startswith("ZeroDivisionError")


async def test_slack_text_escapes_what_alerts_say_and_keeps_the_template_markup(tmp_path, sink, daemon_for):
    (tmp_path / "slack.j2").write_text(
        "{% if incident.priority == 'P2' %}<!here> {% endif %}<{{ link }}|{{ incident.id }}> {{ incident.title }}"
        " {{ '<!channel>' | safe }}")
    chat, own = await sink(), await sink()
    c = await daemon_for(write_config(tmp_path, f"""
receivers:
  - {{name: chat, type: slack, url: "{chat.url}"}}
  - {{name: own, type: slack, url: "{own.url}", template: slack.j2}}
notify:
  group_wait: 0s
  external_url: https://incidentd.example
  default: {{receivers: [chat, own]}}
"""))
    said = "<!here> Q&A down, see <https://evil.example|the runbook>"
    await c.post_alerts({"labels": {"alertname": "<!channel>", "service": "qa", "severity": "critical"},
                         "annotations": {"summary": said}, "startsAt": "2026-01-01T00:00:00Z"})
    escaped = "&lt;!here&gt; Q&amp;A down, see &lt;https://evil.example|the runbook&gt;"
    link = "https://incidentd.example/api/v1/incidents/INC-000001"
    [got] = await chat.wait_for(1)
    text = got["body"]["text"]
    assert text.startswith(f"*[P2] <{link}|INC-000001> opened*: ")
    assert f"• `&lt;!channel&gt;` firing: {escaped}\n" in text
    assert "<!" not in text and "<https://evil" not in text
    [got] = await own.wait_for(1)
    assert got["body"]["text"] == f"<!here> <{link}|INC-000001> {escaped} <!channel>"  # the title is the summary


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
