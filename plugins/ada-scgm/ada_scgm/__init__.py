"""ada-scgm: spinal-cord grey-matter data sets for ADA.

``scgm`` (the SCGM challenge layout), ``bids`` (BIDS with derivative labels) and ``phantom``
(procedural T2*-like cord slices, the embedded default); and ``oracle``, the phantom's
planted-effect control (an attributor that erases the phantom's context cue). Registered
through the ``ada`` entry point; build them with ``load_plugins().datasets.build(name, params)``.
"""

from ada_scgm.bids import BidsConfig, BidsDataset
from ada_scgm.oracle import OracleAttributor, OracleConfig
from ada_scgm.phantom import PhantomConfig, PhantomDataset, generate
from ada_scgm.scgm import ScgmConfig, ScgmDataset

__all__ = [
    "BidsConfig",
    "BidsDataset",
    "OracleAttributor",
    "OracleConfig",
    "PhantomConfig",
    "PhantomDataset",
    "ScgmConfig",
    "ScgmDataset",
    "generate",
]
