"""The SDKs as a user gets them: `make package-sdks` builds the wheel, the sdist and the npm tarball once; each is
installed into a fresh environment (a new venv; a project made by exactly `npm init -y`) and pays on the real server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess
from tests.sdk.conftest import TS_SDK
from tests.sdk.test_readmes import PY_BLOCKS, PY_EXPECTED, TS_BLOCKS

DISTRIBUTION = "agentpay-spend"  # the name on PyPI and on npm
IMPORT_NAME = "agentpay_spend"
VERSION = "0.1.0"
TS_README = TS_SDK / "README.md"
PAID = re.compile(r"^[0-9a-f-]{36} approved auto_approved$", re.M)


@dataclass(frozen=True)
class Packages:
    wheel: Path
    sdist: Path
    tarball: Path


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: nothing of this checkout's Python path or AgentPay settings leaks in."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPAY_", "PYTHON", "NODE_", "npm_"))}
    return {**kept, **extra}


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    """`make package-sdks` into a temporary folder, with this Python (its venv is already set up: -o skips that)."""
    out = tmp_path_factory.mktemp("packages")
    run(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/.installed",
            "package-sdks",
            f"PY={sys.executable}",
            f"PACKAGE_DIR={out}",
        ],
        cwd=REPO,
    )
    built = sorted(p.name for p in out.iterdir())
    assert built == [
        f"{DISTRIBUTION}-{VERSION}.tgz",
        f"{IMPORT_NAME}-{VERSION}-py3-none-any.whl",
        f"{IMPORT_NAME}-{VERSION}.tar.gz",
    ], built
    return Packages(
        wheel=out / f"{IMPORT_NAME}-{VERSION}-py3-none-any.whl",
        sdist=out / f"{IMPORT_NAME}-{VERSION}.tar.gz",
        tarball=out / f"{DISTRIBUTION}-{VERSION}.tgz",
    )


# Python ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_python_package_installs_into_a_fresh_venv_and_pays(
    kind: str, packages: Packages, sdk_server: ServerProcess, new_agent: Any, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(getattr(packages, kind))],
        env=user_env(),
    )

    agent = new_agent()
    script = tmp_path / "pay.py"
    script.write_text(PY_BLOCKS[0])  # the README's "Make a payment", as it is
    env = user_env(AGENTPAY_API_KEY=agent.api_key, AGENTPAY_BASE_URL=sdk_server.base_url)
    out = run([str(python), "-I", str(script)], cwd=tmp_path, env=env)
    assert PY_EXPECTED[0] is not None and re.search(PY_EXPECTED[0], out, re.M), out

    where = run(
        [
            str(python),
            "-I",
            "-c",
            f"import {IMPORT_NAME}, importlib.metadata as m; "
            f"print(m.version('{DISTRIBUTION}'), {IMPORT_NAME}.__file__)",
        ],
        cwd=tmp_path,
        env=env,
    ).split()
    assert where[0] == VERSION
    assert Path(where[1]).is_relative_to(venv), f"imported from {where[1]}, not from the fresh venv"


# npm ------------------------------------------------------------------------------------------------------------
def readme_install_commands() -> list[list[str]]:
    """The shell lines of the TypeScript README's "Install" block, comments dropped."""
    section = TS_README.read_text(encoding="utf-8").split("\n## Install\n", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert block is not None, "the Install section has no sh block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


def ts_block(name: str) -> str:
    """The README's js block that opens with `name` (an `import` or a `require` line)."""
    found = [block for block in TS_BLOCKS if block.lstrip().startswith(name)]
    assert found, f"no js block of the README starts with {name!r}"
    return found[0]


@pytest.fixture(scope="module")
def npm_project(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new project exactly as the README sets one up: `npm init -y`, then `npm install` of the tarball."""
    project = tmp_path_factory.mktemp("npm-project")
    commands = readme_install_commands()
    assert commands[0] == ["npm", "init", "-y"], commands
    assert [c[:2] for c in commands[1:]] == [["npm", "install"]], commands
    for command in commands:
        if command[:2] == ["npm", "install"]:
            command = [*command[:-1], str(packages.tarball)]  # the README's placeholder path
        run(command, cwd=project, env=user_env())
    manifest = json.loads((project / "package.json").read_text())
    assert manifest.get("type", "commonjs") == "commonjs", "npm init -y makes a CommonJS project"
    assert manifest["dependencies"][DISTRIBUTION].startswith("file:")

    # TypeScript for the compiled styles, the versions the SDK itself builds with (npm's cache has them).
    lock = json.loads((TS_SDK / "package-lock.json").read_text())["packages"]
    tools = [f"{name}@{lock[f'node_modules/{name}']['version']}" for name in ("typescript", "@types/node")]
    run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "-D", *tools], cwd=project, env=user_env())
    return project


TSCONFIG = {"target": "es2022", "strict": True, "types": ["node"], "skipLibCheck": False}


def _style(project: Path, style: str) -> list[str]:
    """Writes the README's example in one style into its own folder of the project; returns the command to run it."""
    folder = project / style
    folder.mkdir(exist_ok=True)
    if style == "esm-mjs":
        (folder / "pay.mjs").write_text(ts_block("import"))
        return ["node", "pay.mjs"]
    if style == "cjs-require":
        (folder / "pay.js").write_text(ts_block("const"))  # .js is CommonJS here
        return ["node", "pay.js"]
    tsc = str(project / "node_modules" / ".bin" / "tsc")
    if style == "ts-init-mts":
        # `tsc --init`'s own settings (module nodenext, verbatimModuleSyntax), the example as an .mts file.
        run([tsc, "--init"], cwd=folder)
        (folder / "pay.mts").write_text(ts_block("import"))
        run([tsc, "-p", "."], cwd=folder)
        return ["node", "pay.mjs"]
    module = style.removeprefix("ts-")  # commonjs, node16, nodenext: a .ts file in a CommonJS project
    config = {"compilerOptions": {**TSCONFIG, "module": module}, "files": ["pay.ts"]}
    (folder / "tsconfig.json").write_text(json.dumps(config))
    (folder / "pay.ts").write_text(ts_block("import"))
    run([tsc, "-p", "."], cwd=folder)
    return ["node", "pay.js"]


@pytest.mark.parametrize("style", ["esm-mjs", "cjs-require", "ts-commonjs", "ts-node16", "ts-nodenext", "ts-init-mts"])
def test_the_npm_package_pays_from_a_fresh_npm_init_project(
    style: str, npm_project: Path, sdk_server: ServerProcess, new_agent: Any
) -> None:
    command = _style(npm_project, style)
    agent = new_agent(approval_threshold=2000)  # the README's 1250 cents: approved at once
    env = user_env(AGENTPAY_API_KEY=agent.api_key, AGENTPAY_BASE_URL=sdk_server.base_url)
    out = run(command, cwd=npm_project / style, env=env)
    assert PAID.search(out), out
