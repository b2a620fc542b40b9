"""Builds the detector part from the config (called by `daemon.build`)."""

from __future__ import annotations

from daemon.clock import Clock
from daemon.config import Config, ConfigError
from daemon.metrics import Metrics
from daemon.store import Store
from detectors.config import load_detector_settings
from detectors.stage import DetectorPart


def build_detectors(config: Config, clock: Clock, metrics: Metrics, store: Store) -> DetectorPart:
    """The `DetectorPart` for `config`; `ConfigError` with every broken field."""
    settings, errors = load_detector_settings(config)
    if errors:
        raise ConfigError(errors)
    return DetectorPart(settings, clock, metrics, store)
