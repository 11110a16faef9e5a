"""A wheel built from the repository carries what the commands need (the recipes), and works
installed into a clean virtual environment, run from outside the checkout."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# the metadata as pip builds it, warnings caught: setuptools' deprecations are shown to
# every user of `make install` (issue 25: the `license = { text = ... }` table)
_METADATA = """
import sys, warnings
import setuptools.build_meta as backend
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print("dist-info:", backend.prepare_metadata_for_build_wheel(sys.argv[1]))
for w in caught:
    print(f"warning: {w.category.__name__}: {str(w.message).splitlines()[0]}")
"""


def test_the_package_metadata_builds_without_setuptools_warnings(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _METADATA, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [w for w in lines if w.startswith("warning: ") and "Deprecation" in w] == []
    (dist_info,) = [line.split(": ", 1)[1] for line in lines if line.startswith("dist-info: ")]
    metadata = (tmp_path / dist_info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()


@pytest.mark.slow
def test_the_wheel_ships_the_recipes_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "-q", "-w", str(dist), str(REPO)]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("qponder-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the dependencies (torch, transformers, ...) come from this environment's site-packages
    # as a plain path; its .pth files, the editable install of the checkout among them, are
    # not run, so `qponder` can only come from the wheel
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()] or [
        sysconfig.get_paths()["purelib"]
    ]
    (Path(purelib) / "deps.pth").write_text("\n".join(deps) + "\n")
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    where = tmp_path / "elsewhere"
    where.mkdir()
    probe = "import qponder, qponder.config as c; print(qponder.__file__); print(c.resolve_recipe_path('tiny-demo'))"
    out = subprocess.run([str(python), "-c", probe], cwd=where, check=True, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    assert all(str(venv) in line for line in out), out  # the installed copy, not the checkout
    assert out[1].endswith("qponder/configs/tiny-demo.yaml")
    # a recipe-using command, from the installed console script, outside the checkout
    cmd = [str(venv / "bin" / "qponder"), "sft", "--config", "tiny-demo", "--data", "none.jsonl",
           "--model", "m", "--out", "o"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=where, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "none.jsonl: cold-start file not found" in proc.stderr  # the recipe loaded first
