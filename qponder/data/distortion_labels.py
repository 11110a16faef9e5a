"""What is wrong with each image of a labelled dataset, in the shared distortion kinds of
:data:`qponder.reasoning.KINDS`: the ground truth for what a reasoning says.

:func:`distortion_truth` reads what the adapters put into ``sample.meta`` (and, where the
adapter keeps only the file name, parses the name, whose format each dataset fixes) and maps
the dataset's own distortion type to a shared kind with the table of that dataset:

- KADID-10k (``kadid``; 25 types x 5 levels, ``I01_02_03.png`` = reference 1, type 2,
  level 3): :data:`KADID10K_TYPES`, the types of Lin, Hosu and Saupe (QoMEX 2019);
- TID2013 (``tid2013``; 24 types x 5 levels, ``i01_08_3.bmp``) and TID2008 (its first 17
  types x 4 levels, through ``icbcbicc``): :data:`TID2013_TYPES`, the types of Ponomarenko
  et al. (Signal Processing: Image Communication, 2015);
- CSIQ (``csiq``; 6 types x 4-5 levels, ``1600.AWGN.1.png``): :data:`CSIQ_TYPES`;
- LIVE (through ``icbcbicc`` only; 5 types, no levels): :data:`LIVE_TYPES`;
- the synthetic dataset (``meta["distortions"]``: every kind and level): the aspect each
  synthetic kind affects (:data:`SYNTHETIC_ASPECTS`).

A type is mapped to the kind a viewer would name, not to the paper's family: KADID's
"denoise" and TID2013's "image denoising" smooth texture away, so they are ``blur``; TID2013's
"quantisation noise" shows as banding, so it is ``artefacts``. A type with no single shared
kind maps to None and is listed in ``DistortionTruth.unmapped`` (metrics leave such images
out). Levels are the dataset's own (1 = mildest); a type whose level is not a severity (the
mean opinion score is not monotone in it, because its levels step both ways) keeps its kind
with level None. The mean scores by level behind those decisions come from the released
labels (``KADID-10k.csv``, ``TID2013.csv`` of the icbcbicc collection).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Any

from qponder.data.samples import Sample
from qponder.data.synthetic import DISTORTIONS


@dataclass(frozen=True)
class DatasetType:
    """One distortion type of a dataset and its shared kind.

    Attributes:
        name: The type as the dataset's paper names it.
        kind: A key of :data:`qponder.reasoning.KINDS`, or None when none fits.
        graded: Whether the level is a severity (monotone in the opinion scores).
        note: Why, where the mapping is not obvious.
    """

    name: str
    kind: str | None
    graded: bool = True
    note: str = ""


_T = DatasetType
KADID10K_TYPES: dict[int, DatasetType] = {
    1: _T("Gaussian blur", "blur"),
    2: _T("lens blur", "blur"),
    3: _T("motion blur", "blur"),
    4: _T("colour diffusion", "colour", note="colours bleed across edges"),
    5: _T("colour shift", "colour", note="a colour channel is displaced: colour fringes"),
    6: _T("colour quantisation", "colour", note="a reduced palette"),
    7: _T("colour saturation 1 (HSV)", "colour"),
    8: _T("colour saturation 2 (Lab)", "colour"),
    9: _T("JPEG2000", "compression"),
    10: _T("JPEG", "compression"),
    11: _T("white noise", "noise"),
    12: _T("white noise in colour component", "noise"),
    13: _T("impulse noise", "noise"),
    14: _T("multiplicative noise", "noise"),
    15: _T("denoise", "blur", note="denoising smooths texture away: seen as blur"),
    16: _T("brighten", "exposure"),
    17: _T("darken", "exposure"),
    18: _T(
        "mean shift", "exposure", graded=False,
        note="mean score by level 4.22, 4.52, 4.60, 4.37, 3.90: the shift goes both ways",
    ),
    19: _T("jitter", "artefacts", note="pixels displaced at random"),
    20: _T("non-eccentricity patch", "artefacts", note="patches copied to wrong places"),
    21: _T("pixelate", "resolution"),
    22: _T("quantisation", "artefacts", note="grey-level quantisation: banding"),
    23: _T("colour block", "artefacts", note="uniform coloured blocks pasted on the image"),
    24: _T("high sharpen", "artefacts", note="over-sharpening: halos"),
    25: _T(
        "contrast change", "contrast", graded=False,
        note="mean score by level 3.42, 3.86, 4.29, 4.14, 3.32: levels raise and lower contrast",
    ),
}  # fmt: skip

TID2013_TYPES: dict[int, DatasetType] = {
    1: _T("additive Gaussian noise", "noise"),
    2: _T("additive noise in colour components", "noise"),
    3: _T("spatially correlated noise", "noise"),
    4: _T("masked noise", "noise"),
    5: _T("high frequency noise", "noise"),
    6: _T("impulse noise", "noise"),
    7: _T("quantisation noise", "artefacts", note="coarse quantisation: banding, false contours"),
    8: _T("Gaussian blur", "blur"),
    9: _T("image denoising", "blur", note="denoising smooths texture away: seen as blur"),
    10: _T("JPEG compression", "compression"),
    11: _T("JPEG2000 compression", "compression"),
    12: _T("JPEG transmission errors", "artefacts", note="corrupted blocks"),
    13: _T("JPEG2000 transmission errors", "artefacts", note="corrupted regions"),
    14: _T("non eccentricity pattern noise", "artefacts", note="patches copied to wrong places"),
    15: _T(
        "local block-wise distortions of different intensity", "artefacts", graded=False,
        note="mean score rises with the level (3.28 .. 4.07)",
    ),
    16: _T("mean shift (intensity shift)", "exposure"),
    17: _T(
        "contrast change", "contrast", graded=False,
        note="mean score by level 5.63, 6.48, 4.48, 6.29, 3.45: levels alternate decrease "
        "and increase",
    ),
    18: _T("change of colour saturation", "colour"),
    19: _T("multiplicative Gaussian noise", "noise"),
    20: _T("comfort noise", "noise", note="texture replaced by synthetic noise"),
    21: _T(
        "lossy compression of noisy images", "compression",
        note="the level is the compression; the added noise is partly smoothed by it",
    ),
    22: _T("image colour quantisation with dither", "colour"),
    23: _T("chromatic aberrations", "colour", note="colour fringes"),
    24: _T(
        "sparse sampling and reconstruction", None,
        note="reconstruction from sparse samples mixes blur and ringing: no single kind",
    ),
}  # fmt: skip

# keys are lower-case: the workbook's dst_type, the folder or file-name token, and the
# icbcbicc collection's dis_type
CSIQ_TYPES: dict[str, DatasetType] = {
    **dict.fromkeys(("awgn", "noise"), _T("additive white Gaussian noise", "noise")),
    **dict.fromkeys(("jpeg",), _T("JPEG compression", "compression")),
    **dict.fromkeys(("jpeg2000", "jpeg 2000", "jp2k"), _T("JPEG2000 compression", "compression")),
    **dict.fromkeys(("fnoise", "pink_noise"), _T("additive pink Gaussian noise", "noise")),
    **dict.fromkeys(("blur", "gblur"), _T("Gaussian blur", "blur")),
    **dict.fromkeys(("contrast", "contrast dist."), _T("global contrast decrements", "contrast")),
}

LIVE_TYPES: dict[str, DatasetType] = {
    "jp2k": _T("JPEG2000 compression", "compression"),
    "jpeg": _T("JPEG compression", "compression"),
    "wn": _T("white Gaussian noise", "noise"),
    "gblur": _T("Gaussian blur", "blur"),
    "fastfading": _T(
        "JPEG2000 over a fast-fading Rayleigh channel", "artefacts", note="transmission errors"
    ),
}

# synthetic aspect (qponder.data.synthetic.SEVERITY_COLUMNS) -> shared kind
SYNTHETIC_ASPECTS: dict[str, str] = {
    "sharpness": "blur",
    "noise": "noise",
    "compression": "compression",
    "resolution": "resolution",
    "exposure": "exposure",
    "contrast": "contrast",
    "colour": "colour",
}

_KADID_NAME = re.compile(r"^I\d+_(\d+)_(\d+)\.\w+$", re.IGNORECASE)
_TID_NAME = re.compile(r"^i\d+_(\d+)_(\d+)\.\w+$", re.IGNORECASE)
_CSIQ_NAME = re.compile(r"^[^.]+\.([^.]+)\.(\d+)\.png$", re.IGNORECASE)
_COLLECTION = {
    "kadid-10k": "kadid10k",
    "tid2013": "tid2013",
    "tid2008": "tid2008",
    "csiq": "csiq",
    "live": "live",
}


@dataclass(frozen=True)
class DistortionTruth:
    """The known distortions of one image, in shared kinds.

    Attributes:
        kinds: Shared kind -> level (1 = mildest; the dataset's own scale, 1..5 or 1..4), or
            None when the level is unknown or not a severity.
        pristine: The image is undistorted.
        dataset: ``"kadid10k"``, ``"tid2013"``, ``"tid2008"``, ``"csiq"``, ``"live"`` or
            ``"synthetic"``.
        types: The dataset's own distortion types of the image (``"kadid10k:21 pixelate"``).
        unmapped: Those of ``types`` with no shared kind.
    """

    kinds: Mapping[str, int | None] = field(hash=False)
    pristine: bool
    dataset: str
    types: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every distortion of the image maps to a shared kind."""
        return not self.unmapped

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (read back by :meth:`from_dict`)."""
        return {
            "kinds": dict(self.kinds),
            "pristine": self.pristine,
            "dataset": self.dataset,
            "types": list(self.types),
            "unmapped": list(self.unmapped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistortionTruth:
        """The truth a prediction row recorded with :meth:`to_dict`."""
        return cls(
            MappingProxyType(dict(data.get("kinds") or {})),
            bool(data.get("pristine")),
            str(data.get("dataset", "")),
            tuple(data.get("types") or ()),
            tuple(data.get("unmapped") or ()),
        )


def _truth(
    dataset: str, code: str, spec: DatasetType | None, level: int | None
) -> DistortionTruth | None:
    if spec is None:
        return None
    label = f"{dataset}:{code} {spec.name}"
    if spec.kind is None:
        return DistortionTruth({}, False, dataset, (label,), (label,))
    lvl = level if spec.graded and level is not None and 1 <= level <= 5 else None
    return DistortionTruth(MappingProxyType({spec.kind: lvl}), False, dataset, (label,))


def _int(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _name(sample: Sample) -> str:
    return PurePath(str(sample.id).replace("\\", "/")).name


def _numbered(
    sample: Sample, dataset: str, table: dict[int, DatasetType], pattern: re.Pattern[str]
) -> DistortionTruth | None:
    meta = sample.meta or {}
    code, level = _int(meta.get("distortion_type")), _int(meta.get("level"))
    if code is None or level is None:
        m = pattern.match(_name(sample))
        if m is None:
            return None
        code, level = int(m.group(1)), int(m.group(2))
    return _truth(dataset, f"{code:02d}", table.get(code), level)


def _csiq(sample: Sample) -> DistortionTruth | None:
    meta = sample.meta or {}
    token, level = meta.get("distortion"), _int(meta.get("level"))
    m = _CSIQ_NAME.match(_name(sample))
    if m and (token is None or level is None or str(token).lower() not in CSIQ_TYPES):
        token, level = m.group(1), int(m.group(2))
    if token is None:
        return None
    key = str(token).strip().lower()
    return _truth("csiq", key, CSIQ_TYPES.get(key), level)


def _synthetic(distortions: list) -> DistortionTruth | None:
    kinds: dict[str, int | None] = {}
    types, unmapped = [], []
    for d in distortions:
        if not isinstance(d, dict) or "kind" not in d:
            return None
        name, level = str(d["kind"]), _int(d.get("level"))
        label = f"synthetic:{name}"
        types.append(label)
        spec = DISTORTIONS.get(name)
        kind = SYNTHETIC_ASPECTS.get(spec.aspect) if spec else None
        if kind is None:
            unmapped.append(label)
            continue
        level = level if level is not None and 1 <= level <= 5 else None
        old = kinds.get(kind)
        kinds[kind] = level if old is None else max(old, level or 0)
    return DistortionTruth(
        MappingProxyType(kinds), not types, "synthetic", tuple(types), tuple(unmapped)
    )


def distortion_truth(sample: Sample) -> DistortionTruth | None:
    """The known distortions of a sample, in shared kinds.

    Args:
        sample: A sample of ``kadid``, ``tid2013``, ``csiq``, ``synthetic`` (or any adapter
            whose ``meta["distortions"]`` is a synthetic list), or ``icbcbicc`` for its
            KADID-10k, TID2013, TID2008, CSIQ and LIVE files.

    Returns:
        A :class:`DistortionTruth`, or None when the dataset labels no distortion type or the
        sample's type cannot be read.

    Example:
        >>> s = Sample("I01_21_03.png", "/d/I01_21_03.png", 2.9, 2.9, "kadid", None,
        ...            meta={"distortion_type": 21, "level": 3})
        >>> t = distortion_truth(s)
        >>> dict(t.kinds), t.pristine, t.types
        ({'resolution': 3}, False, ('kadid10k:21 pixelate',))
    """
    meta = sample.meta or {}
    if isinstance(meta.get("distortions"), list):
        return _synthetic(meta["distortions"])
    dataset = sample.dataset
    if dataset == "icbcbicc":
        dataset = _COLLECTION.get(str(meta.get("collection_dataset", "")).lower(), "")
    if dataset in ("kadid", "kadid10k"):
        return _numbered(sample, "kadid10k", KADID10K_TYPES, _KADID_NAME)
    if dataset in ("tid2013", "tid2008"):
        table = TID2013_TYPES if dataset == "tid2013" else {
            k: v for k, v in TID2013_TYPES.items() if k <= 17
        }  # fmt: skip
        return _numbered(sample, dataset, table, _TID_NAME)
    if dataset == "csiq":
        return _csiq(sample)
    if dataset == "live":
        key = str(meta.get("distortion", "")).strip().lower()
        return _truth("live", key, LIVE_TYPES.get(key), None)
    return None
