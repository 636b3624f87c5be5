"""The ingest Lambdas' deployment package: a zip of manylinux wheels plus the ``ingest`` and ``stream`` sources.

Why a zip and not a container image: the decoder needs only zxing-cpp (one 2 MB native library that
links nothing but libstdc++/libc) and Pillow; both ship manylinux wheels, so ``pip install --platform
... --only-binary=:all:`` builds the package on any Linux host without Docker, and the zip is ~10 MB
(limits: 50 MB zipped for direct upload, 250 MB unzipped).  OpenCV + numpy would add ~200 MB and the
cold-start cost measured in ``bench/bench_package.py``; pyzbar cannot find libzbar on the Lambda runtime.

Runtime: ``python3.12`` (Amazon Linux 2023, glibc 2.34).  ``python3.11`` runs on Amazon Linux 2
(glibc 2.26), but zxing-cpp 3.x and Pillow 12+ publish only ``manylinux_2_27``/``2_28`` wheels, which
fail to load there -- so the package is built for the runtime's Python and a glibc ceiling of 2.34.

Builds are deterministic (pinned versions, :mod:`deploy.archive`) and cached under ``build/lambda/`` by a
hash of the pins, the target Python and the source files: ``pulumi up`` rebuilds only when one changes.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

from deploy.archive import ArchiveInfo, describe_zip, iter_tree, sha256_files, write_zip

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "build" / "lambda"

LAMBDA_REQUIREMENTS: tuple[str, ...] = (
    "zxing-cpp==3.1.1",  # QR decoding (native, manylinux_2_27/2_28)
    "pillow==13.0.0",  # JPEG/PNG decoding to grayscale
    "aws-lambda-powertools==3.37.0",  # logger, EMF metrics, tracer, batch processing
    "aws-xray-sdk==2.15.0",  # powertools Tracer backend
    "wrapt==2.5.2",  # aws-xray-sdk dependency
    "orjson==3.13.0",  # the record contract's JSON codec (stream.schema)
    "pybase64==1.5.1",  # fast base64 of request bodies (ingest.request; stdlib fallback)
    "xxhash==4.1.0",  # XXH3-128 image digest of frame ids (stream.schema.frame_id)
    "aws-kinesis-agg==1.2.3",  # KPL aggregation (stream.aggregate)
    "six==1.17.0",  # aws-kinesis-agg imports it without declaring it
    "protobuf==6.33.6",  # aws-kinesis-agg wire format
    "typing_extensions==4.16.0",  # powertools dependency
    "jmespath==1.1.0",  # powertools dependency (also in the runtime; pinned for reproducibility)
)
"""Everything the Lambdas import at run time besides the standard library and the runtime's boto3.
Versions match pyproject's ranges (``tests/infra/test_infra_package.py`` checks)."""

RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "urllib3", "python-dateutil", "jmespath"})
"""Distributions the Lambda Python runtime already has; not bundled (requirements on them are satisfied)."""

SOURCE_PACKAGES = ("ingest", "stream")
EXCLUDED_SOURCES = "infra*.py"
"""Pulumi modules of a package (``infra.py``, ``infra_alarms.py``): deploy-time code the Lambdas never import."""

SUPPORTED_RUNTIMES = {"python3.12": ("3.12", 34), "python3.13": ("3.13", 34)}
"""Lambda runtime -> (Python version, glibc minor of its OS: Amazon Linux 2023 has glibc 2.34)."""

MAX_ZIPPED_BYTES = 50 * 1024 * 1024
"""Largest zip accepted by a direct ``CreateFunction`` upload (larger ones must go through S3)."""
MAX_UNZIPPED_BYTES = 262_144_000
"""Largest unzipped function + layers ("Unzipped size must be smaller than 262144000 bytes").
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"""


class PackageBuildError(RuntimeError):
    """The package could not be built (pip failed, or the result breaks a Lambda limit)."""


def manylinux_platforms(glibc_minor: int) -> list[str]:
    """pip ``--platform`` tags for x86_64 wheels that run on glibc 2.``glibc_minor`` (pip does not expand them)."""
    tags = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


@dataclass(frozen=True)
class PackageSpec:
    """What goes into one build: target Python ``major.minor``, glibc ceiling, pins and source packages."""

    python_version: str
    glibc_minor: int = 34
    requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS
    packages: tuple[str, ...] = SOURCE_PACKAGES
    root: Path = field(default=REPO_ROOT)
    build_dir: Path = field(default=BUILD_DIR)

    @classmethod
    def for_runtime(cls, runtime: str, **kwargs) -> PackageSpec:
        """Spec for a Lambda runtime name (``python3.12``).

        Raises:
            ValueError: the runtime is not in :data:`SUPPORTED_RUNTIMES`.
        """
        if runtime not in SUPPORTED_RUNTIMES:
            raise ValueError(f"unsupported Lambda runtime {runtime!r}; use one of {', '.join(SUPPORTED_RUNTIMES)}")
        version, glibc = SUPPORTED_RUNTIMES[runtime]
        return cls(python_version=version, glibc_minor=glibc, **kwargs)

    def source_entries(self) -> list[tuple[str, Path]]:
        """(archive name, path) of the bundled source files."""
        out = []
        for pkg in self.packages:
            skip = [p.name for p in (self.root / pkg).glob(EXCLUDED_SOURCES)]
            out.extend(iter_tree(self.root / pkg, prefix=pkg, skip_names=skip))
        return out

    @property
    def deps_key(self) -> str:
        import hashlib

        text = "\n".join([self.python_version, str(self.glibc_minor), *sorted(self.requirements)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        """Cache key of the whole package: dependencies + sources."""
        return f"{self.deps_key}-{sha256_files(self.source_entries())[:16]}"

    @property
    def deps_dir(self) -> Path:
        return self.build_dir / f"deps-py{self.python_version}-{self.deps_key}"

    @property
    def archive_path(self) -> Path:
        return self.build_dir / f"lambda-py{self.python_version}-{self.key}.zip"


def install_deps(spec: PackageSpec, python: str = sys.executable) -> Path:
    """pip-install the pinned wheels for the target platform into the (cached) deps directory.

    Raises:
        PackageBuildError: pip failed (message includes the end of its output).
    """
    dest = spec.deps_dir
    if dest.is_dir():
        return dest
    spec.build_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=spec.build_dir))
    cmd = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-compile"]
    cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", spec.python_version]
    for tag in manylinux_platforms(spec.glibc_minor):
        cmd += ["--platform", tag]
    cmd += ["--target", str(tmp), *spec.requirements]
    log.info("installing %d pinned wheels for Python %s into %s", len(spec.requirements), spec.python_version, dest)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise PackageBuildError(f"pip could not install the Lambda wheels for Python {spec.python_version}:\n{tail}")
    for junk in ("bin",):  # console scripts are useless in a Lambda
        shutil.rmtree(tmp / junk, ignore_errors=True)
    try:
        tmp.rename(dest)
    except OSError:  # a concurrent build won the race; use its result
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build(spec: PackageSpec, python: str = sys.executable, check_limits: bool = True) -> ArchiveInfo:
    """Build (or reuse from the cache) the package zip of ``spec`` and check the Lambda size limits.

    ``check_limits=False`` only measures (the benchmark's OpenCV baseline is over the direct-upload limit).

    Raises:
        PackageBuildError: pip failed or the package is over a limit.
    """
    path = spec.archive_path
    if path.is_file():
        info = describe_zip(path)
    else:
        deps = install_deps(spec, python)
        info = write_zip([*iter_tree(deps), *spec.source_entries()], path)
        log.info(
            "built %s (%.1f MB zipped, %.1f MB unzipped)", path.name, info.zipped_bytes / 1e6, info.unzipped_bytes / 1e6
        )
    if not check_limits:
        return info
    if info.unzipped_bytes >= MAX_UNZIPPED_BYTES:
        raise PackageBuildError(
            f"{path.name}: {info.unzipped_bytes} bytes unzipped, Lambda allows < {MAX_UNZIPPED_BYTES}"
        )
    if info.zipped_bytes > MAX_ZIPPED_BYTES:
        raise PackageBuildError(
            f"{path.name}: {info.zipped_bytes} bytes zipped; direct upload allows {MAX_ZIPPED_BYTES}"
        )
    return info


def unmet_requirements(deps_dir: Path) -> list[str]:
    """Requirements of the installed distributions that neither the package nor the runtime satisfies.

    Markers are evaluated for Linux CPython of the package's version; extras are ignored.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    metas = [Parser().parsestr(p.read_text("utf-8")) for p in deps_dir.glob("*.dist-info/METADATA")]
    present = {canonicalize_name(m["Name"]) for m in metas} | {canonicalize_name(n) for n in RUNTIME_PROVIDED}
    missing = []
    for meta in metas:
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate({"extra": "", "sys_platform": "linux"}):
                continue
            if canonicalize_name(req.name) not in present:
                missing.append(f"{meta['Name']} requires {req}")
    return sorted(missing)
