"""Find the packaged config tree: `expkit/conf` in a wheel, top-level `conf/` in a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def conf_dir() -> Path:
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(
        f"expkit's config tree is missing (looked in {PACKAGE_DIR / 'conf'} and {PACKAGE_DIR.parent / 'conf'}); reinstall expkit"
    )


def group_options(group: str, extra_dirs: list[Path] = ()) -> list[str]:  # type: ignore[assignment]
    """The option names of a config group, e.g. group_options('experiment')."""
    names: set[str] = set()
    for root in [conf_dir(), *extra_dirs]:
        folder = Path(root) / group
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))
    return sorted(names)


def groups(extra_dirs: list[Path] = ()) -> list[str]:  # type: ignore[assignment]
    found: set[str] = set()
    for root in [conf_dir(), *extra_dirs]:
        found.update(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return sorted(found)
