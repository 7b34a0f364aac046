"""A BIDS data set with manual labels under ``derivatives``.

Images ``sub-X[/ses-Y]/anat/<stem>_<image_suffix>.nii.gz``; GM labels
``<labels_dir>/sub-X[/ses-Y]/anat/<stem>_<image_suffix>_<label_suffix>.nii.gz`` and optional cord
labels with ``cord_suffix``; the site comes from a column of ``participants.tsv``.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
import warnings
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from ada_core import ComponentConfig, DataError, DataWarning, SegDataset, Subject, Volume, suggest
from ada_scgm._nifti import binary_label, check_pair, files_fingerprint, read_nifti

__all__ = ["BidsConfig", "BidsDataset"]

log = logging.getLogger(__name__)


def _nifti_path(folder: Path, stem: str) -> Path:
    """``folder/stem.nii.gz``, or ``stem.nii`` when only that exists."""
    gz, plain = folder / f"{stem}.nii.gz", folder / f"{stem}.nii"
    return plain if plain.is_file() and not gz.is_file() else gz


def _scan_entities(stem: str, suffix: str) -> tuple[str, list[str]]:
    """``("sub-X[_ses-Y]", [the other entities, e.g. "run-2"])`` of an image's file stem."""
    parts = stem[: -len(suffix) - 1].split("_") if stem.endswith("_" + suffix) else stem.split("_")
    sub, rest = parts[0], parts[1:]
    ses = [e for e in rest if e.startswith("ses-")][:1]
    return "_".join([sub, *ses]), [e for e in rest if e not in ses]


def _run_order(extra: list[str]) -> tuple[int, str]:
    """Sort key of a scan's other entities: run-1 (or no run) first, then by run number."""
    run = next((e[4:] for e in extra if e.startswith("run-")), "1")
    return (int(run) if run.isdigit() else 1 << 30), "_".join(e for e in extra if not e.startswith("run-"))


class BidsConfig(ComponentConfig):
    root: str = Field("", description="The BIDS dataset folder (holding sub-*/ and derivatives/).")
    image_suffix: str = Field("T2starw", description="BIDS suffix of the images.")
    label_suffix: str = Field("gmseg-manual", description="Suffix of the grey-matter labels.")
    cord_suffix: str = Field(
        "seg-manual",
        description='Suffix of the cord labels (used for cropping when present); "": none.',
    )
    labels_dir: str = Field("derivatives/labels", description="Folder of the labels, from root.")
    site_column: str = Field(
        "Site",
        description='participants.tsv column naming the site; "" (site_column = "", or '
        "--set data.params.site_column=\"\"): no participants.tsv needed, every site is "
        "'unknown'.",
    )
    person_pattern: str = Field(
        r"^(?P<person>.+?)(?:[-_]?[Ss]es[-_]?[0-9A-Za-z]*)?$",
        description="Regex on the subject label whose 'person' group groups sessions of one "
        "person (the default maps 9709Ses1 and 9709Ses2 to 9709).",
    )
    sites: tuple[str, ...] = Field((), description="Only these sites (empty: all).")
    subjects: tuple[str, ...] = Field((), description="Only these subjects, e.g. 'sub-9418'.")
    missing_label: Literal["unlabelled", "error"] = Field(
        "unlabelled",
        description="An image without a GM label: list it as unlabelled (reported, not "
        "trained on) or fail when it is loaded.",
    )
    label_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Binarise soft labels: a value strictly between 0 and 1 is GM when at or "
        "above it (integer values follow gm_values and other_values, never the threshold). "
        "None: soft values are an error.",
    )
    gm_values: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (1,),
        min_length=1,
        description="Integer label values that are grey matter (e.g. [1]; the GM code(s) of a "
        "label that marks several structures).",
    )
    other_values: Literal["error", "background"] = Field(
        "error",
        description="Positive integer label values outside gm_values: 'error', or "
        "'background' when they mark other structures (white matter, CSF, ...), which are "
        "never GM.",
    )

    @field_validator("site_column", "cord_suffix", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value  # Python callers may still write None


class BidsDataset(SegDataset):
    """BIDS images with derivative GM labels; sessions of one person share ``Subject.person``."""

    name: ClassVar[str] = "bids"
    Config = BidsConfig
    config: BidsConfig

    def __init__(self, config: BidsConfig | None = None) -> None:
        super().__init__(config)
        try:
            self._person = re.compile(self.config.person_pattern)
        except re.error as e:
            raise DataError(f"dataset 'bids': person_pattern is not a valid regex: {e}") from None
        if "person" not in self._person.groupindex:
            raise DataError("dataset 'bids': person_pattern needs a named group (?P<person>...)")
        self._files: dict[str, dict[str, Path]] | None = None

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser()

    def _sites(self) -> dict[str, str]:
        col = self.config.site_column
        if not col:
            return {}
        tsv = self.root / "participants.tsv"
        if not tsv.is_file():
            raise DataError(
                f"{tsv}: not found; it names the sites (column {col!r}). Add it, or set "
                'site_column = "" in the data set\'s params (--set data.params.site_column="") '
                "to give every subject site 'unknown'"
            )
        try:
            with tsv.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
        except UnicodeDecodeError as e:
            raise DataError(
                f"{tsv}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), as BIDS requires"
            ) from None
        if rows and col not in rows[0]:
            raise DataError(f"{tsv}: no column {col!r}. " + suggest(col, list(rows[0])))
        return {r.get("participant_id", ""): (r.get(col) or "n/a").strip() for r in rows}

    def _scan(self) -> dict[str, dict[str, Path]]:
        root, cfg = self.root, self.config
        if not cfg.root or not root.is_dir():
            raise DataError(f"dataset 'bids': root {str(root)!r} is not a folder; set "
                            "data.params.root to the BIDS dataset")  # fmt: skip
        images = sorted(
            p for p in root.glob(f"sub-*/**/*_{cfg.image_suffix}.nii*")
            if p.name.endswith((".nii", ".nii.gz"))
        )  # fmt: skip
        if not images:
            raise DataError(f"dataset 'bids': no images sub-*/**/*_{cfg.image_suffix}.nii.gz "
                            f"in {root}; check root and image_suffix")  # fmt: skip
        stems = {p: p.name.split(".nii")[0] for p in images}
        scans: dict[str, list[tuple[tuple[int, str], str, Path]]] = {}
        for p, stem in stems.items():
            short, extra = _scan_entities(stem, cfg.image_suffix)
            scans.setdefault(short, []).append((_run_order(extra), "_".join(extra), p))
        found: dict[str, dict[str, Path]] = {}
        for short, items in scans.items():
            # The first run (run-1, or no run entity) is the subject itself; further runs are
            # named as runs, so adding a run-2 beside run-1 never renames the subject.
            for i, (_, extra, p) in enumerate(sorted(items)):
                sid = short if i == 0 or not extra else f"{short}_{extra}"
                if sid in found:
                    raise DataError(f"dataset 'bids': {p} and {found[sid]['image']} are both "
                                    f"scan {sid!r}; keep one, or tell them apart with a run- "
                                    "or acq- entity")  # fmt: skip
                stem = stems[p]
                labels = root / cfg.labels_dir / p.parent.relative_to(root)
                entry = {"image": p, "label": _nifti_path(labels, f"{stem}_{cfg.label_suffix}")}
                if cfg.cord_suffix:
                    entry["cord"] = _nifti_path(labels, f"{stem}_{cfg.cord_suffix}")
                found[sid] = entry
        return dict(sorted(found.items()))

    def _orphan_labels(self, found: dict[str, dict[str, Path]]) -> list[tuple[Path, Path]]:
        """(label, the image it needs) for label files under ``labels_dir`` no image claims."""
        cfg, labels = self.config, self.root / self.config.labels_dir
        claimed = {f[k] for f in found.values() for k in ("label", "cord") if k in f}
        out = []
        for suffix in filter(None, (cfg.label_suffix, cfg.cord_suffix)):
            for p in labels.glob(f"sub-*/**/*_{cfg.image_suffix}_{suffix}.nii*"):
                if p.name.endswith((".nii", ".nii.gz")) and p not in claimed:
                    stem = p.name.split(".nii")[0][: -len(suffix) - 1]
                    out.append((p, self.root / p.parent.relative_to(labels) / f"{stem}.nii.gz"))
        return sorted(out)

    def _warn_orphans(self, found: dict[str, dict[str, Path]]) -> None:
        orphans = self._orphan_labels(found)
        if orphans:
            rows = [f"{label} (no image {image})" for label, image in orphans[:5]]
            more = f"; and {len(orphans) - 5} more" if len(orphans) > 5 else ""
            warnings.warn(
                f"dataset 'bids': {len(orphans)} label file(s) without an image, not used: "
                f"{'; '.join(rows)}{more}. Add the images or check image_suffix",
                DataWarning,
                stacklevel=3,
            )

    def _person_of(self, sub: str) -> str:
        m = self._person.match(sub[4:])
        return "sub-" + (m.group("person") if m and m.group("person") else sub[4:])

    def _chosen(self, found: dict[str, dict[str, Path]], persons: dict[str, str]) -> set[str] | None:
        """The scans ``subjects`` selects: a scan id (``sub-01_ses-1_run-2``) selects that scan,
        a participant id (``sub-01``, the participants.tsv id) or a session (``sub-01_ses-1``)
        every run of it, a person (``sub-9709``) every session of that person."""
        if not self.config.subjects:
            return None
        names: dict[str, set[str]] = {}
        for sid in found:
            parts = sid.split("_")
            keys = {sid, parts[0], persons[sid]}
            if len(parts) > 1 and parts[1].startswith("ses-"):
                keys.add("_".join(parts[:2]))
            for key in keys:
                names.setdefault(key, set()).add(sid)
        chosen: set[str] = set()
        for name in self.config.subjects:
            if name not in names:
                raise DataError(f"dataset 'bids': subject {name!r} not found in {self.root}. "
                                + suggest(name, names))  # fmt: skip
            chosen |= names[name]
        return chosen

    def subjects(self) -> list[Subject]:
        cfg = self.config
        found = self._scan()
        sites = self._sites()
        persons = {sid: self._person_of(sid.split("_")[0]) for sid in found}
        chosen = self._chosen(found, persons)
        out = []
        for sid, files in found.items():
            sub = sid.split("_")[0]
            site = sites.get(sub, "unknown") if cfg.site_column else "unknown"
            if cfg.site_column and sub not in sites:
                log.warning("%s: not in participants.tsv; its site is 'unknown'", sub)
            site = "unknown" if site in ("", "n/a") else site
            if cfg.sites and site not in cfg.sites:
                continue
            if chosen is not None and sid not in chosen:
                continue
            person = persons[sid]
            ses = next((e[4:] for e in sid.split("_") if e.startswith("ses-")), None)
            if ses is None and person != sub:
                ses = sub[len(person) :].lstrip("-_")
            labelled = files["label"].is_file() or cfg.missing_label == "error"
            out.append(Subject(sid, site, person, ses, labelled))
        if not out:
            all_sites = sorted({s for s in sites.values()})
            raise DataError(f"dataset 'bids': the filters select nothing in {self.root}; "
                            f"sites: {all_sites}")  # fmt: skip
        self._warn_orphans(found)
        self._files = found
        return out

    def load(self, subject: Subject) -> Volume:
        if self._files is None or subject.id not in self._files:
            self._files = self._scan()
        files = self._files.get(subject.id)
        if files is None:
            raise DataError(f"dataset 'bids': subject {subject.id!r} not found in {self.root}")
        image = read_nifti(files["image"])
        mask = cord = None
        if subject.labelled:
            if not files["label"].is_file():
                raise DataError(f"{files['label']}: GM label missing for image {files['image']}")
            label = read_nifti(files["label"])
            check_pair(image, label)
            cfg = self.config
            others = cfg.other_values == "background"
            mask = binary_label(label, others, cfg.label_threshold, cfg.gm_values)
            if "cord" in files and files["cord"].is_file():
                cord_nii = read_nifti(files["cord"])
                check_pair(image, cord_nii)
                cord = binary_label(cord_nii, others, cfg.label_threshold, values_setting=None)
        return Volume(
            subject=subject,
            image=image.data.astype(np.float32),
            mask=mask,
            spacing=image.spacing,
            cord=cord,
            source=str(files["image"]),
            meta={"label": str(files["label"])} if mask is not None else {},
        )

    def fingerprint(self) -> str:
        files = [p for f in self._scan().values() for p in f.values()]
        files.append(self.root / "participants.tsv")
        return f"bids:{self.config.model_dump_json()}:{files_fingerprint(files, self.root)}"
