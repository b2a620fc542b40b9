"""incidentd: rules."""
