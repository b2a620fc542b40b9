"""The CMDB inside the daemon: reload hook, `GET /api/v1/cmdb/...`, `check-config`.

`CmdbPart` is what `daemon/build.py` registers as the `cmdb` component: the
daemon calls its `reload()` on SIGHUP and `POST /-/reload` and its
`add_routes()` when it builds the HTTP app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmdb.holder import CmdbHolder
from cmdb.loader import cmdb_warnings, validate_cmdb

if TYPE_CHECKING:
    from aiohttp import web

    from daemon.app import Daemon
    from daemon.config import Config


class CmdbPart:
    """The live CMDB as a daemon component."""

    def __init__(self, holder: CmdbHolder) -> None:
        self.holder = holder

    def reload(self, fresh: Config) -> list[str]:
        """Load the files of the fresh config; [] when the new CMDB is live, else its
        errors (the old one stays)."""
        if self.holder.reload(fresh.cmdb):
            return []
        return list(self.holder.last_errors) or [self.holder.last_error or "CMDB reload failed"]

    def add_routes(self, app: web.Application, daemon: Daemon) -> None:
        from aiohttp import web

        holder = self.holder

        async def get_status(request: web.Request) -> web.Response:
            return web.json_response(holder.status())

        async def get_ci(request: web.Request) -> web.Response:
            ci = request.match_info["id"]
            cmdb = holder.cmdb
            if ci not in cmdb:
                return web.json_response({"error": "no such CI", "detail": ci}, status=404)
            try:
                hops = int(request.query.get("hops", "1"))
            except ValueError:
                return web.json_response({"error": "invalid hops", "detail": "hops must be an integer"}, status=400)
            if hops < 1 or hops > 20:
                return web.json_response({"error": "invalid hops", "detail": "hops must be 1..20"}, status=400)
            view: dict[str, Any] = cmdb.to_dict(ci, hops)
            view["open_incidents"] = [
                {
                    "id": inc.id,
                    "state": inc.state,
                    "priority": inc.priority,
                    "title": inc.title,
                    "root_cause": inc.root_cause,
                    "role": "root_cause" if inc.root_cause == ci
                    else "alerting" if ci in inc.cis else "impacted",
                }
                for inc in daemon.incidents.open_incidents()
                if ci in inc.cis or inc.root_cause == ci or ci in inc.impacted
            ]
            return web.json_response(view)  # attrs were made JSON's own at load (`loader._plain`)

        app.router.add_get("/api/v1/cmdb", get_status)
        app.router.add_get("/api/v1/cmdb/cis/{id:.+}", get_ci)  # ids may hold slashes


def check_cmdb(config: Config) -> list[str]:
    """The CMDB files and the `correlation:` section, checked as a start or a reload
    checks them (a valid CMDB is built whole, for the load that follows)."""
    return _check(config, finish=True)


def report_cmdb(config: Config) -> list[str]:
    """`incidentd check-config`: the same errors, without finishing the CMDB."""
    return _check(config, finish=False)


def warn_cmdb(config: Config) -> list[str]:
    """`incidentd check-config` and start-up: what the CMDB files hold that is valid but
    likely not meant (two CIs with the same match block)."""
    return cmdb_warnings(_files(config)) if config.cmdb else []


def _files(config: Config) -> list[str]:
    """The CMDB files that exist (a missing one is the config checker's error)."""
    import os

    return [p for p in config.cmdb if os.path.isfile(p)]


def _check(config: Config, finish: bool) -> list[str]:
    from correlation.settings import CorrelationConfig, SettingErrors
    from daemon.yamlsrc import line_of

    errors = validate_cmdb(_files(config), finish) if config.cmdb else []
    raw = config.raw if isinstance(config.raw, dict) else {}
    if "correlation" in raw:
        try:
            CorrelationConfig.from_mapping(raw["correlation"])
        except SettingErrors as exc:  # each names its setting: on that setting's line
            errors += [f"{config.path}:{line_of(raw['correlation'], e.key)}: {e}" for e in exc.errors]
        except ValueError as exc:
            errors.append(f"{config.path}:{line_of(raw, 'correlation')}: correlation: {exc}")
    return errors
