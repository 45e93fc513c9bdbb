"""Wheels for a GPU machine without network: what it lacks to run nnU-Net with the plugin (``make gpu-wheels``).

The GPU machine this project is sometimes lent has Python 3.12, PyTorch and a scientific stack
preinstalled (:data:`GPU_PREINSTALLED`, read off that machine's image) and reaches no network. This
script, on a networked machine, writes one wheel of each distribution in :data:`RUNTIME_WHEELS` at the
version installed here (the version the test suite ran with; ``--no-deps``, one version each), for the
target Python and x86-64 Linux, plus the project's own wheel, and splits them into folders
``part1``, ``part2``, ... of at most ``--part-mib`` each.

Decisions (see the README's GPU section):

- **Only what nnU-Net imports at run time travels.** ``RUNTIME_WHEELS`` is the set that
  ``nnUNetv2_plan_and_preprocess`` / ``nnUNetv2_train`` / ``nnUNetv2_predict``, the plugin's trainers,
  ``nnunet-rc evaluate`` and ``benchmarks/gpu_check.py`` import on top of :data:`GPU_PREINSTALLED`; the
  test suite proves it by running ``gpu_check.py``'s tiny setting in an environment holding only
  those two sets (``tests/test_gpu_check.py``). Left out although nnU-Net's metadata asks for them:
  ``imagecodecs`` (27.7 MB; ``tifffile`` imports it only if present, and only compressed TIFFs need it),
  ``dicom2nifti``, ``yacs``, ``graphviz``, batchgenerators' Python-2 helpers ``future``, ``unittest2``,
  ``linecache2``, ``traceback2`` (its ``from builtins import`` is the standard library), and everything
  already in the image (``timm`` and ``torchvision`` among it: nnU-Net's
  trainer lookup imports its Primus trainers, which import ``timm``).
- **Two folders, two calls.** A device call carries at most 64 MiB (working tree included), and
  SimpleITK's wheel alone is 52.8 MB, so the wheels cannot travel in one call: ``part1`` (SimpleITK
  and what fits beside it) and ``part2`` (the rest) are installed into the same target folder by two consecutive calls
  (``gpu_check.py install``), the second of which also runs the check.
- ``acvl-utils`` is published only as a source archive: its (pure-Python) wheel is built here.

    python benchmarks/gpu_wheels.py --out gpu_wheels                       # Python 3.12 (the GPU machine)
    python benchmarks/gpu_wheels.py --out /tmp/w --python-version 3.11     # for this machine's Python
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]

#: Distributions nnU-Net and the plugin import at run time that the GPU machine's image does not hold.
RUNTIME_WHEELS = [
    "nnunetv2", "acvl-utils", "dynamic-network-architectures", "batchgenerators", "batchgeneratorsv2",
    "blosc2", "ndindex",                     # nnU-Net's preprocessed-data format (blosc2 needs ndindex)
    "connected-components-3d",               # acvl_utils.morphology, imported by nnU-Net's trainer
    "SimpleITK", "nibabel",                  # nnU-Net's reader/writer registry imports both
]

#: What the GPU machine's image holds and this project relies on (read off the image, 2026-11-17; the
#: device tool's KINDS.md lists all of it). Used by the tests to build an environment like it.
GPU_PREINSTALLED = [
    "torch", "numpy", "scipy", "scikit-image", "scikit-learn", "pandas", "matplotlib", "seaborn", "tqdm",
    "pytest", "pytest-xdist", "pillow", "tifffile", "imageio", "einops", "requests", "pyyaml", "threadpoolctl",
    "joblib", "msgpack", "narwhals", "networkx", "packaging", "setuptools", "pip", "filelock", "httpx", "rich",
    "click", "anyio", "six", "typing-extensions", "python-dateutil", "tzdata", "sympy", "jinja2", "fsspec",
    "triton", "cycler", "contourpy", "fonttools", "kiwisolver", "pyparsing", "lazy-loader", "iniconfig", "pluggy",
    "pygments", "execnet", "mpmath", "markupsafe", "certifi", "idna", "urllib3", "charset-normalizer", "h11",
    "httpcore", "markdown-it-py", "mdurl", "cloudpickle", "timm", "torchvision", "huggingface-hub", "safetensors",
]

#: platform tags pip may choose for x86-64 Linux (pip matches manylinux_2_N exactly)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
MIB = 2 ** 20


class WheelError(RuntimeError):
    pass


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names: List[str]) -> Dict[str, str]:
    """``{name: version}`` of the distributions installed here (the versions the tests ran with)."""
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            raise WheelError(f"{n} is not installed in {sys.prefix}: run `make install` first") from None
    return out


def _pip(args: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def fetch_wheel(name: str, version: str, python_version: str, dest: Path) -> Path:
    """Download the binary wheel of ``name==version`` for ``python_version`` / x86-64 Linux; when PyPI has
    only a source archive, build the wheel (accepted only if pure Python, i.e. ``py3-none-any``)."""
    before = set(dest.iterdir())
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    proc = _pip(["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                 "--implementation", "cp", *plat, "-d", str(dest), f"{name}=={version}"])
    if proc.returncode != 0:
        proc = _pip(["wheel", "-q", "--no-deps", "-w", str(dest), f"{name}=={version}"])
        if proc.returncode != 0:
            raise WheelError(f"{name}=={version}: no wheel for Python {python_version} and no buildable source:\n"
                             f"{proc.stderr[-2000:]}")
        new = sorted(set(dest.iterdir()) - before)
        if not new or not all(p.name.endswith("-none-any.whl") for p in new):
            raise WheelError(f"{name}=={version}: the wheel built from source is not pure Python: {new}")
    new = sorted(set(dest.iterdir()) - before)
    if len(new) != 1 or new[0].suffix != ".whl":
        raise WheelError(f"{name}=={version}: expected one wheel, got {[p.name for p in new]}")
    return new[0]


def project_wheel(dest: Path) -> Path:
    before = set(dest.iterdir())
    proc = _pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT)])
    if proc.returncode != 0:
        raise WheelError(f"building the nnunet_rc wheel failed:\n{proc.stderr[-2000:]}")
    new = sorted(set(dest.iterdir()) - before)
    if len(new) != 1:
        raise WheelError(f"expected the nnunet_rc wheel, got {[p.name for p in new]}")
    return new[0]


def split_into_parts(sizes: Dict[str, int], cap: int) -> List[List[str]]:
    """First-fit decreasing: wheel names into as few parts as possible of at most ``cap`` bytes each."""
    parts: List[List[str]] = []
    load: List[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        if sizes[name] > cap:
            raise WheelError(f"{name} is {sizes[name] / MIB:.1f} MiB, more than one part may hold ({cap / MIB:.1f} MiB)")
        for i in range(len(parts)):
            if load[i] + sizes[name] <= cap:
                parts[i].append(name)
                load[i] += sizes[name]
                break
        else:
            parts.append([name])
            load.append(sizes[name])
    return parts


def build(out: Path, python_version: str, part_mib: float, packages: Optional[List[str]] = None,
          progress: bool = True) -> dict:
    """Write ``out/part1 ... partN`` and ``out/manifest.json``; returns the manifest."""
    from tqdm import tqdm

    packages = list(RUNTIME_WHEELS if packages is None else packages)
    versions = installed_versions(packages)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="gpu_wheels_") as tmp:
        tmp = Path(tmp)
        wheels: Dict[str, dict] = {}
        for name in tqdm(packages, desc=f"wheels for Python {python_version}", disable=not progress):
            w = fetch_wheel(name, versions[name], python_version, tmp)
            wheels[w.name] = {"distribution": name, "version": versions[name]}
        w = project_wheel(tmp)
        wheels[w.name] = {"distribution": "nnunet_rc", "version": md.version("nnunet_rc")}
        sizes = {n: (tmp / n).stat().st_size for n in wheels}
        parts = split_into_parts(sizes, int(part_mib * MIB))
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        manifest = {"python_version": python_version, "part_mib": part_mib, "parts": {}}
        for i, names in enumerate(parts, 1):
            folder = out / f"part{i}"
            folder.mkdir()
            for n in names:
                shutil.move(str(tmp / n), folder / n)
            manifest["parts"][folder.name] = {
                "bytes": sum(sizes[n] for n in names),
                "wheels": [{"file": n, "bytes": sizes[n], **wheels[n]} for n in sorted(names)]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def format_manifest(manifest: dict) -> str:
    lines = [f"wheels for Python {manifest['python_version']} (x86-64 Linux), parts of at most "
             f"{manifest['part_mib']:.0f} MiB:"]
    for part, info in manifest["parts"].items():
        lines.append(f"  {part}: {info['bytes'] / MIB:6.1f} MiB, {len(info['wheels'])} wheel(s)")
        for w in info["wheels"]:
            lines.append(f"      {w['bytes'] / 1e6:7.2f} MB  {w['file']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_wheels", help="output folder (replaced)")
    ap.add_argument("--python-version", default="3.12", help="target Python (the GPU machine's: 3.12)")
    ap.add_argument("--part-mib", type=float, default=58.0,
                    help="largest part; a device call carries 64 MiB with the working tree (about 2 MiB)")
    args = ap.parse_args(argv)
    try:
        manifest = build(Path(args.out), args.python_version, args.part_mib)
    except WheelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_manifest(manifest))
    print(f"written to {Path(args.out).resolve()}; on the GPU machine: python3 benchmarks/gpu_check.py install "
          f"{args.out}/part1, then (next call) install {args.out}/part2 ... && run (README, GPU section)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
