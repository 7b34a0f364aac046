"""ada-scgm: spinal-cord grey-matter data sets for ADA.

``scgm`` (the SCGM challenge layout), ``bids`` (BIDS with derivative labels) and ``phantom``
(procedural T2*-like cord slices, the embedded default). Registered through the ``ada`` entry
point; build them with ``load_plugins().datasets.build(name, params)``.
"""

from ada_scgm.bids import BidsConfig, BidsDataset
from ada_scgm.phantom import PhantomConfig, PhantomDataset, generate
from ada_scgm.scgm import ScgmConfig, ScgmDataset

__all__ = [
    "BidsConfig",
    "BidsDataset",
    "PhantomConfig",
    "PhantomDataset",
    "ScgmConfig",
    "ScgmDataset",
    "generate",
]
