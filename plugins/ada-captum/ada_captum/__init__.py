"""ada-captum plugin (being implemented)."""
