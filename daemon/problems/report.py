"""`incidentd problems report`: the problem review, from the store, in Markdown and HTML.

    incidentd problems report --since 30d [--config FILE | --data-dir DIR] [--output-dir DIR]

Problems are ranked by cost over the period: incidents × mean time to resolve
(the on-call time they took). Each of the top problems gets a recurrence plot,
occurrences per day (per week over long periods), drawn as inline SVG so the
HTML page is one self-contained file that can be mailed or attached to a
ticket. The Markdown carries the same tables and a text sparkline.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

from daemon.problems.model import DAY, Link, Problem, humanize_seconds, read_problems
from daemon.store import Store, store_problem
from daemon.timefmt import format_rfc3339, parse_duration, parse_rfc3339

STORE_FILE = "incidentd.sqlite3"
SPARK = "▁▂▃▄▅▆▇█"


@dataclass(slots=True)
class Row:
    """One problem as the report shows it, over the report's period."""

    problem: Problem
    links: list[Link]
    count: int
    ttr_mean: float | None
    ttr_total: float
    cost: float
    buckets: list[int]
    trend: str

    @property
    def title(self) -> str:
        return self.problem.title or self.problem.default_title()


@dataclass(slots=True)
class Report:
    generated_at: float
    since: float
    until: float
    bucket: float
    rows: list[Row]
    top: int
    total_problems: int
    total_incidents: int
    origin: float = 0.0  # the first bucket's start: UTC midnight of `since`'s day

    @property
    def bucket_starts(self) -> list[float]:
        return (
            [self.origin + i * self.bucket for i in range(len(self.rows[0].buckets))]
            if self.rows
            else []
        )


def load_problems(store: Store) -> list[Problem]:
    return [p for p in read_problems(store)[0] if not p.merged_into and p.links]


def _trend(buckets: list[int]) -> str:
    """Rising, falling or steady: the second half of the period against the first."""
    half = len(buckets) // 2
    first, second = sum(buckets[:half]), sum(buckets[half:])
    if first + second == 0:
        return "quiet"
    if second >= 2 * max(first, 1) or (first == 0 and second > 1):
        return "rising"
    if first >= 2 * max(second, 1) or (second == 0 and first > 1):
        return "falling"
    return "steady"


MAX_BUCKETS = 60  # columns of the occurrence charts


def build_report(problems: list[Problem], since: float, until: float, top: int = 10) -> Report:
    span = max(until - since, DAY)
    # buckets are calendar days (or weeks from `since`'s day, or runs of weeks over
    # years: at most MAX_BUCKETS), so that each is labelled with the date its
    # incidents opened on
    weeks = -(-span // (7 * DAY * MAX_BUCKETS))
    bucket = DAY if span <= 45 * DAY else 7 * DAY * weeks
    origin = since - since % DAY
    n = max(1, int(-(-(until - origin) // bucket)))
    rows = []
    for p in problems:
        links = [link for link in p.sorted_links() if since <= link.opened_at <= until]
        if not links:
            continue
        ttrs = [link.resolved_at - link.opened_at for link in links if link.resolved_at is not None]
        mean = sum(ttrs) / len(ttrs) if ttrs else None
        buckets = [0] * n
        for link in links:
            buckets[min(n - 1, int((link.opened_at - origin) // bucket))] += 1
        rows.append(
            Row(
                p,
                links,
                len(links),
                mean,
                sum(ttrs),
                len(links) * (mean or 0.0),
                buckets,
                _trend(buckets),
            )
        )
    rows.sort(key=lambda r: (-r.cost, -r.count, r.problem.seq))
    return Report(
        generated_at=time.time(),
        since=since,
        until=until,
        bucket=bucket,
        origin=origin,
        rows=rows,
        top=top,
        total_problems=len(rows),
        total_incidents=sum(r.count for r in rows),
    )


# -- rendering ----------------------------------------------------------------------------


def _day(ts: float | None) -> str:
    s = format_rfc3339(ts)
    return s[:10] if s else "-"


def _when(ts: float | None) -> str:
    s = format_rfc3339(ts)
    return s[:16].replace("T", " ") if s else "-"


def sparkline(buckets: list[int]) -> str:
    top = max(buckets, default=0)
    if top == 0:
        return SPARK[0] * len(buckets)
    return "".join(
        SPARK[min(len(SPARK) - 1, round(b / top * (len(SPARK) - 1)))] if b else "·" for b in buckets
    )


def recurrence_svg(row: Row, report: Report, width: int = 640, height: int = 150) -> str:
    """Occurrences per period as a bar chart, an inline SVG with its own axis labels."""
    left, right, top_pad, bottom = 34, 8, 10, 26
    n = len(row.buckets)
    peak = max(max(row.buckets), 1)
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    bw = plot_w / n
    unit = _unit(report.bucket)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="occurrences per {unit} of {row.problem.id}">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" y2="{top_pad + plot_h}" class="axis"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" class="tick">{peak}</text>',
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, count in enumerate(row.buckets):
        if count:
            h = plot_h * count / peak
            x = left + i * bw + bw * 0.15
            start = report.origin + i * report.bucket
            parts.append(
                f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(bw * 0.7, 1):.1f}" '
                f'height="{h:.1f}" class="bar"><title>{_day(start)}: {count}</title></rect>'
            )
    ticks = sorted({0, n // 2, n - 1}) if n > 2 else list(range(n))
    for i in ticks:
        x = left + i * bw + bw / 2
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="tick">'
            f"{_day(report.origin + i * report.bucket)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


_MD = """# Problem review

Period: {{ day(r.since) }} to {{ day(r.until) }} · generated {{ when(r.generated_at) }} UTC ·
{{ r.total_problems }} problem(s) with {{ r.total_incidents }} incident(s) in the period.
Ranked by cost = incidents × mean time to resolve.

{% if not r.rows -%}
No problem had an incident in this period.
{%- else -%}
| # | problem | status | incidents | mean TTR | cost | trend | root cause | recurrence ({{ unit }}) |
| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |
{% for row in r.rows -%}
| {{ loop.index }} | {{ row.problem.id }}: {{ md(row.title) }} | {{ row.problem.status }} | {{ row.count }} | {{ human(row.ttr_mean) }} | {{ human(row.cost) }} | {{ row.trend }} | {{ md(row.problem.root_cause or "-") }} | `{{ spark(row.buckets) }}` |
{% endfor %}
{% for row in r.rows[:r.top] %}
## {{ loop.index }}. {{ row.problem.id }}: {{ md(row.title) }}

- status: **{{ row.problem.status }}**; signature `{{ row.problem.signature }}`
- root cause CI(s): {{ md(", ".join(row.problem.root_cis) or "-") }}
- in the period: {{ row.count }} incident(s), first {{ when(row.links[0].opened_at) }}, last {{ when(row.links[-1].opened_at) }}; time to resolve {{ human(row.ttr_total) }} in all, {{ human(row.ttr_mean) }} on average; trend {{ row.trend }}
- all time: {{ row.problem.links | length }} incident(s) since {{ when(row.problem.sorted_links()[0].opened_at) }}
- recurrence per {{ unit }}: `{{ spark(row.buckets) }}` (plot in report.html)
- cause: {{ md(row.problem.cause or "not known yet") }}
- workaround: {{ md(row.problem.workaround or "none recorded") }}
- fix: {{ md(row.problem.fix_ref or "none recorded") }}

| incident | opened | resolved | time to resolve | root cause |
| --- | --- | --- | ---: | --- |
{% for link in row.links -%}
| {{ link.incident_id }} | {{ when(link.opened_at) }} | {{ when(link.resolved_at) }} | {{ human(link.resolved_at - link.opened_at if link.resolved_at else None) }} | {{ md(link.root or "-") }} |
{% endfor %}
{% endfor %}
{%- endif %}
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Problem review {{ day(r.since) }} to {{ day(r.until) }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 980px; color: #1d2433; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #d8dde6; padding-bottom: .2em; }
.meta { color: #5a6478; } table { border-collapse: collapse; width: 100%; margin: .8em 0; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e6e9ef; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { display: inline-block; padding: 0 .5em; border-radius: .8em; font-size: .85em; background: #e6e9ef; }
.status.open { background: #fde2e1; color: #8a1c14; } .status.known_error { background: #fff1c7; color: #6b4e00; }
.status.resolved { background: #dcf3e3; color: #14532d; }
.trend.rising { color: #b42318; font-weight: 600; } .trend.falling { color: #15803d; }
dl { display: grid; grid-template-columns: 10em 1fr; gap: .2em 1em; } dt { color: #5a6478; } dd { margin: 0; }
svg .bar { fill: #3b6fd8; } svg .axis { stroke: #8a94a6; stroke-width: 1; } svg .tick { font-size: 10px; fill: #5a6478; }
code { background: #f3f5f8; padding: 0 .3em; border-radius: 3px; }
</style></head>
<body>
<h1>Problem review</h1>
<p class="meta">Period {{ day(r.since) }} to {{ day(r.until) }} · generated {{ when(r.generated_at) }} UTC ·
{{ r.total_problems }} problem(s) with {{ r.total_incidents }} incident(s) in the period.
Ranked by cost = incidents &times; mean time to resolve.</p>
{% if not r.rows %}<p>No problem had an incident in this period.</p>{% else %}
<table>
<thead><tr><th>#</th><th>problem</th><th>status</th><th class="num">incidents</th><th class="num">mean TTR</th><th class="num">cost</th><th>trend</th><th>root cause</th></tr></thead>
<tbody>
{% for row in r.rows %}<tr><td>{{ loop.index }}</td><td>{% if loop.index <= r.top %}<a href="#{{ row.problem.id }}">{{ row.problem.id }}</a>{% else %}{{ row.problem.id }}{% endif %}: {{ row.title }}</td>
<td><span class="status {{ row.problem.status }}">{{ row.problem.status.replace("_", " ") }}</span></td>
<td class="num">{{ row.count }}</td><td class="num">{{ human(row.ttr_mean) }}</td><td class="num">{{ human(row.cost) }}</td>
<td class="trend {{ row.trend }}">{{ row.trend }}</td><td>{{ row.problem.root_cause or "-" }}</td></tr>
{% endfor %}</tbody></table>
{% for row in r.rows[:r.top] %}
<section id="{{ row.problem.id }}">
<h2>{{ loop.index }}. {{ row.problem.id }}: {{ row.title }}</h2>
<figure>{{ svg(row) | safe }}<figcaption class="meta">Incidents per {{ unit }}</figcaption></figure>
<dl>
<dt>status</dt><dd><span class="status {{ row.problem.status }}">{{ row.problem.status.replace("_", " ") }}</span></dd>
<dt>signature</dt><dd><code>{{ row.problem.signature }}</code></dd>
<dt>root cause CI(s)</dt><dd>{{ ", ".join(row.problem.root_cis) or "-" }}</dd>
<dt>in the period</dt><dd>{{ row.count }} incident(s), first {{ when(row.links[0].opened_at) }}, last {{ when(row.links[-1].opened_at) }}</dd>
<dt>time to resolve</dt><dd>{{ human(row.ttr_total) }} in all, {{ human(row.ttr_mean) }} on average</dd>
<dt>trend</dt><dd class="trend {{ row.trend }}">{{ row.trend }}</dd>
<dt>cause</dt><dd>{{ row.problem.cause or "not known yet" }}</dd>
<dt>workaround</dt><dd>{{ row.problem.workaround or "none recorded" }}</dd>
<dt>fix</dt><dd>{{ row.problem.fix_ref or "none recorded" }}</dd>
</dl>
<table><thead><tr><th>incident</th><th>opened</th><th>resolved</th><th class="num">time to resolve</th><th>root cause</th></tr></thead><tbody>
{% for link in row.links %}<tr><td>{{ link.incident_id }}</td><td>{{ when(link.opened_at) }}</td><td>{{ when(link.resolved_at) }}</td>
<td class="num">{{ human(link.resolved_at - link.opened_at if link.resolved_at else None) }}</td><td>{{ link.root or "-" }}</td></tr>
{% endfor %}</tbody></table>
</section>
{% endfor %}{% endif %}
</body></html>
"""


def _unit(bucket: float) -> str:
    weeks = round(bucket / (7 * DAY))
    return "day" if bucket == DAY else "week" if weeks == 1 else f"{weeks} weeks"


def _md_escape(text: str) -> str:
    """Text from people (titles, workarounds) as Markdown shows it literally: no table
    breaks, and no HTML, which Markdown renderers would pass through."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def render(report: Report) -> tuple[str, str]:
    """The report as (Markdown, HTML)."""
    from jinja2 import Environment, select_autoescape  # 10 ms: here, not for every command

    helpers = {
        "day": _day,
        "when": _when,
        "human": humanize_seconds,
        "spark": sparkline,
        "md": _md_escape,
        "r": report,
        "unit": _unit(report.bucket),
        "svg": lambda row: recurrence_svg(row, report),
    }
    md_env = Environment(autoescape=False, trim_blocks=False, keep_trailing_newline=True)
    html_env = Environment(autoescape=select_autoescape(default=True), keep_trailing_newline=True)
    markdown = md_env.from_string(_MD).render(**helpers)
    html = html_env.from_string(_HTML).render(**helpers)
    return markdown, html


def write_report(
    store: Store, output_dir: str, since: float, until: float, top: int = 10
) -> Report:
    report = build_report(load_problems(store), since, until, top)
    markdown, html = render(report)
    os.makedirs(output_dir, exist_ok=True)
    for name, text in (("report.md", markdown), ("report.html", html)):
        tmp = os.path.join(output_dir, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(output_dir, name))
    return report


# -- the command ---------------------------------------------------------------------------


def configure_problems_command(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="problems_command", required=True)
    rep = sub.add_parser("report", help="problem review report (Markdown and HTML) from the store")
    rep.add_argument(
        "--since", default="30d", help="period to review, a duration back from now (default 30d)"
    )
    rep.add_argument("--until", help="end of the period, RFC 3339 (default: now)")
    rep.add_argument("--config", help="config file: its data_dir holds the store")
    rep.add_argument("--data-dir", help="the store's directory (overrides the config)")
    rep.add_argument(
        "--output-dir", default=".", help="where report.md and report.html go (default .)"
    )
    rep.add_argument(
        "--top", type=int, default=10, help="problems with a detailed section and plot (default 10)"
    )


def run_problems_command(args: argparse.Namespace) -> int:
    from daemon.cli import fail
    from daemon.config import load_config

    try:
        span = parse_duration(args.since)
    except ValueError as exc:
        return fail(f"--since: {exc}")
    until = time.time()
    if args.until:
        try:
            parsed = parse_rfc3339(args.until)
        except ValueError as exc:
            return fail(f"--until: {exc}")
        if parsed is None:
            return fail(f"--until: not an RFC 3339 time: {args.until!r}")
        until = parsed
    data_dir = args.data_dir or load_config(args.config).data_dir
    path = os.path.join(data_dir, STORE_FILE)
    if not os.path.isfile(path):
        return fail(f"{path}: no store here (set --data-dir or the config's data_dir)")
    problem = store_problem(path)  # checked read-only: a report never changes what it reads
    if problem is not None:
        return fail(problem)
    store = Store(path, threaded=False)
    try:
        report = write_report(store, args.output_dir, until - span, until, max(args.top, 0))
    except OSError as exc:
        return fail(f"{args.output_dir}: cannot write: {exc.strerror or exc}")
    finally:
        store.close()
    print(
        f"{report.total_problems} problem(s), {report.total_incidents} incident(s): "
        f"{os.path.join(args.output_dir, 'report.md')}, {os.path.join(args.output_dir, 'report.html')}"
    )
    return 0


def summary(report: Report) -> list[dict[str, Any]]:
    """The ranking as data (for tests and tools)."""
    return [
        {
            "id": r.problem.id,
            "count": r.count,
            "ttr_mean": r.ttr_mean,
            "cost": r.cost,
            "trend": r.trend,
        }
        for r in report.rows
    ]
