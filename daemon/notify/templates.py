"""Message templates (Jinja2): defaults that read well, and per-receiver files.

A template sees `incident` (the snapshot taken when the notification was
written: id, state, title, priority, severity, team, root_cause, impacted,
alerts, problem_id, known_problem (title, status, cause, workaround), ...),
`reason` (opened, priority_raised, root_cause_changed, resolved, acknowledged,
reopened, escalated, repeat, merged), `headline` (the reason as a phrase),
`detail`, `link` and `receiver`.

A Slack receiver's text template (the built-in one or a file) escapes every
`{{ value }}` as Slack asks (`&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`), so an
alert's summary cannot mention `<!here>` or add a `<url|link>`; markup written
in the template itself stays markup, and `{{ value | safe }}` is not escaped.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import markupsafe
import structlog

from daemon.notify.config import ReceiverConfig
from daemon.yamlsrc import SourceError

if TYPE_CHECKING:
    import jinja2

log = structlog.get_logger("incidentd.notify")

BUILT_IN = "<built-in template>"  # where errors in the default templates are said to be

TEXT = """\
[{{ incident.priority }}] {{ incident.id }} {{ headline }}: {{ incident.title }}
Severity {{ incident.severity }}, state {{ incident.state }}\
{% if incident.team %}, team {{ incident.team }}{% endif %}
Root cause: {{ incident.root_cause or "not determined yet" }}
Impacted: {{ incident.impacted | join(", ") or "nothing known" }}
{% if incident.known_problem %}Known problem {{ incident.problem_id }}: {{ incident.known_problem.title }}
{% if incident.known_problem.workaround %}Workaround: {{ incident.known_problem.workaround }}
{% endif %}{% endif %}\
Alerts: {{ firing | length }} firing of {{ incident.alerts_total }}
{% for a in incident.alerts[:10] %}- {{ a.labels.alertname or a.fingerprint }} ({{ a.status }})\
{% if a.summary %}: {{ a.summary }}{% endif %}
{% endfor %}{% if incident.alerts_total > 10 %}- and {{ incident.alerts_total - 10 }} more
{% endif %}{% if link %}{{ link }}
{% endif %}"""

SLACK = """\
*[{{ incident.priority }}] <{{ link or incident.id }}|{{ incident.id }}> {{ headline }}*: {{ incident.title }}
Severity *{{ incident.severity }}*, state *{{ incident.state }}*\
{% if incident.team %}, team *{{ incident.team }}*{% endif %}
Root cause: *{{ incident.root_cause or "not determined yet" }}*\
{% if incident.impacted %}  Impacted: {{ incident.impacted | join(", ") }}{% endif %}
{% if incident.known_problem %}Known problem {{ incident.problem_id }}: {{ incident.known_problem.title }}\
{% if incident.known_problem.workaround %} — workaround: {{ incident.known_problem.workaround }}{% endif %}
{% endif %}\
{% for a in incident.alerts[:10] %}• `{{ a.labels.alertname or a.fingerprint }}` {{ a.status }}\
{% if a.summary %}: {{ a.summary }}{% endif %}
{% endfor %}{% if incident.alerts_total > 10 %}• and {{ incident.alerts_total - 10 }} more
{% endif %}"""

SUBJECT = "[{{ incident.priority }}] {{ incident.id }} {{ headline }}: {{ incident.title }}"

HTML = """\
<html><body style="font-family: sans-serif">
<h2>[{{ incident.priority }}] {% if link %}<a href="{{ link }}">{{ incident.id }}</a>{% else %}{{ incident.id }}{% endif %}
 {{ headline }}</h2>
<p>{{ incident.title }}</p>
<table>
<tr><th align="left">Severity</th><td>{{ incident.severity }}</td></tr>
<tr><th align="left">State</th><td>{{ incident.state }}</td></tr>
{% if incident.team %}<tr><th align="left">Team</th><td>{{ incident.team }}</td></tr>{% endif %}
<tr><th align="left">Root cause</th><td>{{ incident.root_cause or "not determined yet" }}</td></tr>
<tr><th align="left">Impacted</th><td>{{ incident.impacted | join(", ") or "nothing known" }}</td></tr>
{% if incident.known_problem %}<tr><th align="left">Known problem</th><td>{{ incident.problem_id }}: \
{{ incident.known_problem.title }}</td></tr>
{% if incident.known_problem.workaround %}<tr><th align="left">Workaround</th>\
<td>{{ incident.known_problem.workaround }}</td></tr>{% endif %}{% endif %}
</table>
<h3>Alerts ({{ firing | length }} firing of {{ incident.alerts_total }})</h3>
<ul>{% for a in incident.alerts[:25] %}
<li><b>{{ a.labels.alertname or a.fingerprint }}</b> ({{ a.status }}){% if a.summary %}: {{ a.summary }}{% endif %}</li>
{% endfor %}</ul>
</body></html>
"""

HEADLINES = {
    "opened": "opened",
    "reopened": "reopened",
    "priority_raised": "priority raised",
    "root_cause_changed": "has a new root cause",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
    "repeat": "still unacknowledged",
    "escalated": "escalated",
    "merged": "merged into another incident",
}


class TemplateError(SourceError):
    """A template file that cannot be read (line 0) or compiled (at the line Jinja2 names)."""


def headline(reason: str, detail: dict[str, Any]) -> str:
    text = HEADLINES.get(reason, reason)
    if reason == "priority_raised" and detail.get("to"):
        text += f" to {detail['to']}"
    elif reason == "escalated" and "level" in detail:
        text += f" to level {detail['level'] + 1}"
    elif reason == "acknowledged" and detail.get("by"):
        text += f" by {detail['by']}"
    elif reason == "merged" and detail.get("into"):
        text = f"merged into {detail['into']}"
    return text


def slack_escape(value: Any) -> Any:
    """A value as Slack mrkdwn shows it as text: its control characters as entities."""
    if isinstance(value, markupsafe.Markup):  # `| safe`
        return value
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@functools.cache
def _env(kind: str) -> jinja2.Environment:
    """The environment of the text, slack or html templates. Jinja2 is imported here,
    when a receiver first needs its templates: it takes 10 ms, and a daemon or a
    replay without receivers needs none."""
    import jinja2

    if kind == "html":
        return jinja2.Environment(autoescape=True, keep_trailing_newline=True)
    return jinja2.Environment(autoescape=False, keep_trailing_newline=True, trim_blocks=False,
                              finalize=slack_escape if kind == "slack" else None)


def _compile(env: jinja2.Environment, source: str | None, path: str | None) -> jinja2.Template:
    import jinja2

    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
        except OSError as exc:
            raise TemplateError(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    try:
        # `env.from_string`, but under the file's name: Jinja2 then points the traceback
        # of an error at render time at the template's own line (see `render`)
        code = env.compile(source or "", filename=path)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(path or BUILT_IN, exc.lineno, exc.message or str(exc)) from exc
    return env.template_class.from_code(env, code, env.make_globals(None))


def _line_of_error(template: jinja2.Template, exc: BaseException) -> int:
    """The template line an error at render time came from (0 when Jinja2 did not say)."""
    name = template.filename or "<template>"  # what Jinja2 names a template without a file
    lines = [frame.lineno or 0 for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == name]
    return lines[-1] if lines else 0


@dataclass(slots=True)
class Templates:
    """The compiled templates of one receiver."""

    text: jinja2.Template
    subject: jinja2.Template
    html: jinja2.Template

    @classmethod
    def for_receiver(cls, rc: ReceiverConfig) -> Templates:
        if rc.type == "slack":
            text = _compile(_env("slack"), SLACK, rc.template)
        else:
            text = _compile(_env("text"), TEXT, rc.template)
        return cls(text=text,
                   subject=_compile(_env("text"), SUBJECT, rc.subject_template),
                   html=_compile(_env("html"), HTML, rc.html_template))


def context(message: dict[str, Any], receiver: str) -> dict[str, Any]:
    """What a template sees, from a stored notification message."""
    inc = message["incident"]
    return {
        "incident": inc,
        "reason": message["reason"],
        "detail": message.get("detail", {}),
        "headline": headline(message["reason"], message.get("detail", {})),
        "link": message.get("link", ""),
        "receiver": receiver,
        "firing": [a for a in inc.get("alerts", []) if a.get("status") == "firing"],
    }


def render(template: jinja2.Template, ctx: dict[str, Any]) -> str:
    """The template's text. A user's template that fails at render time (`{{ a // b }}`
    with b 0, a filter given the wrong type, ...) is logged with its file and line and a
    short built-in text saying so is sent instead, so the notification still goes out."""
    try:
        return template.render(ctx)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("message template failed; the built-in text is sent instead", receiver=ctx.get("receiver"),
                    incident_id=ctx["incident"].get("id"),
                    template=f"{template.filename or BUILT_IN}:{_line_of_error(template, exc)}", error=error)
        text = f"(template error: {error}) {ctx['incident'].get('id')} {ctx['headline']}"
        return slack_escape(text) if template.environment.finalize is slack_escape else text
