"""Lambda package benchmark: artifact size and cold-start import time, Pillow-only vs OpenCV + numpy.

The candidate is the package ``pulumi up`` deploys (``deploy/lambda_package.py``: zxing-cpp + Pillow);
the baseline, measured in the same run, is the same package plus ``opencv-python-headless`` and ``numpy``
(what an OpenCV-based decoder would ship).  Sizes are for the deployed runtime (python3.12); import
times are measured here, for this interpreter's Python, in fresh ``python -I -S`` processes whose path is
only the unzipped package, the standard library and boto3 (as on Lambda), importing both handlers (the
baseline also imports ``cv2`` and ``numpy``).  Figures are printed as ratios candidate / baseline.

Usage: ``.venv/bin/python bench/bench_package.py [--runs 7]`` (first run downloads ~100 MB of wheels).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import lambda_package as lp

OPENCV = (
    f"opencv-python-headless=={importlib.metadata.version('opencv-python-headless')}",
    f"numpy=={importlib.metadata.version('numpy')}",
)
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")
PROBE = (
    "import sys, time; sys.path[:0] = sys.argv[1:3]; t = time.perf_counter(); {imports}; "
    "print((time.perf_counter() - t) * 1000)"
)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _runtime_dir(root: Path) -> Path:
    d = root / "runtime"
    d.mkdir()
    for mod in RUNTIME_MODULES:
        origin = Path(importlib.util.find_spec(mod).origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (d / src.name).symlink_to(src)
    return d


def import_ms(zip_path: Path, imports: str, runs: int, work: Path) -> list[float]:
    """Import times (ms) of ``imports`` from the unzipped package, one fresh interpreter per run."""
    task = work / zip_path.stem
    zipfile.ZipFile(zip_path).extractall(task)
    runtime = work / "runtime"
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    out = []
    for i in range(runs + 1):  # the first run only warms the OS page cache: discarded
        proc = subprocess.run(
            # -B: no .pyc written, as on Lambda where /var/task is read-only (the zip ships no .pyc)
            [sys.executable, "-I", "-S", "-B", "-c", PROBE.format(imports=imports), str(task), str(runtime)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        if i:
            out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh-interpreter imports per variant (default 7)")
    args = parser.parse_args()
    local = f"{sys.version_info.major}.{sys.version_info.minor}"
    variants = {
        "pillow (deployed)": lp.LAMBDA_REQUIREMENTS,
        "opencv+numpy (baseline)": lp.LAMBDA_REQUIREMENTS + OPENCV,
    }
    results: dict[str, dict] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        work = Path(tmp)
        _runtime_dir(work)
        for label, reqs in variants.items():
            _log(f"{label}: building for python3.12 (deployed) and {local} (import timing)")
            deployed = lp.build(lp.PackageSpec(python_version="3.12", requirements=reqs), check_limits=False)
            here = lp.build(lp.PackageSpec(python_version=local, requirements=reqs), check_limits=False)
            imports = "import ingest.handler, ingest.forwarder" + (", cv2, numpy" if "opencv" in label else "")
            _log(f"{label}: {args.runs} fresh-interpreter imports")
            times = import_ms(here.path, imports, args.runs, work)
            results[label] = {
                "zipped_mb": deployed.zipped_bytes / 1e6,
                "unzipped_mb": deployed.unzipped_bytes / 1e6,
                "files": deployed.files,
                "import_ms_median": statistics.median(times),
                "import_ms_min": min(times),
            }
    base, cand = results["opencv+numpy (baseline)"], results["pillow (deployed)"]
    print(f"Lambda package, python3.12 sizes; imports timed on Python {local}, {args.runs} runs each")
    print(f"{'variant':26s} {'zip MB':>8s} {'unzipped MB':>12s} {'import ms (median)':>19s} {'min':>7s}")
    for label, r in results.items():
        print(
            f"{label:26s} {r['zipped_mb']:8.1f} {r['unzipped_mb']:12.1f} {r['import_ms_median']:19.0f} "
            f"{r['import_ms_min']:7.0f}"
        )
    print("ratios pillow / opencv+numpy baseline:")
    for key in ("zipped_mb", "unzipped_mb", "import_ms_median"):
        print(f"  {key:18s} {cand[key] / base[key]:.2f}x")
    print(
        f"  unzipped limit use: pillow {cand['unzipped_mb'] / (lp.MAX_UNZIPPED_BYTES / 1e6):.0%}, "
        f"baseline {base['unzipped_mb'] / (lp.MAX_UNZIPPED_BYTES / 1e6):.0%} of 262 MB"
    )
    print(json.dumps(results, indent=1))
    _log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
