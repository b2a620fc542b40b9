"""`check-config`: every configured file validated together, errors as `file:line: message`."""

from __future__ import annotations

from collections.abc import Callable

from daemon.config import Config

# Each package adds a checker: Config -> list of `file:line: message`.
Checker = Callable[[Config], list[str]]
_CHECKERS: dict[str, Checker] = {}


def register_checker(name: str, checker: Checker) -> None:
    _CHECKERS[name] = checker


def _check_files_exist(config: Config) -> list[str]:
    import os

    errors = []
    for key in ("cmdb", "rules"):
        for path in getattr(config, key):
            if not os.path.isfile(path):
                line = config.raw.line_of(key) if hasattr(config.raw, "line_of") else 0
                errors.append(f"{config.path}:{line}: {key} file not found: {path}")
    return errors


def check_all(config: Config) -> list[str]:
    from daemon import plugins  # noqa: F401

    errors = _check_files_exist(config)
    for checker in _CHECKERS.values():
        errors.extend(checker(config))
    return errors
