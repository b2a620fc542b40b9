"""API security over real HTTP: missing, wrong, wrong-role and right tokens for
each protected endpoint; open endpoints; the token's name as the actor; rate
and body limits; TLS; `hash-token`."""

import asyncio
import json
import ssl
import subprocess
import sys

import aiohttp
import pytest
from notify_helpers import alert, write_config

from daemon.auth import hash_token

TOKENS = {"ingest": "in-secret", "responder": "resp-secret", "admin": "adm-secret"}

AUTH = f"""
auth:
  tokens:
    - {{name: alertmanager, role: ingest, token_sha256: {hash_token(TOKENS["ingest"])}}}
    - {{name: alice, role: responder, token_sha256: {hash_token(TOKENS["responder"])}}}
    - {{name: root, role: admin, token_sha256: {hash_token(TOKENS["admin"])}}}
    - {{name: tiny, role: ingest, token_sha256: {hash_token("tiny")}, rate_limit: 1, burst: 2, max_body_bytes: 300}}
"""

# (method, path, body, role that may call it)
ENDPOINTS = [
    ("POST", "/api/v1/alerts", [alert("A", service="s")], "ingest"),
    ("POST", "/api/v2/alerts", [alert("B", service="s")], "ingest"),
    ("POST", "/api/v1/alerts/alertmanager", {"version": "4", "status": "firing", "receiver": "x",
                                             "alerts": [{**alert("C"), "status": "firing"}]}, "ingest"),
    ("POST", "/api/v1/samples", [], "ingest"),
    ("POST", "/api/v1/incidents/INC-000001/notes", {"text": "looking"}, "responder"),
    ("POST", "/api/v1/incidents/INC-000001/ack", {}, "responder"),
    ("POST", "/api/v1/incidents/INC-000001/resolve", {}, "responder"),
    ("POST", "/api/v1/incidents/INC-000001/merge", {"incidents": ["INC-000002"]}, "responder"),
    ("POST", "/api/v1/incidents/INC-000001/split", {"alerts": ["0"]}, "responder"),
    ("GET", "/api/v1/incidents", None, "responder"),
    ("GET", "/api/v1/incidents/INC-000001", None, "responder"),
    ("GET", "/api/v1/stats?since=24h", None, "responder"),
    ("POST", "/-/reload", None, "admin"),
]


@pytest.fixture
async def secured(tmp_path, daemon_for):
    c = await daemon_for(write_config(tmp_path, AUTH))
    status, _ = await c.call("POST", "/api/v1/alerts", [alert("Seed", service="s")], token=TOKENS["ingest"])
    assert status == 200
    for _ in range(200):
        if c.daemon.incidents.get("INC-000001"):
            break
        await asyncio.sleep(0.01)
    return c


@pytest.mark.parametrize(("method", "path", "body", "role"), ENDPOINTS)
async def test_each_protected_endpoint_needs_a_valid_token_with_the_right_role(secured, method, path, body, role):
    c = secured
    status, resp = await c.call(method, path, body)
    assert status == 401 and resp["error"] == "authentication required"
    status, resp = await c.call(method, path, body, token="not-a-token")
    assert status == 401 and resp["error"] == "invalid token"
    wrong = "ingest" if role != "ingest" else "responder"
    status, resp = await c.call(method, path, body, token=TOKENS[wrong])
    assert status == 403, resp
    status, resp = await c.call(method, path, body, token=TOKENS[role])
    assert status not in (401, 403), resp
    status, resp = await c.call(method, path, body, token=TOKENS["admin"])
    assert status not in (401, 403), resp


async def test_a_token_with_bytes_that_are_not_utf8_is_just_invalid(secured):
    host, port = secured.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/v1/incidents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Authorization: Bearer resp-secret\xe9\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 ") and b'"invalid token"' in answer


async def _raw(c, data: bytes) -> bytes:
    host, port = c.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/v1/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer resp-secret\x01\r\n\r\n",
    b"GET /api/v1/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer resp-secret" + b"x" * 9000 + b"\r\n\r\n",
    b"GET /api/v1/incidents HTTP/1.1\r\nHost: x\r\nAuthorization resp-secret\r\n\r\n",
    b"GET /" + b"resp-secret" * 900 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["control-character", "header-over-8k", "header-without-colon", "url-over-8k"])
async def test_a_request_the_http_parser_refuses_gets_a_json_400_that_echoes_nothing(
        secured, request_bytes, caplog, capfd):
    answer = await _raw(secured, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], answer[:300]
    assert b"application/json" in head
    doc = json.loads(body)
    assert doc["error"].startswith("bad HTTP request: ") and len(doc["error"]) < 120, doc
    # neither the answer nor the daemon's log repeats what was sent (a token may be in it)
    assert b"resp-secret" not in answer
    out, err = capfd.readouterr()
    assert "resp-secret" not in caplog.text + out + err
    assert not [r for r in caplog.records if r.exc_info], "a refused request is no daemon fault"
    status, _ = await secured.call("GET", "/api/v1/incidents", token=TOKENS["responder"])
    assert status == 200


async def test_health_ready_and_metrics_stay_open(secured):
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _ = await secured.call("GET", path)
        assert status == 200


async def test_the_actor_in_the_timeline_is_the_token_name(secured):
    c = secured
    await c.call("POST", "/api/v1/incidents/INC-000001/notes", {"text": "on it", "author": "mallory"},
                 token=TOKENS["responder"])
    await c.call("POST", "/api/v1/incidents/INC-000001/ack", {"author": "mallory"}, token=TOKENS["responder"])
    _, inc = await c.call("GET", "/api/v1/incidents/INC-000001", token=TOKENS["responder"])
    actors = {e["kind"]: e["actor"] for e in inc["timeline"]}
    assert actors["note"] == "alice" and actors["acknowledged"] == "alice"
    assert inc["acknowledged_by"] == "alice"


async def test_rate_and_body_limits_per_token(secured):
    c = secured
    codes = [(await c.call("POST", "/api/v1/samples", [], token="tiny"))[0] for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes[2:]
    await asyncio.sleep(1.1)
    big = [alert("X" * 400)]
    status, resp = await c.call("POST", "/api/v1/alerts", big, token="tiny")
    assert status == 413 and "tiny" in resp["detail"]


async def test_a_compressed_body_counts_as_it_expands_and_a_corrupt_one_is_a_400(secured):
    import gzip
    import json

    c = secured
    await asyncio.sleep(1.1)  # a full bucket for the rate-limited token
    headers = {"Authorization": "Bearer tiny", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    small = gzip.compress(json.dumps([alert("X" * 2000)]).encode())
    assert len(small) < 300  # under the token's limit as sent, far over it as read
    async with c.session.post(c.base + "/api/v1/alerts", data=small, headers=headers) as r:
        assert (r.status, (await r.json())["error"]) == (413, "request body too large")

    async def chunks():
        yield b"this is not gzip"

    async with c.session.post(c.base + "/api/v1/alerts", data=chunks(), headers=headers) as r:
        assert (r.status, (await r.json())["error"]) == (400, "bad content encoding")


async def test_without_tokens_the_api_stays_open(tmp_path, daemon_for):
    c = await daemon_for(write_config(tmp_path, ""))
    status, _ = await c.call("POST", "/api/v1/alerts", [alert("A")])
    assert status == 200


def test_bad_auth_config_points_at_the_line(tmp_path):
    from daemon.cli import check_config_errors

    path = write_config(tmp_path, "auth:\n  tokens:\n    - {name: x, role: boss, token_sha256: abc}\n")
    assert check_config_errors(path) == [f"{path}:4: auth.tokens[0].role must be one of ingest, responder, admin"]


def test_hash_token_command():
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "hash-token", "s3cret"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == hash_token("s3cret")
    # stdin with a CRLF, as a Windows editor leaves it: stripped, as the API strips the header
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "hash-token"], input=" s3cret\r\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == hash_token("s3cret")


def test_check_config_refuses_a_shared_token_and_tls_files_that_do_not_load(tmp_path):
    from daemon.cli import check_config_errors

    digest = hash_token("same")
    path = write_config(tmp_path, f"auth:\n  tokens:\n    - {{name: am, role: ingest, token_sha256: {digest}}}\n"
                                  f"    - {{name: ops, role: admin, token_sha256: {digest}}}\n")
    assert check_config_errors(path) == [
        f"{path}:5: auth.tokens[1].token_sha256 is the same as that of token 'am': one token, one identity"]

    def pem(name: str, *extra: str) -> str:
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=127.0.0.1",
                        *(extra or ("-nodes",)), "-keyout", str(key), "-out", str(cert)], check=True,
                       capture_output=True)
        return str(cert), str(key)

    (a_crt, a_key), (_, b_key), (e_crt, e_key) = pem("a"), pem("b"), pem("e", "-passout", "pass:pw")
    for cert, key, why in ((a_crt, b_key, "the key does not belong to the certificate"),
                           (path, path, "not a PEM certificate and unencrypted PEM key"),
                           (e_crt, e_key, "the key is encrypted; give an unencrypted key")):
        path = write_config(tmp_path, f"tls: {{cert: {cert}, key: {key}}}\n")
        [error] = check_config_errors(path)
        assert error.startswith(f"{path}:2: cannot load the TLS certificate and key ({cert}, {key}): {why}"), error
    path = write_config(tmp_path, f"tls: {{cert: {a_crt}, key: {a_key}, ca: x.pem}}\n")
    assert check_config_errors(path) == [f"{path}:2: unknown key tls.ca (tls takes cert and key)"]


async def test_tls_listener(tmp_path, daemon_for):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    c = await daemon_for(write_config(tmp_path, f"tls: {{cert: {cert}, key: {key}}}\n"))
    host, port = c.daemon.bound
    ctx = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as s, s.get(f"https://{host}:{port}/healthz", ssl=ctx) as r:
        assert r.status == 200
