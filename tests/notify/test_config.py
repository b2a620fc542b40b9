"""The notification sections as check-config and a reload read them: every wrong
setting is a `file:line: message`, never a traceback."""

import pytest
from notify_helpers import write_config

from daemon.cli import check_config_errors

HOOK = """
receivers:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
escalation_policies:
  ep: [{targets: [hook], delay: 5m}]
"""


def test_a_team_escalation_policy_that_is_not_a_name_and_unknown_team_keys_are_errors(tmp_path):
    path = write_config(tmp_path, HOOK + """teams:
  t1: {receivers: [hook], escalation_policy: [ep]}
  t2:
    receivers: [hook]
    escalation_policy: {name: ep}
  t3: {receivers: [hook], escalation: ep}
  t4: {receivers: [hook], pager: hook}
""")
    assert check_config_errors(path) == [
        f"{path}:8: teams.t1.escalation_policy must be a name",
        f"{path}:11: teams.t2.escalation_policy must be a name",
        f"{path}:12: unknown key teams.t3.escalation; did you mean 'escalation_policy'?",
        f"{path}:13: unknown key teams.t4.pager (a team takes receivers and escalation_policy)",
    ]


async def test_a_reload_with_a_team_escalation_policy_list_is_refused_with_the_error(tmp_path, daemon_for):
    path = write_config(tmp_path, HOOK + "teams:\n  t1: {receivers: [hook], escalation_policy: ep}\n")
    c = await daemon_for(path)
    write_config(tmp_path, HOOK + "teams:\n  t1: {receivers: [hook], escalation_policy: [ep]}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400, body
    assert body["components"]["notify"]["errors"] == [f"{path}:8: teams.t1.escalation_policy must be a name"]
    assert c.daemon.components.parts["notify"].settings.teams["t1"].escalation_policy == "ep"


def test_receiver_urls_that_do_not_parse_are_errors_that_do_not_repeat_them(tmp_path):
    urls = ["https://127.0.0.1:99999/services/T0/B0/S3CRET", "http:///services/T0/B0/S3CRET",
            "http://127.0.0.1:0/services/T0/B0/S3CRET", "http://127.0.0.1:x/services/T0/B0/S3CRET",
            "ftp://127.0.0.1/services/T0/B0/S3CRET"]
    path = write_config(tmp_path, "receivers:\n" + "".join(
        f"  - {{name: r{i}, type: slack, url: '{url}'}}\n" for i, url in enumerate(urls)))
    errors = check_config_errors(path)
    expected = [  # what yarl says after "not a valid URL: " is its own wording
        f"{path}:3: receivers[0].url is not a valid URL: ",
        f"{path}:4: receivers[1].url has no host",
        f"{path}:5: receivers[2].url has a port out of range 1-65535",
        f"{path}:6: receivers[3].url is not a valid URL: ",
        f"{path}:7: receivers[4].url must be an http(s) URL",
    ]
    assert [e[:len(x)] for e, x in zip(errors, expected, strict=True)] == expected, errors
    assert not any("S3CRET" in e for e in errors)


def test_nan_and_infinite_durations_are_errors(tmp_path):
    path = write_config(tmp_path, HOOK + """notify:
  group_wait: .nan
  repeat_interval: .inf
  retry: {max_backoff: -.inf}
  routes:
    - {receivers: [hook], group_wait: .NaN}
""")
    assert check_config_errors(path) == [
        f"{path}:8: notify.group_wait: not a finite duration: nan",
        f"{path}:9: notify.repeat_interval: not a finite duration: inf",
        f"{path}:10: notify.retry.max_backoff: duration must not be negative: -inf",
        f"{path}:12: notify.routes[0].group_wait: not a finite duration: nan",
    ]


def test_an_escalation_level_with_no_targets_or_no_delay_before_the_next_level_is_an_error(tmp_path):
    path = write_config(tmp_path, HOOK + """  no_delay:
    - {targets: [hook], delay: 5m}
    - {targets: [hook]}
    - {targets: [hook]}
  no_targets:
    - {targets: [], delay: 5m}
    - {delay: 5m}
""")
    assert check_config_errors(path) == [
        f"{path}:9: escalation_policies.no_delay[1].delay is required: how long to wait for an acknowledgement"
        " before escalation_policies.no_delay[2] is notified",
        f"{path}:12: escalation_policies.no_targets[0].targets needs at least one receiver or team",
        f"{path}:13: escalation_policies.no_targets[1].targets needs at least one receiver or team",
    ]


def test_an_empty_events_list_is_an_error_and_so_is_one_that_is_not_a_list(tmp_path):
    path = write_config(tmp_path, HOOK + """notify:
  group_wait: 10s
  on: []
  default: {receivers: [hook], events: []}
  routes:
    - receivers: [hook]
      events:
    - {receivers: [hook], events: {open: true}}
""")
    assert check_config_errors(path) == [
        f"{path}:9: notify.events is empty: list the events to notify on, or leave it out for the default",
        f"{path}:10: notify.default.events is empty: list the events to notify on, or leave it out for the default",
        f"{path}:13: notify.routes[0].events is empty: list the events to notify on, or leave it out for the default",
        f"{path}:14: notify.routes[1].events must be a list of names",
    ]


def test_the_last_escalation_level_needs_no_delay(tmp_path):
    path = write_config(tmp_path, HOOK + "  two: [{targets: [hook], delay: 5m}, {targets: [hook]}]\n")
    assert check_config_errors(path) == []


def test_a_template_that_does_not_compile_is_reported_at_its_own_line_and_a_missing_one_at_its_key(tmp_path):
    (tmp_path / "slack.j2").write_text("{{ incident.id }}\n{% if incident.team %}\n{{ incident.team }\n{% endif %}\n")
    path = write_config(tmp_path, """receivers:
  - {name: chat, type: slack, url: "http://127.0.0.1:9/chat", template: slack.j2}
""")
    assert check_config_errors(path) == [f"{tmp_path / 'slack.j2'}:3: receiver chat: unexpected '}}'"]
    path = write_config(tmp_path, """receivers:
  - name: mail
    type: email
    smtp: 127.0.0.1:25
    to: [oncall@example.com]
    html_template: mail.html.j2
""")
    assert check_config_errors(path) == [
        f"{path}:7: receiver mail: template file not found: {tmp_path / 'mail.html.j2'}"]


@pytest.mark.parametrize("bad", [
    pytest.param("notify:\n  group_wait: .nan\n", id="nan-group-wait"),
    pytest.param("  later: [{targets: [hook]}, {targets: [hook]}]\n", id="escalation-level-without-delay"),
    pytest.param("  nobody: [{targets: []}]\n", id="escalation-level-without-targets"),
    pytest.param("notify:\n  routes: [{receivers: [hook], events: []}]\n", id="route-without-events"),
])
async def test_a_reload_with_a_notify_section_that_can_never_work_is_refused(tmp_path, daemon_for, bad):
    path = write_config(tmp_path, HOOK + "notify:\n  group_wait: 10s\n")
    c = await daemon_for(path)
    write_config(tmp_path, HOOK + bad)
    status, body = await c.call("POST", "/-/reload")
    assert status == 400, body
    [error] = body["components"]["notify"]["errors"]
    assert error.startswith(f"{path}:"), error
    settings = c.daemon.components.parts["notify"].settings
    assert (settings.group_wait, settings.escalation_policies["ep"][0].delay) == (10.0, 300.0)


def test_run_with_a_template_that_does_not_compile_stops_with_its_file_and_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from notify_helpers import free_port

    (tmp_path / "hook.j2").write_text("{{ incident.id }}\n{{ incident.title }\n")
    path = write_config(tmp_path, f"listen: 127.0.0.1:{free_port()}\n" + HOOK.replace(
        'url: "http://127.0.0.1:9/hook"', 'url: "http://127.0.0.1:9/hook", template: hook.j2'))
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--config", path],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"incidentd: {tmp_path / 'hook.j2'}:2: receiver hook: unexpected '}}'"
    assert "Traceback" not in done.stderr + done.stdout


def test_an_escalation_level_whose_team_has_no_receivers_is_an_error(tmp_path):
    path = write_config(tmp_path, HOOK + """  owners:
    - {targets: [silent, hook], delay: 5m}
    - {targets: [paged]}
teams:
  silent: {}
  paged: {receivers: [hook]}
""")
    assert check_config_errors(path) == [
        f"{path}:8: escalation_policies.owners[0].targets: team 'silent' has no receivers: it would notify nobody"]
