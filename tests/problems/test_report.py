"""The problem review report, rendered from a seeded store."""

import re
import sqlite3
from html.parser import HTMLParser

import pytest
from problemshop import DAY, HOUR, T0, Shop, db_down, db_slow, disk_full

from daemon.cli import main
from daemon.problems.report import build_report, load_problems, render, sparkline
from daemon.store import Store
from daemon.timefmt import format_rfc3339


def seeded(tmp_path) -> Shop:
    """Three problems: the database going down (3 incidents, 2 h each), slow queries
    (2, 10 min each) and a full log volume on the web hosts (3, 30 min each)."""
    shop = Shop(tmp_path)
    faults = [(day, db_down(), 2 * HOUR) for day in (1, 8, 20)]
    faults += [(day, db_slow(), 600) for day in (3, 4)]
    faults += [
        (day, [disk_full(node)], 1800) for day, node in ((2, "web-1"), (9, "web-2"), (21, "web-3"))
    ]
    for day, alerts, duration in sorted(faults, key=lambda f: f[0]):
        shop.fault(day * DAY, alerts, duration=duration)
    down = shop.problems.problems[shop.problem_of(shop.incidents()[0]["id"])]
    shop.problems.update(
        down.id, {"workaround": "fail over to <the> replica"}, "alice", T0 + 22 * DAY
    )
    shop.flush()
    return shop


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("meta", "line", "rect", "br", "link", "img"):
            self.stack.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(value)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag in ("line", "rect"):
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def test_report_ranks_problems_by_cost_with_a_plot_for_each_of_the_top_ones(tmp_path):
    shop = seeded(tmp_path)
    report = build_report(load_problems(shop.store), T0, T0 + 30 * DAY, top=2)
    ranking = [(r.title.split(" on ")[0], r.count, r.cost) for r in report.rows]
    assert ranking == [
        ("MysqlDown", 3, 3 * 2 * HOUR),
        ("NodeFilesystemAlmostOutOfSpace", 3, 3 * 1800.0),
        ("MysqlHighThreadsRunning, MysqlSlowQueries", 2, 2 * 600.0),
    ]
    markdown, html = render(report)
    assert markdown.startswith("# Problem review")
    assert "| 1 | PRB-" in markdown and "MysqlDown" in markdown
    assert "workaround: fail over to &lt;the&gt; replica" in markdown  # no raw HTML for a renderer to run
    assert markdown.count("\n## ") == 2  # detailed sections for the top 2 only
    parser = _Structure()
    parser.feed(html)
    assert parser.stack == [] and parser.external == []  # well nested, self-contained
    assert parser.tags.count("svg") == 2 and parser.tags.count("rect") >= 5
    assert "fail over to &lt;the&gt; replica" in html  # escaped
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1</title>", html)


def test_report_command_writes_markdown_and_html_from_the_store(tmp_path, capsys):
    shop = seeded(tmp_path)
    shop.store.close()
    (tmp_path / "data").mkdir()
    (tmp_path / "store.sqlite3").rename(tmp_path / "data" / "incidentd.sqlite3")
    out = tmp_path / "out"
    code = main(
        [
            "problems",
            "report",
            "--since",
            "30d",
            "--until",
            format_rfc3339(T0 + 30 * DAY),
            "--data-dir",
            str(tmp_path / "data"),
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    assert "3 problem(s), 8 incident(s)" in capsys.readouterr().out
    assert (out / "report.md").read_text().startswith("# Problem review")
    assert "<svg" in (out / "report.html").read_text()
    code = main(["problems", "report", "--since", "30d", "--data-dir", str(tmp_path / "nowhere")])
    assert code == 1 and "no store here" in capsys.readouterr().err
    code = main(["problems", "report", "--since", "soon", "--data-dir", str(tmp_path / "data")])
    assert code == 1


def test_a_period_without_incidents_gives_an_empty_report(tmp_path):
    shop = seeded(tmp_path)
    report = build_report(load_problems(shop.store), T0 + 60 * DAY, T0 + 90 * DAY)
    markdown, html = render(report)
    assert "No problem had an incident in this period." in markdown and "<svg" not in html


def test_sparkline_scales_to_the_busiest_period():
    assert sparkline([0, 1, 2, 4]) == "·▃▅█"


def test_the_plot_counts_incidents_on_the_calendar_day_they_opened(tmp_path):
    shop = seeded(tmp_path)  # T0 is midnight; the database went down on days 1, 8 and 20
    until = T0 + 30 * DAY + 5 * HOUR  # the period starts at 05:00 on day 0
    report = build_report(load_problems(shop.store), until - 30 * DAY, until)
    [down] = [r for r in report.rows if r.count == 3 and r.ttr_mean == 2 * HOUR]
    days = {format_rfc3339(start)[:10]: n for start, n in zip(report.bucket_starts, down.buckets, strict=True) if n}
    opened = sorted(format_rfc3339(link.opened_at)[:10] for link in down.links)
    assert sorted(days) == opened and set(days.values()) == {1}
    assert report.bucket_starts[0] == T0


def test_the_report_command_names_a_bad_until_in_one_line(tmp_path, capsys):
    assert main(["problems", "report", "--until", "garbage", "--data-dir", str(tmp_path)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("incidentd: --until: not an RFC 3339 timestamp")


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"not sqlite at all, a text file\n", "not an incidentd store (file is not a database)"),
     (b"", "not an incidentd store (no such table: meta)")],
)
def test_the_report_command_refuses_a_file_that_is_no_store_and_leaves_it_as_it_was(tmp_path, capsys, content, why):
    path = tmp_path / "incidentd.sqlite3"
    path.write_bytes(content)
    assert main(["problems", "report", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"incidentd: {path}: {why}"
    assert path.read_bytes() == content and not (tmp_path / "out").exists()


def test_the_report_command_refuses_a_store_of_a_newer_incidentd(tmp_path, capsys):
    Store(str(tmp_path / "incidentd.sqlite3"), threaded=False).close()
    with sqlite3.connect(tmp_path / "incidentd.sqlite3") as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    assert main(["problems", "report", "--data-dir", str(tmp_path)]) == 1
    assert "store schema version 999 is newer than this incidentd" in capsys.readouterr().err


def test_a_carriage_return_in_a_title_does_not_break_the_markdown_table(tmp_path):
    shop = seeded(tmp_path)
    pid = shop.problem_of(shop.incidents()[0]["id"])
    shop.problems.update(pid, {"title": "Latency\rspike | on orders\r\n- item"}, "alice", T0 + 22 * DAY)
    shop.flush()
    markdown, _ = render(build_report(load_problems(shop.store), T0, T0 + 30 * DAY))
    assert "\r" not in markdown
    [row] = [line for line in markdown.splitlines() if "Latency" in line and line.startswith("| ")]
    assert "Latency spike \\| on orders - item" in row


def test_a_period_of_years_is_charted_in_runs_of_weeks(tmp_path):
    shop = seeded(tmp_path)
    report = build_report(load_problems(shop.store), T0 - 3650 * DAY, T0 + 30 * DAY)
    assert all(len(r.buckets) <= 60 for r in report.rows)
    assert sum(report.rows[0].buckets) == report.rows[0].count
    markdown, _ = render(report)
    assert "recurrence (9 weeks)" in markdown
