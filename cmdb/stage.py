"""The pipeline stage that maps each alert to its CI."""

from __future__ import annotations

from cmdb.holder import CmdbHolder
from daemon.pipeline import AlertEvent


class CmdbStage:
    """Sets `event.ci` from the live CMDB (most specific match wins; None when no CI matches)."""

    name = "cmdb"

    def __init__(self, holder: CmdbHolder) -> None:
        self.holder = holder

    def process(self, events: list[AlertEvent], now: float) -> list[AlertEvent]:
        cmdb = self.holder.cmdb
        for event in events:
            if event.ci is None:
                event.ci = cmdb.ci_for(event.alert.labels)
        return events
