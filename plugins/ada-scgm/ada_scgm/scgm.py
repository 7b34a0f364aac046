"""The Spinal Cord Grey Matter Segmentation challenge training layout (Prados et al. 2017).

Files ``site{s}-sc{nn}-image.nii.gz`` with one GM mask per rater,
``site{s}-sc{nn}-mask-r{1..4}.nii.gz``. In the raters' masks 1 is grey matter and values above
1 mark other structures (not GM). Images without any mask (the challenge's test subjects) are
listed as unlabelled.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ada_core import (ComponentConfig, DataError, SegDataset, Subject, Unused, Volume, suggest,
                      tags, used_if, used_when)
from ada_scgm._nifti import binary_label, check_pair, files_fingerprint, read_nifti

__all__ = ["ScgmConfig", "ScgmDataset"]

_FILE = re.compile(r"^site(\d+)-sc(\d+)-(image|mask-r(\d+))\.nii(\.gz)?$")
_ID = re.compile(r"^(site\d+-sc\d+)(?:-r(\d+))?$")


class ScgmConfig(ComponentConfig):
    root: str = Field("", description="Folder holding the site*-sc*-image/mask files.")
    raters: str = Field(
        "each",
        pattern=r"^(each|majority|rater:[1-9][0-9]*)$",
        description="'each': one sample per rater (the challenge's reference loaders); "
        "'majority': voxel-wise vote of all raters; 'rater:N': rater N only.",
    )
    n_raters: int = Field(
        4, ge=1, description="Raters per labelled image (mask-r1 .. mask-rN).",
        json_schema_extra=used_if("`raters` is 'each' or 'majority'"),
    )
    tie: Literal["gm", "background"] = Field(
        "gm", description="Majority vote tie (e.g. 2 of 4 raters): count the voxel as GM or not.",
        json_schema_extra=tags(used_when("raters", "majority"),
                               used_if("`n_raters` is even (an odd number of votes never ties)")),
    )
    sites: tuple[int, ...] = Field((), description="Only these site numbers (empty: all).")
    subjects: tuple[str, ...] = Field(
        (), description="Only these subjects, e.g. 'site1-sc01' (empty: all)."
    )
    label_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Binarise soft masks: a value strictly between 0 and 1 is GM when at or "
        "above it. Integer values above 1 (other structures) are never GM. None: soft values "
        "are an error.",
    )

    def _inactive(self) -> list[Unused]:
        if self.raters.startswith("rater:"):
            return [Unused("n_raters", None, why=f"{{prefix}}raters = {self.raters!r} reads that "
                           "rater's masks only", fix="set {prefix}raters = 'each' or 'majority'")]
        if self.raters == "majority" and self.n_raters % 2:
            return [Unused("tie", None, why=f"{{prefix}}n_raters = {self.n_raters} is odd, and a "
                           "vote of an odd number of raters never ties",
                           fix="set {prefix}n_raters to an even number")]  # fmt: skip
        return []


class ScgmDataset(SegDataset):
    """SCGM challenge training data; persons are ``site{s}-sc{nn}`` (raters share them)."""

    name: ClassVar[str] = "scgm"
    Config = ScgmConfig
    config: ScgmConfig

    @property
    def root(self) -> Path:
        return Path(self.config.root).expanduser()

    def _scan(self) -> dict[str, dict[str, Path]]:
        """``{"site1-sc01": {"image": path, "r1": path, ...}}`` after the filters."""
        root = self.root
        if not self.config.root or not root.is_dir():
            raise DataError(
                f"dataset 'scgm': root {str(root)!r} is not a folder; set data.params.root to "
                "the folder holding site*-sc*-image.nii.gz"
            )
        found: dict[str, dict[str, Path]] = {}
        for p in sorted(root.iterdir()):
            m = _FILE.match(p.name)
            if m:
                key = "image" if m.group(3) == "image" else f"r{int(m.group(4))}"
                found.setdefault(f"site{int(m.group(1))}-sc{m.group(2)}", {})[key] = p
        if not found:
            raise DataError(f"dataset 'scgm': no site*-sc*-image.nii.gz / -mask-r*.nii.gz in {root}")
        keep = dict(found)
        if self.config.sites:
            keep = {k: v for k, v in keep.items() if int(k[4 : k.index("-")]) in self.config.sites}
        if self.config.subjects:
            images = set()
            for s in self.config.subjects:
                m = _ID.match(s)
                if m is None or m.group(1) not in found:
                    raise DataError(f"dataset 'scgm': subject {s!r} not in {root}. "
                                    + suggest(s, found))  # fmt: skip
                images.add(m.group(1))  # a rater (site1-sc01-r2) selects its image
            keep = {k: v for k, v in keep.items() if k in images}
        if not keep:
            sites = sorted({k.split("-")[0] for k in found})
            raise DataError(f"dataset 'scgm': the filters select nothing in {root}; sites: {sites}")
        return keep

    def subjects(self) -> list[Subject]:
        """Labelled images as one subject per rater (``each``) or per image; unlabelled last."""
        out, unlabelled = [], []
        policy = self.config.raters
        for key, files in self._scan().items():
            site = key.split("-")[0]
            if not any(k.startswith("r") for k in files):
                unlabelled.append(Subject(key, site, key, labelled=False))
            elif policy == "each":
                raters = [f"{key}-r{r}" for r in range(1, self.config.n_raters + 1)]
                if key not in self.config.subjects and set(raters) & set(self.config.subjects):
                    raters = [r for r in raters if r in self.config.subjects]  # only those listed
                out += [Subject(r, site, key) for r in raters]
            else:
                out.append(Subject(key, site, key))
        return out + unlabelled

    def _path(self, key: str, part: str) -> Path:
        suffix = "image" if part == "image" else f"mask-{part}"
        return self.root / f"{key}-{suffix}.nii.gz"

    def load(self, subject: Subject) -> Volume:
        m = _ID.match(subject.id)
        if not m:
            raise DataError(f"dataset 'scgm': subject id {subject.id!r} is not 'site<s>-sc<nn>'")
        key, rater = m.group(1), m.group(2)
        files = self._scan().get(key, {})
        image_path = files.get("image", self._path(key, "image"))
        if "image" not in files:
            raise DataError(f"{image_path}: image missing for the masks of {key}")
        image = read_nifti(image_path)
        mask = None
        if subject.labelled:
            if rater is not None:
                wanted = [int(rater)]
            elif self.config.raters.startswith("rater:"):
                wanted = [int(self.config.raters.split(":")[1])]
            else:
                wanted = list(range(1, self.config.n_raters + 1))
            masks = []
            for r in wanted:
                path = files.get(f"r{r}", self._path(key, f"r{r}"))
                if f"r{r}" not in files:
                    raise DataError(f"{path}: rater mask missing (image {image_path.name}); "
                                    "the raters policy needs it")  # fmt: skip
                label = read_nifti(path)
                check_pair(image, label)
                masks.append(binary_label(label, True, self.config.label_threshold))
            votes = np.sum(masks, axis=0, dtype=np.int32)
            need = len(masks) / 2
            gm = votes >= need if self.config.tie == "gm" else votes > need
            mask = gm.astype(np.uint8)
        return Volume(
            subject=subject,
            image=image.data.astype(np.float32),
            mask=mask,
            spacing=image.spacing,
            source=str(image_path),
            meta={"raters": self.config.raters,
                  **({"label": ", ".join(str(files[f"r{r}"]) for r in wanted)} if mask is not None else {})},
        )

    def fingerprint(self) -> str:
        files = [p for f in self._scan().values() for p in f.values()]
        return f"scgm:{self.config.model_dump_json()}:{files_fingerprint(files, self.root)}"
