"""Builds the CMDB stage and the correlator from the config (called by daemon/build.py)."""

from __future__ import annotations

from typing import Any

from cmdb.holder import CmdbHolder
from cmdb.loader import CmdbError
from cmdb.service import CmdbPart
from cmdb.stage import CmdbStage
from correlation.engine import TopologyCorrelator
from correlation.settings import CorrelationConfig, SettingErrors


class CorrelationSetupError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def build_correlation(
    config: Any, fallback: Any, registry: Any = None, clock: Any = None
) -> tuple[CmdbStage, TopologyCorrelator, CmdbPart]:
    """The CMDB stage, the topology correlator (with `fallback` for alerts outside the CMDB), and the reloadable part."""
    raw = config.raw if isinstance(config.raw, dict) else {}
    try:
        settings = CorrelationConfig.from_mapping(raw.get("correlation"))
    except SettingErrors as exc:
        raise CorrelationSetupError([f"{config.path}: {e}" for e in exc.errors]) from exc
    except ValueError as exc:
        raise CorrelationSetupError([f"{config.path}: correlation: {exc}"]) from exc
    holder = CmdbHolder(config.cmdb, clock=getattr(clock, "now", None), registry=registry)
    try:
        holder.load()
    except CmdbError as exc:
        raise CorrelationSetupError([str(e) for e in exc.errors]) from exc
    correlator = TopologyCorrelator(lambda: holder.cmdb, settings, fallback)
    # move to a new CMDB at once, not at the next alert: the old graph can then be freed
    holder.on_reload(lambda _cmdb: correlator.explainer)
    return CmdbStage(holder), correlator, CmdbPart(holder)
