"""Entry point module of the plugin."""

from ada_core.hookspecs import hookimpl


@hookimpl
def ada_register(registry):
    """Registered components are added as they are implemented."""
