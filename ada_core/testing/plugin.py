"""ada_core.testing pytest plugin (being implemented)."""
