"""The MOS-range table in docs/datasets.md and catalog.yaml (which the adapters use) agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qponder.data import ScoreScale, dataset_info, dataset_names
from qponder.data.catalog import load_catalog, normalise_key

DOC = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


def _doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells
    return rows


def _range_text(entry: dict) -> str:
    lo, hi = entry["mos_range"]
    return f"[{lo}, {hi}]" + (", clip" if entry.get("clip") else "")


def _direction_text(entry: dict) -> str:
    return "lower is better" if entry["lower_better"] else "higher is better"


@pytest.mark.parametrize("name", dataset_names())
def test_every_adapter_row_matches_the_catalogue(name):
    entry = load_catalog()["datasets"][name]
    row = next((cells for key, cells in _doc_rows().items() if re.match(rf"`{name}`", key)), None)
    assert row is not None, f"docs/datasets.md has no row for `{name}`"
    if entry["mos_range"] is not None:
        assert _range_text(entry) in row[4]
        assert _direction_text(entry) in row[5]


@pytest.mark.parametrize("name", list(load_catalog()["datasets"]["icbcbicc"]["collection"]))
def test_every_collection_row_matches_the_catalogue(name):
    entry = load_catalog()["datasets"]["icbcbicc"]["collection"][name]
    row = _doc_rows()[name]
    assert row[1] == _range_text(entry) and row[2] == _direction_text(entry)
    assert normalise_key(name)


def test_aliases_resolve_to_the_adapter():
    assert dataset_info("CLIVE").name == "livec"
    assert dataset_info("koniq-10k").name == "koniq"


def test_score_scale_maps_and_flips():
    assert ScoreScale(0, 100).to_mos(0) == 1.0 and ScoreScale(0, 100).to_mos(100) == 5.0
    assert ScoreScale(0, 1, lower_better=True).to_mos(0) == 5.0
    assert ScoreScale(900, 1900).std_to_mos(250) == 1.0
