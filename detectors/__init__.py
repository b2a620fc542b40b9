"""incidentd: detectors."""
