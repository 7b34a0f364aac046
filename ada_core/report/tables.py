"""A report table and its two downloads: CSV (full precision) and LaTeX (booktabs, escaped).

The HTML shows :attr:`Table.rows` (formatted cells); the CSV holds :attr:`Table.csv_rows`
(the unrounded numbers, one column per quantity) so a reader can recompute from it; the
LaTeX is the HTML table as a paper would print it.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
from dataclasses import dataclass

__all__ = ["Cell", "Table", "data_uri", "latex_escape"]

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}  # fmt: skip
_LATEX_UNICODE = {
    "\u2212": "$-$", "\u00d7": r"$\times$", "\u2013": "--", "\u2014": "---", "\u00b1": r"$\pm$",
    "\u0394": r"$\Delta$", "\u03b1": r"$\alpha$", "\u2264": r"$\leq$", "\u2265": r"$\geq$",
    "\u2020": r"\textsuperscript{\dag}", "\u00a0": "~",
}  # fmt: skip
_LATEX_RE = re.compile("|".join(re.escape(k) for k in [*_LATEX_SPECIAL, *_LATEX_UNICODE]))


def latex_escape(text: str) -> str:
    """``text`` safe in a LaTeX document: specials escaped, typographic signs as math.

    Characters outside ASCII that have no mapping are kept (a UTF-8 document prints them).
    """
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL.get(m[0]) or _LATEX_UNICODE[m[0]], text)


def data_uri(text: str, mime: str) -> str:
    """``text`` as a base64 ``data:`` URI, so a download link needs no server."""
    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"data:{mime};charset=utf-8;base64,{payload}"


@dataclass(frozen=True)
class Cell:
    """One displayed cell.

    Attributes:
        text: what the reader sees (true minus signs, brackets for intervals).
        strong: drawn bold: the best value of its column, or a Holm-significant comparison.
        note: a tooltip (why a number is missing, or a differing n).
        numeric: right-aligned, in a tabular figure font.
        shade: a CSS background colour (a heat-map cell), or ''.
    """

    text: str
    strong: bool = False
    note: str = ""
    numeric: bool = True
    shade: str = ""


def _csv_value(v: object) -> object:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else v


@dataclass(frozen=True)
class Table:
    """A table of the report.

    Attributes:
        key: HTML id and download file stem, e.g. ``"estimates-val"``.
        title: heading above the table.
        caption: sentences under it: what the numbers are, n, what the intervals mean.
        header: column headers of the displayed table.
        rows: displayed rows.
        csv_header: columns of the CSV download.
        csv_rows: unrounded values (None: empty cell).
        strong_means: what bold means in this table, said in the caption and the LaTeX.
    """

    key: str
    title: str
    caption: tuple[str, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    csv_header: tuple[str, ...]
    csv_rows: tuple[tuple[object, ...], ...]
    strong_means: str = ""

    def csv(self) -> str:
        """The CSV download: a header line, then :attr:`csv_rows` at full precision."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.csv_header)
        w.writerows([_csv_value(v) for v in row] for row in self.csv_rows)
        return buf.getvalue()

    def latex(self) -> str:
        """The LaTeX download: a ``table`` environment with booktabs rules, escaped."""
        align = "".join("r" if c.numeric else "l" for c in self.rows[0]) if self.rows else \
            "l" * len(self.header)  # fmt: skip

        def cell(c: Cell) -> str:
            t = latex_escape(c.text)
            return rf"\textbf{{{t}}}" if c.strong else t

        caption = " ".join(self.caption)
        if self.strong_means:
            caption += f" Bold: {self.strong_means}."
        lines = [
            "% requires \\usepackage{booktabs}",
            "\\begin{table}[ht]",
            "\\centering",
            f"\\caption{{{latex_escape(self.title)}. {latex_escape(caption)}}}",
            f"\\label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', self.key)}}}",
            f"\\begin{{tabular}}{{{align}}}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in self.header) + r" \\",
            "\\midrule",
            *(" & ".join(cell(c) for c in row) + r" \\" for row in self.rows),
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
        ]
        return "\n".join(lines) + "\n"

    def csv_uri(self) -> str:
        """:meth:`csv` as a data URI."""
        return data_uri(self.csv(), "text/csv")

    def latex_uri(self) -> str:
        """:meth:`latex` as a data URI."""
        return data_uri(self.latex(), "application/x-tex")
