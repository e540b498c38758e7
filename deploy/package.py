"""The Lambda artifact (`make package`): functions/, shared/ and the runtime dependencies, staged in build/lambda.

Every function deploys the same directory (template.yaml's CodeUri): what a function never imports costs it disk,
not cold start. The runtime dependencies (requirements.txt, which mirrors [project].dependencies) are installed for
CPython 3.12 on manylinux, for this machine's processor by default (`--platform arm64` for template.yaml's Graviton
functions), into build/deps/ once per set of requirements; each build copies them and the sources. Everything is
compiled to bytecode by Python 3.12 itself, the runtime's version: Lambda's /var/task is read-only, so without .pyc
files every cold start would compile every module again. The bytecode is `unchecked-hash` (a zip does not keep the
sources' modification times exactly): build/lambda is rebuilt whole, never edited in place.

    python3 -m deploy.package [--platform arm64] [--out DIR]

Python 3.12 is found as PYTHON312, `python3.12` on PATH, or under pyenv's versions (`pyenv install 3.12`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import os
import platform as host
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
ARTIFACT = BUILD / "lambda"
REQUIREMENTS = REPO / "requirements.txt"
PYTHON_VERSION = "3.12"  # template.yaml's Runtime: python3.12
SOURCES = ("functions", "shared")  # migrations/ stay out: `agentpay migrate` applies them, no function reads them
# What template.yaml deploys on (Globals.Function.Architectures); tests/unit/test_deploy_files.py keeps them equal.
DEPLOYED_PLATFORM = "arm64"
WHEEL_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
_MACHINE_NAMES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# Bytecode of the build machine's interpreters never ships: the artifact's is compiled by Python 3.12.
_NEVER_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
# Parts of the installed dependencies that no function runs, left out of the artifact (paths under build/deps).
# pydantic/v1 is Pydantic 1's API, kept inside Pydantic 2 for migrations: nothing here uses it, yet FastAPI imports it
# while it builds the routes, only to check that no route uses a Pydantic 1 model (without it, FastAPI knows none
# can); loading it cost every function's cold start about 15 ms.
LEFT_OUT = ("pydantic/v1",)


class PythonNotFound(RuntimeError):
    """No Python of the runtime's version on this machine: the artifact cannot be built or checked."""


def this_machine() -> str:
    """This machine's processor as template.yaml names architectures: x86_64 or arm64."""
    machine = host.machine().lower()
    if machine not in _MACHINE_NAMES:
        raise SystemExit(f"unknown processor {machine!r}: pass --platform x86_64 or --platform arm64")
    return _MACHINE_NAMES[machine]


def _reports_version(python: str, version: str) -> bool:
    try:
        found = subprocess.run(
            [python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return False
    return found.returncode == 0 and found.stdout.strip() == version


def _pyenv_roots() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip())
    return [root for root in dict.fromkeys(roots) if root]


def _patch_level(path: str) -> tuple[int, ...]:
    match = re.search(r"/versions/(\d+(?:\.\d+)*)/", path)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def find_python(version: str = PYTHON_VERSION) -> str:
    """A Python `version` interpreter that runs: PYTHON312, then PATH (a pyenv shim that is not active fails to
    run and is passed over), then the newest of pyenv's versions/<version>.x."""
    candidates = [os.environ.get("PYTHON" + version.replace(".", "")) or "", shutil.which(f"python{version}") or ""]
    for root in _pyenv_roots():
        found = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
        candidates += sorted(found, key=_patch_level, reverse=True)
    tried = [c for c in dict.fromkeys(candidates) if c]
    for python in tried:
        if _reports_version(python, version):
            return python
    raise PythonNotFound(
        f"Python {version} (Lambda's runtime) was not found; tried: {', '.join(tried) or 'nothing'}. "
        f"Install it with `pyenv install {version}` (it is then found under $(pyenv root)/versions), "
        f"or point PYTHON{version.replace('.', '')} at a python{version}."
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time writes build/deps (make package beside a test that builds its own artifact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _compile(python: str, directory: Path) -> None:
    subprocess.run(
        [python, "-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(directory)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def dependencies(python: str, platform: str) -> Path:
    """build/deps/<platform>-py3.12: the runtime dependencies, compiled; installed again only when requirements.txt,
    the platform or the interpreter's version change."""
    key = hashlib.sha256(
        "\n".join([REQUIREMENTS.read_text(), platform, PYTHON_VERSION, _full_version(python)]).encode()
    ).hexdigest()
    target = BUILD / "deps" / f"{platform}-py{PYTHON_VERSION}"
    stamp = target / ".stamp"
    with _locked(BUILD / "deps" / ".lock"):
        if stamp.is_file() and stamp.read_text() == key:
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{platform}-", dir=target.parent))
        try:
            subprocess.run(
                [
                    *(python, "-I", "-m", "pip", "install", "--quiet", "--quiet"),
                    *("--target", str(staging), "--requirement", str(REQUIREMENTS)),
                    *("--python-version", PYTHON_VERSION, "--implementation", "cp"),
                    *("--platform", WHEEL_PLATFORMS[platform], "--only-binary=:all:"),
                    *("--no-compile", "--disable-pip-version-check", "--no-warn-script-location"),
                ],
                check=True,
            )
            shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts with this machine's interpreter
            _compile(python, staging)
            stamp_file = staging / ".stamp"
            stamp_file.write_text(key)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _full_version(python: str) -> str:
    return subprocess.run(
        [python, "-I", "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _left_out_of(deps: Path) -> Callable[[str, list[str]], set[str]]:
    """copytree's filter for the dependencies: their build stamp and LEFT_OUT."""

    def ignored(directory: str, names: list[str]) -> set[str]:
        here = Path(directory).relative_to(deps)
        return {name for name in names if name == ".stamp" or (here / name).as_posix() in LEFT_OUT}

    return ignored


def build(out: Path = ARTIFACT, *, platform: str | None = None, python: str | None = None) -> Path:
    """Stage the artifact in `out` (replaced whole) and return it."""
    platform = platform or this_machine()
    if platform not in WHEEL_PLATFORMS:
        raise SystemExit(f"unknown platform {platform!r}: one of {', '.join(WHEEL_PLATFORMS)}")
    python = python or find_python()
    deps = dependencies(python, platform)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        shutil.copytree(deps, staging, dirs_exist_ok=True, ignore=_left_out_of(deps))
        for source in SOURCES:
            shutil.copytree(REPO / source, staging / source, ignore=_NEVER_COPIED)
            _compile(python, staging / source)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def size_mb(directory: Path) -> float:
    """The artifact's unzipped size in MB (10^6 bytes, as Lambda's 250 MB limit counts them)."""
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--platform", choices=sorted(WHEEL_PLATFORMS), help="default: this machine's processor")
    parser.add_argument("--out", type=Path, default=ARTIFACT, help="default: build/lambda")
    args = parser.parse_args(argv)
    try:
        python = find_python()
    except PythonNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    platform = args.platform or this_machine()
    out = build(args.out, platform=platform, python=python)
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"{shown}: {size_mb(out):.1f} MB unzipped, for {platform} (Python {_full_version(python).split()[0]})")
    if platform != DEPLOYED_PLATFORM:
        deploying = f"make package PLATFORM={DEPLOYED_PLATFORM}"
        print(f"template.yaml deploys {DEPLOYED_PLATFORM}: run `{deploying}` before deploying")
    return 0


if __name__ == "__main__":
    sys.exit(main())
