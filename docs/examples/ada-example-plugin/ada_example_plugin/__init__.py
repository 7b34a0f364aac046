"""An example third-party ADA plugin (see docs/plugins.md)."""
