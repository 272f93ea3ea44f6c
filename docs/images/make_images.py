"""Make the screenshots of docs/reports.md from a fresh synthetic workspace, with the real commands.

    python docs/images/make_images.py [--workdir /tmp/hcm-images] [--n 120] [--epochs 8]

Runs ``hcm sample``, ``hcm extract`` (tiny profile), ``hcm train`` (full and no-cdc), ``hcm evaluate``
(with --tsne, then --missing all --noise), ``hcm explain --worst 1`` and ``hcm report`` of both runs,
opens the report in headless Chromium (selenium, Debian's ``chromium`` and ``chromium-driver``),
and writes small palette PNGs (at most ``--width`` pixels wide) into docs/images/.
A few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def hcm(workdir: Path, *args: str) -> None:
    command = [sys.executable, "-m", "hcm", "--workdir", str(workdir), *args]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def shrink(source: Path, target: Path, width: int, height: int | None = None) -> None:
    """Downscale to ``width`` pixels at most (keeping the top ``height`` pixels of the source when given)
    and store as a 256-colour PNG (small files in the repo)."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if height is not None and image.height > height:
            image = image.crop((0, 0, image.width, height))
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        image.quantize(colors=256).save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


def browser_shots(report: Path, out: Path) -> dict[str, Path]:
    """Screenshots of the report's comparison section and first run section in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1150,900", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    shots = {}
    try:
        driver.get(report.as_uri())
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1150, int(height) + 100)
        for name, selector in (("report-comparison", "#comparison"), ("report-run", "#run-1"),
                               ("report-worst", "#run-1 table.worst"),
                               ("report-robustness", "#run-1 table.robustness")):
            shots[name] = out / f"{name}-full.png"
            driver.find_element("css selector", selector).screenshot(str(shots[name]))
    finally:
        driver.quit()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hcm-images"))
    parser.add_argument("--n", type=int, default=120, help="utterances of the synthetic corpus")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=900, help="largest image width kept in the repo")
    parser.add_argument("--reuse", action="store_true", help="take the runs and report of an earlier --workdir")
    args = parser.parse_args()
    work = args.workdir
    if args.reuse:
        runs = sorted((work / "runs" / "sample").glob("*-full")) + sorted((work / "runs" / "sample").glob("*-no-cdc"))
        save_images(work, runs[-2:] if len(runs) > 2 else runs, args.width)
        return
    if work.exists():
        shutil.rmtree(work)
    hcm(work, "sample", "--dataset", "mosei", "--n", str(args.n), "--quiet")
    hcm(work, "extract", "--dataset", "sample", "--profile", "tiny", "--workers", "0", "--quiet")
    runs = []
    for variant in ("full", "no-cdc"):
        before = set((work / "runs" / "sample").glob("*")) if (work / "runs" / "sample").exists() else set()
        hcm(work, "train", "--epochs", str(args.epochs), "--variant", variant, "--quiet", "--set", "patience=0")
        (run,) = set((work / "runs" / "sample").glob("*")) - before
        hcm(work, "evaluate", "--run", str(run), "--tsne")
        runs.append(run)
    hcm(work, "evaluate", "--run", str(runs[0]), "--missing", "all", "--noise", "0.25,0.5,1,2")
    hcm(work, "explain", "--run", str(runs[0]), "--worst", "1", "--out", str(work / "explain"))
    report = work / "report.html"
    hcm(work, "report", str(runs[0]), str(runs[1]), "--out", str(report))
    save_images(work, runs, args.width)


def save_images(work: Path, runs: list[Path], width: int) -> None:
    """The explain, robustness and confusion figures and the report's screenshots, shrunk, into docs/images/."""
    (explained,) = (work / "explain").glob("*.png")
    shrink(explained, HERE / "explain.png", width)
    shrink(runs[0] / "eval" / "test" / "robustness.png", HERE / "robustness.png", width)
    shrink(runs[0] / "eval" / "test" / "confusion_acc7.png", HERE / "confusion.png", width)
    for name, shot in browser_shots(work / "report.html", work).items():
        shrink(shot, HERE / f"{name}.png", width, height=1150 if name == "report-run" else None)


if __name__ == "__main__":
    main()
