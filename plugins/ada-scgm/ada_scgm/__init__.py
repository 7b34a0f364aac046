"""ada-scgm plugin (being implemented)."""
