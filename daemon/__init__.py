"""incidentd: daemon."""
