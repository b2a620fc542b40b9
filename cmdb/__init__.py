"""incidentd: cmdb."""
