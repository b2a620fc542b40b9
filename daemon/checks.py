"""`check-config`: every configured file validated together, errors as `file:line: message`."""

from __future__ import annotations

from collections.abc import Callable

from daemon.config import CORE_KEYS, Config
from daemon.yamlsrc import line_of

# Each package adds a checker: Config -> list of `file:line: message`.
Checker = Callable[[Config], list[str]]
_CHECKERS: dict[str, Checker] = {}
_REPORTERS: dict[str, Checker] = {}  # see register_checker
_WARNERS: dict[str, Checker] = {}  # the same
_KEYS: set[str] = set(CORE_KEYS)  # the top-level keys some part of incidentd reads


def register_checker(name: str, checker: Checker, keys: tuple[str, ...] = (),
                     report: Checker | None = None, warn: Checker | None = None) -> None:
    """`checker` validates the top-level `keys` of the config (and the files they name).
    `report`, when given, finds the same errors without preparing what a start or a
    reload takes next (the CMDB the check builds): `check-config` only reports them.
    `warn` gives `file:line: warning: ...` lines for what is valid but likely not meant."""
    _CHECKERS[name] = checker
    if report is not None:
        _REPORTERS[name] = report
    if warn is not None:
        _WARNERS[name] = warn
    _KEYS.update(keys)


def warnings(config: Config) -> list[str]:
    """Every warning: unknown top-level keys, then what the checkers warn about."""
    return unknown_keys(config) + [w for warn in _WARNERS.values() for w in warn(config)]


def unknown_keys(config: Config) -> list[str]:
    """Warnings for the top-level keys nothing reads: a typo (`listne:`) that leaves a
    default in force. Not errors: the contract lets other tools' keys share the file."""
    from daemon import plugins  # noqa: F401 - they register the keys they read

    raw = config.raw
    if not isinstance(raw, dict):
        return []
    return [f"{config.path}:{line_of(raw, key)}: warning: unknown key {key!r}, ignored"
            f" (known: {', '.join(sorted(_KEYS))})" for key in raw if key not in _KEYS]


def _check_files_exist(config: Config) -> dict[str, list[str]]:
    """Files the config names that do not exist, under the part that reads them."""
    import os

    errors: dict[str, list[str]] = {}
    for key in ("cmdb", "rules"):
        for path in getattr(config, key):
            if not os.path.isfile(path):
                line = config.raw.line_of(key) if hasattr(config.raw, "line_of") else 0
                errors.setdefault(key, []).append(f"{config.path}:{line}: {key} file not found: {path}")
    return errors


def check_parts(config: Config, report_only: bool = False) -> dict[str, list[str]]:
    """The errors of each checker, by its name, with the files it reads that do not
    exist (a reload that finds the CMDB file gone is a failed CMDB reload). With
    `report_only`, the checkers' `report` variants where they have one."""
    from daemon import plugins  # noqa: F401

    found = {"config": [], **_check_files_exist(config)}
    for name, checker in _CHECKERS.items():
        if report_only:
            checker = _REPORTERS.get(name, checker)
        found[name] = found.get(name, []) + checker(config)
    return found


def check_all(config: Config, report_only: bool = False) -> list[str]:
    return [e for errors in check_parts(config, report_only).values() for e in errors]
