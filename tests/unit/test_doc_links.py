"""Every Markdown file of the repository points only at what a clone has: links, anchors and backticked paths.

A reader who clones the repository has its files and nothing else: a link to a file outside it (a team handbook in
`../shared/`), to a file that was renamed, or to a heading that was reworded leads nowhere. Checked here, for every
Markdown file git knows (tracked, or new and not ignored):

- links `[text](path)`, `[text](path#anchor)`, `[text](#anchor)`, reference definitions `[id]: path`, and HTML
  `href`/`src`: the path exists in the repository and does not climb out of it; an anchor into a Markdown file is the
  slug of one of its headings (GitHub's rules);
- backticked paths: `` `../...` ``, paths starting with a top-level folder of the repository
  (`` `docs/api.md` ``, `` `shared/web.py` ``, a `*` glob, a `file.py::test_name` pytest id) and bare Markdown names
  (`` `API.md` ``). A folder path is read from the repository root, or from the file's own folder.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Never part of a clone (or never ours), for the walk used when git is not available.
NOT_IN_A_CLONE = {".git", ".venv", "node_modules", ".agentpay", ".aws-sam", "__pycache__", "build", "dist"}
# Backticked text starting with one of these is a path in the repository.
REPO_FOLDERS = ("docs/", "sdk/", "shared/", "functions/", "tests/", "migrations/", "examples/", "bench/")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
# [text](target "title"): the text may hold one level of brackets, the target one level of parentheses.
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]"
    r"\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+[\"'(][^)]*)?\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_LINK = re.compile(r"""<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_HTML_ANCHOR = re.compile(r"""<a\b[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PATH_CHARS = re.compile(r"[\w.\-/*]+")


# What the repository holds --------------------------------------------------------------------------------------
def repository_files(root: Path) -> set[str]:
    """Files a clone would have: what git tracks plus new files it does not ignore; a walk without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        found = set()
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in NOT_IN_A_CLONE and not d.endswith(".egg-info")]
            for name in files:
                found.add(Path(folder, name).relative_to(root).as_posix())
        return found
    return {name for name in listed.split("\0") if name and (root / name).is_file()}


def with_folders(files: set[str]) -> set[str]:
    """The files and every folder that holds one."""
    paths = set(files)
    for name in files:
        paths.update(str(parent) for parent in PurePosixPath(name).parents if str(parent) != ".")
    return paths


def markdown_files(files: set[str]) -> list[str]:
    return sorted(name for name in files if name.endswith(".md"))


# Reading Markdown -----------------------------------------------------------------------------------------------
def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is None:
            if opened:
                fence = opened.group(1)
                continue
            yield number, line
        elif opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
            fence = None


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link outside code."""
    for number, line in prose_lines(text):
        prose = _CODE_SPAN.sub("", line)
        for pattern in (_INLINE_LINK, _REFERENCE, _HTML_LINK):
            for found in pattern.finditer(prose):
                target = found.group(1).strip()
                if target.startswith("<") and target.endswith(">"):
                    target = target[1:-1]
                yield number, target


def code_paths(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of backticked text that names a path in the repository."""
    for number, line in prose_lines(text):
        for found in _CODE_SPAN.finditer(line):
            span = found.group(2).strip()
            path = span.split("::", 1)[0].split("#", 1)[0]
            if _PATH_CHARS.fullmatch(path) and _names_a_path(path):
                yield number, span


def _names_a_path(path: str) -> bool:
    if path.startswith("../") or path.startswith(REPO_FOLDERS):
        return True
    return "/" not in path and path.endswith(".md") and "*" not in path  # a bare Markdown name: `API.md`


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces turned into hyphens."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", heading)  # images
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "").replace("*", "").replace("~", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a Markdown file: its headings' slugs (repeats numbered -1, -2, ...) and HTML ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous: str | None = None
    for _, line in prose_lines(text):
        heading = None
        atx = _ATX_HEADING.match(line)
        if atx:
            heading = atx.group(2) or ""
        elif previous and previous.strip() and _SETEXT_UNDERLINE.match(line) and not _ATX_HEADING.match(previous):
            heading = previous.strip()
        if heading is not None:
            slug = github_slug(heading)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(_HTML_ANCHOR.findall(line))
        previous = line
    return found


# Checking one file ----------------------------------------------------------------------------------------------
def _inside(root: Path, folder: str, relative: str) -> str | None:
    """`relative` read from `folder` (a repository path), normalised; None when it climbs out of the repository."""
    joined = os.path.normpath(os.path.join(folder, relative)) if relative else folder
    if joined == "." or joined == "":
        return ""
    if joined == ".." or joined.startswith("../") or os.path.isabs(joined):
        return None
    return PurePosixPath(joined).as_posix()


def _exists(path: str, paths: set[str]) -> bool:
    if path == "":
        return True
    if "*" in path:
        return any(fnmatch.fnmatchcase(candidate, path) for candidate in paths)
    return path.rstrip("/") in paths


def _anchor_problem(root: Path, target_file: str, fragment: str) -> str | None:
    if target_file == "" or (root / target_file).is_dir():
        target_file = f"{target_file}/README.md".lstrip("/")
    if not target_file.endswith(".md") or not (root / target_file).is_file():
        return None  # an anchor into code (#L10) or a page GitHub renders its own way
    if unquote(fragment) in anchors((root / target_file).read_text(encoding="utf-8")):
        return None
    return f"#{fragment} is no heading of {target_file}"


def _pytest_id_problem(root: Path, path: str, names: str) -> str | None:
    source = (root / path).read_text(encoding="utf-8")
    for name in names.split("::"):
        name = name.split("[", 1)[0]
        if not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", source, re.MULTILINE):
            return f"{path} has no test {name}"
    return None


def problems(doc: str, root: Path, paths: set[str]) -> list[str]:
    """What in `doc` (a repository path) points at nothing in the repository, one message per problem."""
    text = (root / doc).read_text(encoding="utf-8")
    folder = str(PurePosixPath(doc).parent)
    found: list[str] = []

    for number, target in links(text):
        if not target or target.startswith("//") or _SCHEME.match(target):
            continue  # a web address: not ours to check
        location, _, fragment = unquote(target).partition("#")
        location = location.split("?", 1)[0]
        if location.startswith("/"):
            resolved = _inside(root, ".", location.lstrip("/"))
        else:
            resolved = _inside(root, folder, location) if location else doc
        if resolved is None:
            found.append(f"{doc}:{number}: link {target!r} climbs out of the repository")
        elif not _exists(resolved, paths):
            found.append(f"{doc}:{number}: link {target!r}: no {resolved} in the repository")
        elif fragment and (problem := _anchor_problem(root, resolved, fragment)):
            found.append(f"{doc}:{number}: link {target!r}: {problem}")

    for number, span in code_paths(text):
        path, _, test_id = span.partition("::")
        path, _, fragment = path.partition("#")
        if path.startswith("../") or "/" not in path:
            resolved_paths = [_inside(root, folder, path)]
        else:
            resolved_paths = [_inside(root, ".", path), _inside(root, folder, path)]
        if resolved_paths[0] is None:
            found.append(f"{doc}:{number}: `{span}` climbs out of the repository")
            continue
        existing = [p for p in resolved_paths if p is not None and _exists(p, paths)]
        if not existing:
            found.append(f"{doc}:{number}: `{span}`: no such path in the repository")
            continue
        problem = (_anchor_problem(root, existing[0], fragment) if fragment else None) or (
            _pytest_id_problem(root, existing[0], test_id) if test_id else None
        )
        if problem:
            found.append(f"{doc}:{number}: `{span}`: {problem}")
    return found


# The repository's own Markdown ----------------------------------------------------------------------------------
FILES = repository_files(ROOT)
PATHS = with_folders(FILES)


def test_the_repository_has_its_markdown_files() -> None:
    docs = markdown_files(FILES)
    assert "README.md" in docs and len(docs) >= 5, docs


@pytest.mark.parametrize("doc", markdown_files(FILES))
def test_every_link_and_path_of_a_markdown_file_exists_in_the_repository(doc: str) -> None:
    found = problems(doc, ROOT, PATHS)
    assert not found, "points at nothing in the repository:\n" + "\n".join(found)


# The checker itself, on a small repository of its own -----------------------------------------------------------
def _repository(tmp_path: Path, files: dict[str, str]) -> set[str]:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return with_folders(set(files))


def test_github_slugs() -> None:
    assert github_slug("Errors") == "errors"
    assert github_slug("Authentication and request signing") == "authentication-and-request-signing"
    assert github_slug("`POST /v1/payment-request`") == "post-v1payment-request"
    assert github_slug("I1 Budget: never overspent (I1)") == "i1-budget-never-overspent-i1"
    assert github_slug("The `decision_reason` values") == "the-decision_reason-values"
    assert github_slug("Webhooks & [links](x.md)") == "webhooks--links"


def test_what_points_nowhere_is_reported_and_what_exists_is_not(tmp_path: Path) -> None:
    paths = _repository(
        tmp_path,
        {
            "README.md": "\n".join(
                [
                    "# Title",
                    "## Two words",
                    "## Two words",
                    "[ok](docs/api.md) [ok](docs/api.md#errors) [ok](#two-words-1) [ok](https://example.com/x.md)",
                    "[ok](docs/) [ok](/shared/web.py) ![ok](docs/img.png 'title') [ok](shared/web.py#L3)",
                    "`docs/api.md` `shared/*.py` `tests/test_a.py::test_one` `api.md is prose`",
                    "[missing](docs/gone.md) [anchor](docs/api.md#nope) [self](#nope) [out](../handbook/API.md)",
                    "`../handbook/API.md` `shared/gone.py` `tests/test_a.py::test_two` `API.md` `docs/*.txt`",
                    "```",
                    "[in a fence](nowhere.md) `shared/in_a_fence.py`",
                    "```",
                    "`[in code](nowhere.md)`",
                    "[ref]: docs/missing.md",
                ]
            ),
            "docs/api.md": "# API\n\nErrors\n------\n",
            "docs/img.png": "",
            "shared/web.py": "",
            "tests/test_a.py": "def test_one():\n    pass\n",
        },
    )
    assert problems("README.md", tmp_path, paths) == [
        "README.md:7: link 'docs/gone.md': no docs/gone.md in the repository",
        "README.md:7: link 'docs/api.md#nope': #nope is no heading of docs/api.md",
        "README.md:7: link '#nope': #nope is no heading of README.md",
        "README.md:7: link '../handbook/API.md' climbs out of the repository",
        "README.md:13: link 'docs/missing.md': no docs/missing.md in the repository",
        "README.md:8: `../handbook/API.md` climbs out of the repository",
        "README.md:8: `shared/gone.py`: no such path in the repository",
        "README.md:8: `tests/test_a.py::test_two`: tests/test_a.py has no test test_two",
        "README.md:8: `API.md`: no such path in the repository",
        "README.md:8: `docs/*.txt`: no such path in the repository",
    ]


def test_paths_are_read_from_the_files_own_folder_too(tmp_path: Path) -> None:
    paths = _repository(
        tmp_path,
        {
            "sdk/python/README.md": "[up](../../docs/api.md#api) `tests/test_readme.py` `../../README.md` `README.md`",
            "sdk/python/tests/test_readme.py": "",
            "docs/api.md": "# API\n",
            "README.md": "",
        },
    )
    assert problems("sdk/python/README.md", tmp_path, paths) == []
