"""The `incidentd` command (CONTRACT.md section 1)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable

from daemon.config import Config, ConfigError, load_config

# Other packages add subcommands here: name -> (configure parser, run) .
Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
_SUBCOMMANDS: dict[str, tuple[str, Subcommand]] = {}


def register_subcommand(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None],
                        run: Callable[[argparse.Namespace], int]) -> None:
    _SUBCOMMANDS[name] = (help_text, (configure, run))


def fail(message: str, code: int = 1) -> int:
    print(f"incidentd: {message}", file=sys.stderr)
    return code


def fail_first(errors: list[str]) -> int:
    """`fail` with the first of several errors and how many more there are (one line)."""
    return fail(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def _load(path: str | None) -> Config:
    return load_config(path)


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.app import WorkerFailed, serve
    from daemon.config import split_listen
    from daemon.logs import configure_logging
    from daemon.store import StoreError

    config = _load(args.config)
    if args.data_dir:
        config.data_dir = args.data_dir
    if args.listen:
        try:
            split_listen(args.listen)
        except ValueError as exc:
            return fail(str(exc))
        config.listen = args.listen
    from daemon import checks

    errors = checks.check_all(config)  # what check-config, replay and a reload refuse
    if errors:
        return fail_first(errors)
    configure_logging(config.log_level, config.log_format)
    import structlog

    for warning in checks.warnings(config):
        structlog.get_logger().warning("configuration warning", detail=warning)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config))
    except (OSError, StoreError) as exc:
        return fail(f"cannot start: {exc}")
    except WorkerFailed as exc:
        return fail(f"{exc}; the unprocessed alerts stay in the inbox for the next start")
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: it halves the event loop's share of each request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def check_config_errors(config_path: str) -> list[str]:
    """Every problem in the config and the files it names, as `file:line: message`."""
    from daemon import checks

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return exc.errors
    return checks.check_all(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from daemon import checks

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        errors, warnings = exc.errors, []
    else:
        # only the errors: nothing is started after, so what a start would take is not built
        errors, warnings = checks.check_all(config, report_only=True), checks.warnings(config)
    for line in errors + warnings:
        print(line, file=sys.stderr)  # as every command's errors; stdout has only the OK
    if errors:
        return 1
    print(f"{args.config}: OK")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from daemon import checks
    from daemon.logs import quiet_logging
    from daemon.replay import ReplayError, run_replay

    quiet_logging()
    config = _load(args.config)
    errors = checks.check_all(config)
    if errors:
        return fail_first(errors)
    try:
        run_replay(config, args.input, args.output)
    except ReplayError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{args.output}: cannot write: {exc.strerror or exc}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from daemon import checks
    from daemon.logs import quiet_logging

    quiet_logging()
    from detectors.nabcsv import DEFAULT_SPEC, detect_csv, spec_of

    spec = DEFAULT_SPEC
    if args.config is not None:
        config = _load(args.config)
        errors = checks.check_all(config)  # the whole config, as replay checks it
        if errors:
            return fail_first(errors)
        spec = spec_of(config)
    try:
        warnings = detect_csv(spec, args.input, args.output)
    except OSError as exc:  # as replay says it: which file, and what went wrong with it
        verb = "read" if exc.filename == args.input else "write"
        return fail(f"{exc.filename or args.output}: cannot {verb}: {exc.strerror or exc}")
    except ValueError as exc:
        return fail(str(exc))
    for warning in warnings:
        print(f"incidentd: warning: {warning}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="incidentd", description="Monitoring-driven incident and problem management")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", help="config file (default: built-in defaults)")
    run.add_argument("--listen", help="HOST:PORT to listen on (overrides the config)")
    run.add_argument("--data-dir", help="where the store lives (overrides the config)")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check-config", help="validate the config and every file it names")
    chk.add_argument("--config", required=True)
    chk.set_defaults(func=cmd_check_config)

    rep = sub.add_parser("replay", help="run an events file through the pipeline on a virtual clock")
    rep.add_argument("--config")
    rep.add_argument("--input", required=True)
    rep.add_argument("--output", required=True)
    rep.set_defaults(func=cmd_replay)

    det = sub.add_parser("detect", help="stream one time series (CSV) through the online detector")
    det.add_argument("--config")
    det.add_argument("--input", required=True)
    det.add_argument("--output", required=True)
    det.set_defaults(func=cmd_detect)

    for name, (help_text, (configure, run_fn)) in _SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        configure(sp)
        sp.set_defaults(func=run_fn)
    return p


def main(argv: list[str] | None = None) -> int:
    from daemon import plugins  # noqa: F401 - registers the packages' commands, routes, sections

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return fail_first(exc.errors)
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The `incidentd` command: `main`, then an exit that leaves the heap to the
    operating system. Freeing a replay's hundreds of thousands of objects one by one
    at interpreter shutdown takes a tenth of the run; by then every command has
    closed what it wrote (the store, the result file). Under a profiler or a tracer
    (cProfile, coverage) the interpreter exits as usual, so that they write out."""
    code = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    # Run the imported `daemon.cli`, not this `__main__` copy: the packages
    # register their subcommands on the former.
    from daemon.cli import entry as _entry

    _entry()
