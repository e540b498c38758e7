"""Other commits' checkouts, for `make bench-compare` and `make security-probe`: a worktree of each, and where each
keeps the local app and its HTTP protocol (devtools/, or shared/ in commits before it; no protocol before issue 12)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from devtools.server_process import REPO


def add_worktree(ref: str, path: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), ref], cwd=REPO, check=True)
    return path


def remove_worktree(path: Path) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=True)


def _tooling_of(tree: Path, module: str) -> str | None:
    """The package a checkout keeps a local-tooling module in: devtools/, or shared/ in commits before it."""
    return next((package for package in ("devtools", "shared") if (tree / package / f"{module}.py").exists()), None)


def http_protocol_of(tree: Path) -> str:
    """The uvicorn protocol a checkout's server runs with: ours bounds request heads; older commits had none."""
    package = _tooling_of(tree, "local_http")
    return f"{package}.local_http:BoundedHttpToolsProtocol" if package else "httptools"


def app_factory_of(tree: Path) -> str:
    """The local app (routes only) of a checkout, wherever that commit keeps it."""
    return f"{_tooling_of(tree, 'local_app') or 'devtools'}.local_app:build_local_app"
