"""incidentd: correlation."""
