"""The notification sections of the config: `receivers:`, `teams:`, `notify:`,
`escalation_policies:`, parsed and validated with `file:line: message` errors.

```yaml
receivers:
  - name: oncall-hook
    type: webhook            # webhook | slack | pagerduty | email
    url: http://hooks.example/incidentd
    timeout: 10s             # per attempt
    max_concurrency: 4       # attempts in flight to this receiver
    headers: {X-Env: prod}
  - name: ops-slack
    type: slack
    url: https://hooks.slack.example/T000/B000/XXX
    template: slack.j2       # optional, relative to the config file
  - name: pager
    type: pagerduty
    url: https://events.pagerduty.example/v2/enqueue
    routing_key: R0UT1NGK3Y
  - name: mail
    type: email
    smtp: smtp.example:25
    from: incidentd@example.com
    to: [oncall@example.com]
    starttls: true           # the server's certificate and host name are verified
    ca_file: relay-ca.pem    # optional: trust this CA (PEM) instead of the system's
teams:
  payments: {receivers: [pager], escalation_policy: payments}
escalation_policies:
  payments:
    - {targets: [pager], delay: 15m}      # level 0: paged at open; escalate if no ack in 15m
    - {targets: [ops-slack, mail]}        # the last level needs no delay; every other one does
notify:
  external_url: https://incidentd.example    # links in messages (default: the listen address, or the host name when that is 0.0.0.0 or ::; https with tls:)
  group_wait: 30s          # the first message waits this long for more alerts
  repeat_interval: 4h      # re-notify while unacknowledged (0: never)
  events: [open, priority_raised, root_cause_changed, resolved]   # also `on:`
  retry: {max_attempts: 20, initial_backoff: 1s, max_backoff: 5m}
  default: {receivers: [oncall-hook]}
  routes:                  # first match wins; otherwise team, then default
    - match: {team: payments, priority: [P1, P2]}
      receivers: [pager]
      escalation_policy: payments
      group_wait: 10s
```
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yarl

from daemon.config import Config
from daemon.timefmt import parse_duration
from daemon.yamlsrc import line_of

RECEIVER_TYPES = ("webhook", "slack", "pagerduty", "email")
EVENTS = ("open", "priority_raised", "root_cause_changed", "acknowledged", "resolved")
DEFAULT_EVENTS = ("open", "priority_raised", "root_cause_changed", "resolved")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(slots=True)
class ReceiverConfig:
    name: str
    type: str
    url: str = ""
    timeout: float = 10.0
    max_concurrency: int = 4
    headers: dict[str, str] = field(default_factory=dict)
    template: str | None = None  # path of a Jinja2 template for the message text
    html_template: str | None = None  # email only
    subject_template: str | None = None  # email only
    channel: str | None = None  # slack
    routing_key: str = ""  # pagerduty
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "incidentd@localhost"
    to: list[str] = field(default_factory=list)
    starttls: bool = False
    ca_file: str | None = None  # PEM CA(s) to verify the SMTP server with, instead of the system's
    username: str | None = None
    password: str | None = None


@dataclass(slots=True)
class EscalationLevel:
    targets: list[str]  # receiver or team names, as written
    delay: float  # seconds without an acknowledgement before the next level


@dataclass(slots=True)
class Route:
    receivers: list[str] = field(default_factory=list)
    escalation_policy: str | None = None
    match: dict[str, list[str]] = field(default_factory=dict)  # team/priority/severity -> allowed values
    group_wait: float | None = None
    repeat_interval: float | None = None
    on: tuple[str, ...] | None = None

    def matches(self, incident: Any) -> bool:
        for key, allowed in self.match.items():
            if str(getattr(incident, key, None)) not in allowed:
                return False
        return True


@dataclass(slots=True)
class RetrySettings:
    max_attempts: int = 20
    initial_backoff: float = 1.0
    max_backoff: float = 300.0


@dataclass(slots=True)
class Team:
    receivers: list[str] = field(default_factory=list)
    escalation_policy: str | None = None


@dataclass(slots=True)
class NotifySettings:
    receivers: dict[str, ReceiverConfig] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    escalation_policies: dict[str, list[EscalationLevel]] = field(default_factory=dict)
    default: Route = field(default_factory=Route)
    routes: list[Route] = field(default_factory=list)
    group_wait: float = 30.0
    repeat_interval: float = 4 * 3600.0
    on: tuple[str, ...] = DEFAULT_EVENTS
    retry: RetrySettings = field(default_factory=RetrySettings)
    external_url: str = ""

    def receivers_of(self, target: str) -> list[str]:
        """A target names a receiver or a team; the receivers it stands for."""
        if target in self.receivers:
            return [target]
        team = self.teams.get(target)
        return list(team.receivers) if team else []


class _Errors:
    def __init__(self, path: str | None) -> None:
        self.path = path or "<config>"
        self.items: list[str] = []

    def __call__(self, node: Any, key: Any, msg: str) -> None:
        self.items.append(f"{self.path}:{line_of(node, key)}: {msg}")


def _duration(node: Mapping[str, Any], key: str, where: str, err: _Errors) -> float | None:
    if key not in node:
        return None
    try:
        return parse_duration(node[key])
    except ValueError as exc:
        err(node, key, f"{where}.{key}: {exc}")
        return None


def _names(node: Mapping[str, Any], key: Any, where: str, err: _Errors, shown: str = "") -> list[str]:
    value = node.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        err(node, key, f"{where}.{shown or key} must be a list of names")
        return []
    return list(dict.fromkeys(value))  # a receiver (or address) listed twice is one


def _receiver(node: Any, i: int, parent: Any, config: Config, err: _Errors) -> ReceiverConfig | None:
    where = f"receivers[{i}]"
    if not isinstance(node, Mapping):
        err(parent, i, f"{where} must be a mapping with name and type")
        return None
    name, kind = node.get("name"), node.get("type")
    if not isinstance(name, str) or not name:
        err(node, "name", f"{where}.name is required")
        return None
    if kind not in RECEIVER_TYPES:
        err(node, "type", f"{where}.type must be one of {', '.join(RECEIVER_TYPES)}")
        return None
    rc = ReceiverConfig(name=name, type=kind)
    allowed = {"name", "type", "timeout", "max_concurrency", "template"}
    if kind in ("webhook", "slack", "pagerduty"):
        allowed |= {"url", "headers"}
        url = node.get("url", PAGERDUTY_URL if kind == "pagerduty" else None)
        problem = _url_problem(url)
        if problem:
            err(node, "url", f"{where}.url {problem}")
        else:
            rc.url = url
        headers = node.get("headers", {})
        if not isinstance(headers, Mapping):
            err(node, "headers", f"{where}.headers must be a mapping")
        else:
            rc.headers = {str(k): str(v) for k, v in headers.items()}
    if kind == "slack":
        allowed.add("channel")
        rc.channel = node.get("channel")
    if kind == "pagerduty":
        allowed.add("routing_key")
        key = node.get("routing_key")
        if not isinstance(key, str) or not key:
            err(node, "routing_key", f"{where}.routing_key is required for pagerduty")
        else:
            rc.routing_key = key
    if kind == "email":
        allowed |= {"smtp", "from", "to", "starttls", "ca_file", "username", "password", "html_template",
                    "subject_template"}
        host, _, port = str(node.get("smtp", "")).rpartition(":")
        if not host or not port.isdigit():
            err(node, "smtp", f"{where}.smtp must be HOST:PORT")
        else:
            rc.smtp_host, rc.smtp_port = host, int(port)
        rc.sender = str(node.get("from", rc.sender))
        rc.to = _names(node, "to", where, err)
        if not rc.to:
            err(node, "to", f"{where}.to needs at least one address")
        starttls = node.get("starttls", False)
        if not isinstance(starttls, bool):  # `starttls: "false"` would read as true
            err(node, "starttls", f"{where}.starttls must be true or false, not {starttls!r}")
        rc.starttls = starttls is True
        if "ca_file" in node:
            if rc.starttls:
                rc.ca_file = _ca_file(node, where, config, err)
            else:
                err(node, "ca_file", f"{where}.ca_file verifies the relay's STARTTLS certificate:"
                    " it needs starttls: true")
        rc.username = node.get("username")
        rc.password = node.get("password")
    for key in ("template", "html_template", "subject_template"):
        if isinstance(node.get(key), str):
            setattr(rc, key, config.resolve(node[key]))
    t = _duration(node, "timeout", where, err)
    if t is not None:
        rc.timeout = t
    mc = node.get("max_concurrency", rc.max_concurrency)
    if not isinstance(mc, int) or isinstance(mc, bool) or mc < 1:
        err(node, "max_concurrency", f"{where}.max_concurrency must be a positive integer")
    else:
        rc.max_concurrency = mc
    for key in node:
        if key not in allowed:
            err(node, key, f"unknown key {where}.{key}")
    return rc


def _url_problem(url: Any) -> str | None:
    """What is wrong with a receiver URL, without repeating it (its path may be a secret)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "must be an http(s) URL"
    try:
        u = yarl.URL(url)
        port = u.port
    except ValueError as exc:
        reason = str(exc) if url not in str(exc) else "cannot be parsed"
        return f"is not a valid URL: {reason}"
    if not u.host:
        return "has no host"
    if not port or not 1 <= port <= 65535:
        return "has a port out of range 1-65535"
    return None


def _ca_file(node: Mapping[str, Any], where: str, config: Config, err: _Errors) -> str | None:
    """The CA file's path if it exists and loads as PEM certificates."""
    import os
    import ssl

    value = node["ca_file"]
    if not isinstance(value, str) or not value:
        err(node, "ca_file", f"{where}.ca_file must be the path of a PEM file")
        return None
    path = config.resolve(value)
    if not os.path.isfile(path):
        err(node, "ca_file", f"{where}.ca_file: file not found: {path}")
        return None
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        why = "no certificate in it" if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND" else "not a PEM certificate"
        err(node, "ca_file", f"{where}.ca_file: cannot load {path}: {why}")
        return None
    except OSError as exc:
        err(node, "ca_file", f"{where}.ca_file: cannot load {path}: {exc.strerror or exc}")
        return None
    return path


def _events(node: Mapping[str, Any], where: str, err: _Errors) -> tuple[str, ...] | None:
    """`events:` (or `on:`, which YAML 1.1 reads as the boolean key True)."""
    key: Any = next((k for k in ("events", "on", True) if k in node), None)
    if key is None:
        return None
    if node[key] in (None, []):  # a route would fall back to notify.events, notify to the default
        err(node, key, f"{where}.events is empty: list the events to notify on, or leave it out for the default")
        return None
    names = _names(node, key, where, err, shown="events")
    bad = [n for n in names if n not in EVENTS]
    if bad:
        err(node, key, f"{where}.events: unknown event {bad[0]!r} (use {', '.join(EVENTS)})")
    return tuple(n for n in names if n in EVENTS)


def _route(node: Any, where: str, parent: Any, key: Any, err: _Errors) -> Route:
    r = Route()
    if not isinstance(node, Mapping):
        err(parent, key, f"{where} must be a mapping")
        return r
    r.receivers = _names(node, "receivers", where, err)
    ep = node.get("escalation_policy")
    if ep is not None and not isinstance(ep, str):
        err(node, "escalation_policy", f"{where}.escalation_policy must be a name")
    r.escalation_policy = ep if isinstance(ep, str) else None
    r.group_wait = _duration(node, "group_wait", where, err)
    r.repeat_interval = _duration(node, "repeat_interval", where, err)
    r.on = _events(node, where, err)
    match = node.get("match", {})
    if not isinstance(match, Mapping):
        err(node, "match", f"{where}.match must be a mapping")
    else:
        for k, v in match.items():
            if k not in ("team", "priority", "severity", "receiver"):
                err(match, k, f"{where}.match.{k}: match on team, priority, severity or receiver")
                continue
            r.match[k] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    for k in node:
        if k not in {"receivers", "escalation_policy", "group_wait", "repeat_interval", "events", "on", True,
                     "match"}:
            err(node, k, f"unknown key {where}.{k}")
    return r


TEAM_KEYS = ("receivers", "escalation_policy")


def _team(node: Mapping[str, Any], where: str, err: _Errors) -> Team:
    receivers = _names(node, "receivers", where, err)
    ep = node.get("escalation_policy")
    if ep is not None and not isinstance(ep, str):
        err(node, "escalation_policy", f"{where}.escalation_policy must be a name")
        ep = None
    for k in node:
        if k not in TEAM_KEYS:
            hint = difflib.get_close_matches(str(k), TEAM_KEYS, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f" (a team takes {' and '.join(TEAM_KEYS)})"
            err(node, k, f"unknown key {where}.{k}{more}")
    return Team(receivers, ep)


def parse_notify(config: Config) -> tuple[NotifySettings, list[str]]:
    """The notification settings and every error in them (an empty config notifies nobody)."""
    raw = config.raw if isinstance(config.raw, Mapping) else {}
    err = _Errors(config.path)
    s = NotifySettings()
    receivers = raw.get("receivers")
    if receivers is not None:
        if not isinstance(receivers, list):
            err(raw, "receivers", "receivers must be a list")
        else:
            for i, node in enumerate(receivers):
                rc = _receiver(node, i, receivers, config, err)
                if rc is None:
                    continue
                if rc.name in s.receivers:
                    err(node, "name", f"duplicate receiver {rc.name!r}")
                s.receivers[rc.name] = rc
    teams = raw.get("teams")
    if teams is not None:
        if not isinstance(teams, Mapping):
            err(raw, "teams", "teams must be a mapping of team name to {receivers, escalation_policy}")
        else:
            for name, node in teams.items():
                node = node or {}
                if not isinstance(node, Mapping):
                    err(teams, name, f"teams.{name} must be a mapping")
                    continue
                s.teams[str(name)] = _team(node, f"teams.{name}", err)
    policies = raw.get("escalation_policies")
    if policies is not None:
        if not isinstance(policies, Mapping):
            err(raw, "escalation_policies", "escalation_policies must be a mapping of name to levels")
        else:
            for name, levels in policies.items():
                where = f"escalation_policies.{name}"
                if not isinstance(levels, list) or not levels:
                    err(policies, name, f"{where} must be a non-empty list of levels")
                    continue
                parsed = []
                for i, lvl in enumerate(levels):
                    if not isinstance(lvl, Mapping):
                        err(levels, i, f"{where}[{i}] must be a mapping with targets and delay")
                        continue
                    targets = _names(lvl, "targets", f"{where}[{i}]", err)
                    if not targets:
                        err(lvl, "targets", f"{where}[{i}].targets needs at least one receiver or team")
                    delay = _duration(lvl, "delay", f"{where}[{i}]", err)
                    if "delay" not in lvl and i + 1 < len(levels):  # only the last level may go without
                        err(lvl, "delay", f"{where}[{i}].delay is required: how long to wait for an"
                                          f" acknowledgement before {where}[{i + 1}] is notified")
                    parsed.append(EscalationLevel(targets, delay if delay is not None else 0.0))
                    for k in lvl:
                        if k not in ("targets", "delay"):
                            err(lvl, k, f"unknown key {where}[{i}].{k}")
                s.escalation_policies[str(name)] = parsed
    notify = raw.get("notify")
    if notify is not None:
        if not isinstance(notify, Mapping):
            err(raw, "notify", "notify must be a mapping")
        else:
            _notify_section(notify, s, err)
    _check_references(raw, s, err)
    return s, err.items


def _notify_section(notify: Mapping[str, Any], s: NotifySettings, err: _Errors) -> None:
    gw = _duration(notify, "group_wait", "notify", err)
    s.group_wait = s.group_wait if gw is None else gw
    ri = _duration(notify, "repeat_interval", "notify", err)
    s.repeat_interval = s.repeat_interval if ri is None else ri
    s.on = _events(notify, "notify", err) or s.on
    if "external_url" in notify:
        s.external_url = str(notify["external_url"]).rstrip("/")
    retry = notify.get("retry")
    if retry is not None:
        if not isinstance(retry, Mapping):
            err(notify, "retry", "notify.retry must be a mapping")
        else:
            ma = retry.get("max_attempts", s.retry.max_attempts)
            if not isinstance(ma, int) or isinstance(ma, bool) or ma < 1:
                err(retry, "max_attempts", "notify.retry.max_attempts must be a positive integer")
            else:
                s.retry.max_attempts = ma
            for key in ("initial_backoff", "max_backoff"):
                v = _duration(retry, key, "notify.retry", err)
                if v is not None:
                    setattr(s.retry, key, v)
    if "default" in notify:
        s.default = _route(notify["default"], "notify.default", notify, "default", err)
    routes = notify.get("routes")
    if routes is not None:
        if not isinstance(routes, list):
            err(notify, "routes", "notify.routes must be a list")
        else:
            s.routes = [_route(r, f"notify.routes[{i}]", routes, i, err) for i, r in enumerate(routes)]
    for key in notify:
        if key not in {"group_wait", "repeat_interval", "events", "on", True, "external_url", "retry", "default",
                       "routes", "receivers", "teams"}:
            err(notify, key, f"unknown key notify.{key}")


def _map(node: Any) -> Mapping[str, Any]:
    """A config node that should be a mapping, as one (empty when it is not: reported elsewhere)."""
    return node if isinstance(node, Mapping) else {}


def _seq(node: Any) -> list[Any]:
    """A config node that should be a list, as one (empty when it is not: reported elsewhere)."""
    return node if isinstance(node, list) else []


def _check_references(raw: Mapping[str, Any], s: NotifySettings, err: _Errors) -> None:
    """A route, team or escalation level naming an unknown receiver (or policy) is an error."""
    notify = _map(raw.get("notify"))

    def check_receivers(names: list[str], node: Any, key: Any, where: str, teams_ok: bool) -> None:
        for n in names:
            if n not in s.receivers and not (teams_ok and n in s.teams):
                kind = "receiver or team" if teams_ok else "receiver"
                err(node, key, f"{where}: unknown {kind} {n!r}")
            elif n not in s.receivers and not s.teams[n].receivers:
                err(node, key, f"{where}: team {n!r} has no receivers: it would notify nobody")

    def check_policy(name: str | None, node: Any, key: Any, where: str) -> None:
        if name is not None and name not in s.escalation_policies:
            err(node, key, f"{where}: unknown escalation policy {name!r}")

    routes_node = _seq(notify.get("routes"))
    for i, r in enumerate(s.routes):
        node = routes_node[i] if i < len(routes_node) else notify
        check_receivers(r.receivers, node, "receivers", f"notify.routes[{i}].receivers", False)
        check_policy(r.escalation_policy, node, "escalation_policy", f"notify.routes[{i}]")
    dnode = notify.get("default", notify)
    check_receivers(s.default.receivers, dnode, "receivers", "notify.default.receivers", False)
    check_policy(s.default.escalation_policy, dnode, "escalation_policy", "notify.default")
    teams_node = _map(raw.get("teams"))
    for name, t in s.teams.items():
        node = teams_node.get(name) if isinstance(teams_node.get(name), Mapping) else teams_node
        check_receivers(t.receivers, node, "receivers", f"teams.{name}.receivers", False)
        check_policy(t.escalation_policy, node, "escalation_policy", f"teams.{name}")
    pol_node = _map(raw.get("escalation_policies"))
    for name, levels in s.escalation_policies.items():
        lnode = _seq(pol_node.get(name))
        for i, lvl in enumerate(levels):
            node = lnode[i] if i < len(lnode) else pol_node
            check_receivers(lvl.targets, node, "targets", f"escalation_policies.{name}[{i}].targets", True)


def check_notify(config: Config) -> list[str]:
    """check-config: the notification sections and the template files they name. A missing
    template is reported at its key in the config; one that does not compile, at its own
    file and line (`slack.j2:3: ...`)."""
    import os

    settings, errors = parse_notify(config)
    raw = config.raw.get("receivers") if isinstance(config.raw, Mapping) else None
    nodes = {n.get("name"): n for n in raw if isinstance(n, Mapping)} if isinstance(raw, list) else {}
    for rc in settings.receivers.values():
        for key in ("template", "html_template", "subject_template"):
            path = getattr(rc, key)
            if path and not os.path.isfile(path):
                errors.append(f"{config.path}:{line_of(nodes.get(rc.name), key)}: receiver {rc.name}:"
                              f" template file not found: {path}")
    if not errors:
        from daemon.notify.templates import TemplateError, Templates

        for rc in settings.receivers.values():
            try:
                Templates.for_receiver(rc)
            except TemplateError as exc:
                errors.append(f"{exc.path}:{exc.line}: receiver {rc.name}: {exc.message}")
    return errors
