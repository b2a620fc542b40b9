"""The notification package inside the daemon: what `build_pipeline` adds.

The policy is a pipeline listener (it runs in `run` and in `replay`); the
deliverer is a daemon part (`start`/`stop`/`reload`), so in replay nothing is
sent. The SLA tracker lives in `daemon.sla` and is assembled here too, since
both read the same routes and teams.
"""

from __future__ import annotations

import socket
from typing import Any

import structlog

from daemon.auth import parse_auth
from daemon.config import Config, ConfigError
from daemon.notify.config import NotifySettings, parse_notify
from daemon.notify.outbox import Deliverer
from daemon.notify.policy import NotifyPolicy
from daemon.notify.receivers import make_receiver
from daemon.notify.templates import TemplateError
from daemon.store import Store

log = structlog.get_logger("incidentd.notify")


def link_base(config: Config, settings: NotifySettings) -> str:
    """Where links in messages point: `notify.external_url` when set, else the API as this
    daemon serves it, over https when `tls:` is configured. Listening on every address
    (`0.0.0.0`, `::`), the host is this machine's name, as Prometheus and Alertmanager
    default their external URL: a link to 0.0.0.0 leads nowhere."""
    if settings.external_url:
        return settings.external_url
    scheme = "https" if parse_auth(config)[0].tls_cert else "http"
    host, _, port = config.listen.rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        return f"{scheme}://{socket.gethostname()}:{port}"
    return f"{scheme}://{config.listen}"


class NotifyPart:
    """Owns the policy (listener) and the deliverer (daemon part)."""

    def __init__(self, config: Config, incidents: Any, store: Store | None, clock: Any,
                 registry: Any = None) -> None:
        settings, errors = parse_notify(config)
        if errors:
            raise ConfigError(errors)
        self.config = config
        self.settings = settings
        self.policy = NotifyPolicy(settings, incidents, store, registry, link_base(config, settings))
        self.deliverer: Deliverer | None = None
        if store is not None:
            self.deliverer = Deliverer(settings, store, clock, registry)
            self.policy.listeners.append(self.deliverer.expect)

    async def start(self) -> None:
        if self.deliverer is not None:
            try:
                await self.deliverer.start()
            except TemplateError as exc:  # `run` checks less than check-config: one line, not a traceback
                raise ConfigError([str(exc)]) from exc
        log.info("notifications", receivers=sorted(self.settings.receivers),
                 routes=len(self.settings.routes), escalation_policies=sorted(self.settings.escalation_policies))

    async def stop(self) -> None:
        if self.deliverer is not None:
            await self.deliverer.stop()

    def reload(self, fresh: Config) -> list[str]:
        """The fresh config's notification sections; errors keep the running ones."""
        settings, errors = parse_notify(fresh)
        if errors:
            return errors
        self.settings = self.policy.settings = settings
        self.policy.link_base = link_base(self.config, settings)
        d = self.deliverer
        if d is not None:
            d.settings = settings
            for name, rc in settings.receivers.items():
                if d._session is None:
                    break
                lanes = d._receivers.get(name)
                receiver = make_receiver(rc, d._session)
                if lanes is None:
                    from daemon.notify.outbox import _ReceiverLanes

                    d._receivers[name] = _ReceiverLanes(receiver)
                else:
                    lanes.receiver = receiver
            d.receivers_changed()
        return []
