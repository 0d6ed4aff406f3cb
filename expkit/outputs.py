"""Run folders on disk: find the one to resume, read what it stored."""

from __future__ import annotations

from pathlib import Path

from expkit.errors import ExpkitError

STATE = Path("checkpoints") / "resume" / "state.json"


def run_dirs(root: Path) -> list[Path]:
    """Every run folder below <root>/outputs (single runs and sweep jobs), oldest first."""
    found = [p.parent for p in (root / "outputs").glob("*/runs/*/config.yaml")]
    found += [p.parent for p in (root / "outputs").glob("*/multiruns/*/*/config.yaml")]
    return sorted(found, key=lambda p: (p / "config.yaml").stat().st_mtime)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def find_run_dir(target: str, root: Path) -> Path:
    """`latest` (newest unfinished run), an output folder, or an MLflow run id (or a unique prefix)."""
    path = Path(target).expanduser()
    if target != "latest" and path.is_dir():
        if not (path / "run_id").is_file():
            raise ExpkitError(
                f"{path} is not an expkit run folder (it has no run_id file)", hint="pass the folder that holds config.yaml and run_id"
            )
        return path.resolve()
    if target != "latest" and ("/" in target or target.startswith((".", "~")) or path.exists()):  # a path, not a run id
        raise ExpkitError(
            f"{path} is not a run folder" if path.exists() else f"no such run folder: {path}",
            hint="pass a run folder (outputs/<name>/runs/<time>), a run id from `expkit runs list`, or latest",
        )
    dirs = run_dirs(root)
    if target == "latest":
        unfinished = [d for d in dirs if not is_finished(d)]
        if not unfinished:
            raise ExpkitError(
                f"no unfinished run under {root / 'outputs'}",
                hint="every run there finished; pass a run id or folder to resume a specific one"
                if dirs
                else "run expkit resume from the folder you trained in",
            )
        return unfinished[-1]
    matches = [d for d in dirs if (d / "run_id").is_file() and (d / "run_id").read_text().strip().startswith(target)]
    if len(matches) != 1:
        what = "no run folder" if not matches else f"{len(matches)} run folders"
        raise ExpkitError(
            f"{what} under {root / 'outputs'} for run id '{target}'", hint="use `expkit runs list` for ids, or pass the run folder"
        )
    return matches[0]


def stored_arguments(run_dir: Path) -> list[str]:
    """The run's command line again: its overrides and any --config-dir (from Hydra's .hydra/ files)."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise ExpkitError(f"{path} is missing, so the run's overrides are unknown", hint="was this folder written by expkit train?")
    args = [str(o) for o in OmegaConf.load(path)]  # type: ignore[union-attr]
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        sources = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.config_sources", default=[]) or []
        for source in sources:
            if source.provider == "command-line" and source.schema == "file":
                args = ["--config-dir", str(source.path), *args]
    return args
