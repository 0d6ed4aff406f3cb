"""The Dockerfile's `pip install` builds: a wheel builds from exactly what its COPY lines take from the build context
that .dockerignore lets through. (scripts/docker_build.sh builds the real image with buildah and trains inside it.)"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from tests.conftest import REPO

SKIP_DIRS = {".git", ".ci-venv", ".venv", "venv", "node_modules"}  # never part of a sensible context; .dockerignore decides the rest


def dockerignore_patterns(path: Path) -> list[tuple[bool, str]]:
    """(negated, pattern) per line of a .dockerignore, in order; comments and blank lines dropped."""
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = str(PurePosixPath(pattern.lstrip("/"))) if pattern not in ("", ".") else "."
        patterns.append((negated, pattern))
    return patterns


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus `**`): `*` and `?` stay within one path element."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            out, i = (out + "\\[", i + 1) if end < 0 else (out + fnmatch.translate(pattern[i : end + 1])[4:-3], end + 1)
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def excluded(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, pattern in patterns:
        regex = _pattern_regex(pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


def build_context(root: Path) -> list[str]:
    """Every file of the build context `root` (relative POSIX paths) that .dockerignore lets through."""
    patterns = dockerignore_patterns(root / ".dockerignore")
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIP_DIRS or not path.is_file():
            continue
        if not excluded(relative.as_posix(), patterns):
            files.append(relative.as_posix())
    return sorted(files)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    out = []
    for line in joined:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stage_image(dockerfile: Path, context: Path, files: list[str], image: Path) -> tuple[Path, str]:
    """Copy what the COPY lines take from the context into `image` (a stand-in for the image's filesystem); return the
    WORKDIR and the command of the RUN line that pip-installs the project."""
    workdir = PurePosixPath("/")
    for word, args in instructions(dockerfile):
        if word == "WORKDIR":
            workdir = workdir / args
        elif word in ("COPY", "ADD"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            *sources, dest = words
            target = PurePosixPath(dest) if dest.startswith("/") else workdir / dest
            for source in sources:
                source = str(PurePosixPath(source))
                taken = [f for f in files if source == "." or f == source or f.startswith(source + "/")]
                assert taken, f"COPY {source}: not in the build context (.dockerignore excludes it, or it does not exist)"
                for name in taken:
                    if source == name:  # a file: into dest/ if dest ends with /, else as dest
                        to = target / PurePosixPath(name).name if dest.endswith("/") or len(sources) > 1 else target
                    else:  # a folder's contents go into dest
                        to = target / PurePosixPath(name).relative_to(source) if source != "." else target / name
                    out = image / str(to).lstrip("/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / name, out)
        elif word == "RUN" and re.search(r"\bpip3? install\b", args):
            return image / str(workdir).lstrip("/"), args
    raise AssertionError(f"{dockerfile} has no RUN pip install line")


def test_dockerignore_follows_dockers_rules() -> None:
    patterns = [(False, "*"), (True, "expkit"), (True, "experiments/targets.yaml"), (False, "**/__pycache__")]
    assert excluded("tests/test_x.py", patterns) and excluded("experiments/RESULTS.md", patterns)
    assert not excluded("expkit/cli.py", patterns) and not excluded("experiments/targets.yaml", patterns)
    assert excluded("expkit/__pycache__/cli.cpython-311.pyc", patterns)
    assert excluded("a/b/c.txt", [(False, "a")]) and not excluded("ab/c.txt", [(False, "a")])
    assert excluded("x/y/z.md", [(False, "**/*.md")]) and excluded("z.md", [(False, "**/*.md")])


def wheel_from_context(root: Path, tmp: Path) -> Path:
    """Build the wheel the way `root`/Dockerfile's RUN line would, from only what it copied; return the wheel."""
    src, command = stage_image(root / "Dockerfile", root, build_context(root), tmp / "image")
    # the RUN line installs the folder it runs in (".", ".[cpu]", "./"): build that folder's wheel, as pip would
    assert [w for w in shlex.split(command) if re.fullmatch(r"\./?(\[[\w,-]+\])?", w)], (
        f"the RUN line does not pip-install the project: {command}"
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"the wheel does not build from the Dockerfile's context:\n{built.stderr[-3000:]}"
    (wheel,) = (tmp / "dist").glob("expkit-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_builds_from_exactly_the_dockerfiles_context(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel_from_context(REPO, tmp_path)).namelist())
    for needed in (
        "expkit/cli.py",
        "expkit/conf/config.yaml",
        "expkit/experiments/targets.yaml",
        "hydra_plugins/expkit_optuna_sweeper/__init__.py",
    ):
        assert needed in names, f"{needed} missing from the wheel built in the image"
