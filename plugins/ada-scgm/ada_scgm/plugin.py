"""Entry point module of the ada-scgm plugin: the ``scgm``, ``bids`` and ``phantom`` data sets,
and the phantom's planted-effect control, the ``oracle`` attributor."""

from __future__ import annotations

from ada_core import Registry, hookimpl


@hookimpl
def ada_register(registry: Registry) -> None:
    from ada_scgm.bids import BidsDataset
    from ada_scgm.oracle import OracleAttributor
    from ada_scgm.phantom import PhantomDataset
    from ada_scgm.scgm import ScgmDataset

    registry.datasets.add(ScgmDataset)
    registry.datasets.add(BidsDataset)
    registry.datasets.add(PhantomDataset)
    registry.attributors.add(OracleAttributor)
