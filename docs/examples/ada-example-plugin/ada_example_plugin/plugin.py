"""Entry point module: ADA imports it and calls ``ada_register``."""

from ada_core import hookimpl

from ada_example_plugin.integrated_gradients import IntegratedGradientsAttributor


@hookimpl
def ada_register(registry):
    registry.attributors.add(IntegratedGradientsAttributor)
