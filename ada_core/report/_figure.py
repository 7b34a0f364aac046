"""A report figure: a matplotlib ``Figure`` on the Agg canvas, its title and its caption.

No pyplot and no ``matplotlib.use``: importing the report changes no global state, so it is
safe in a notebook or a process that already drew with another backend.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from ada_core.runfolder import RunSummary

__all__ = ["ReportFigure", "branch_colors", "new_figure"]


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report.

    Attributes:
        key: its HTML id, e.g. ``"forest"``.
        title: the heading, e.g. ``"Figure 4: erased-region IoU"``.
        caption: sentences generated from the numbers drawn (what each mark is, n, bands).
        figure: the figure, drawn; encoded by :meth:`png`.
    """

    key: str
    title: str
    caption: str
    figure: Figure

    def png(self, dpi: int = 110) -> bytes:
        """The figure as PNG bytes."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()

    def data_uri(self, dpi: int = 110) -> str:
        """The PNG as a ``data:image/png;base64,...`` URI, for an offline page."""
        return "data:image/png;base64," + base64.b64encode(self.png(dpi)).decode("ascii")


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` x ``height`` inches on an Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def branch_colors(summary: RunSummary) -> dict[str, tuple[float, ...]]:
    """One colour per branch label, the same in every figure (standard is black)."""
    palette = colormaps["tab10"].colors
    labels = [b.label for b in summary.branches if b.kind != "standard"]
    out: dict[str, tuple[float, ...]] = {"standard": (0.0, 0.0, 0.0)}
    out.update({label: palette[i % len(palette)] for i, label in enumerate(labels)})
    return out
