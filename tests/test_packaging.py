"""The built wheel installs one import package, ``hcm``, and nothing generic at the top level."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_holds_only_the_hcm_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("hcm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level <= {"hcm", next(n for n in top_level if n.endswith(".dist-info"))}, top_level
    for module in ("hcm/cli.py", "hcm/__main__.py", "hcm/cache/writer.py", "hcm/model/ot/__init__.py",
                   "hcm/model/ot/sinkhorn_cpu.cpp", "hcm/pipeline/encoders/clip.py", "hcm/pipeline/sample/__init__.py",
                   "hcm/apps/templates/report.html.j2"):
        assert module in names, f"{module} missing from the wheel"
    for package in source_packages():
        assert f"hcm/{package}/__init__.py" in names, f"package {package} is missing from setup.cfg's packages"
    assert any(name.startswith("hcm/configs/datasets/") and name.endswith(".json") for name in names)
    assert not any(name.startswith("hcm/tests/") for name in names), "tests must not be installed"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hcm = hcm.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def source_packages() -> list[str]:
    """Every package folder of the source tree (tests and build outputs excluded)."""
    skip = {"tests", "build", "benchmarks", "docs", "configs"}
    return sorted(
        str(init.parent.relative_to(REPO)) for init in REPO.rglob("__init__.py")
        if init.parent != REPO and not (set(init.relative_to(REPO).parts) & skip)
        and not any(part.startswith(".") or part.endswith(".egg-info") for part in init.relative_to(REPO).parts)
    )
