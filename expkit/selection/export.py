"""Write a sweep's winner as an experiment preset: its base preset plus its overrides (`expkit runs best --export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expkit.errors import ExpkitError

#: Overrides that belong to the search or the machine (paths), not to the chosen configuration.
SEARCH_KEYS = ("experiment", "hparams_search", "hydra", "sweep", "paths")
#: Groups added with `+group=option` whose option also shapes the model (a search preset's searchable layers).
KEPT_ADDED_GROUPS = ("hparams_search",)


def preset_overrides(overrides: list[str]) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(group choices as defaults entries, nested values) from a run's override strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from expkit.config.locate import groups

    known_groups = set(groups())
    group_choices: list[dict[str, str]] = []
    values = OmegaConf.create({})
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key in KEPT_ADDED_GROUPS and isinstance(override.value(), str):
            group_choices.append({f"/{key}": override.value()})
            continue
        if key.split(".")[0].lstrip("+~") in SEARCH_KEYS or override.is_delete():
            continue
        value = override.value()
        if key in known_groups and isinstance(value, str):
            group_choices.append({f"override /{key}": value})
        else:
            OmegaConf.update(values, key, value, force_add=True)
    return group_choices, OmegaConf.to_container(values)  # type: ignore[return-value]


def export_preset(run: Any, path: Path) -> Path:
    """Write `run` (a finished MLflow run with `preset` and `overrides` tags) as the preset file `path`."""
    from omegaconf import OmegaConf

    if path.suffix not in (".yaml", ".yml"):
        raise ExpkitError(f"'{path}' is not a .yaml file", key="--export", hint="give DIR/experiment/NAME.yaml")
    if path.parent.name != "experiment":
        raise ExpkitError(
            f"'{path}' is not in an experiment/ folder",
            key="--export",
            hint="give DIR/experiment/NAME.yaml, then train with --config-dir DIR",
        )
    tags = run.data.tags
    base = tags.get("preset", "default")
    raw = tags.get("overrides", "")
    overrides = [] if raw in ("", "(none)") else raw.split(" ")
    choices, values = preset_overrides(overrides)
    defaults: list[Any] = ([base] if base != "default" else []) + choices + ["_self_"]
    body = OmegaConf.to_yaml({"defaults": defaults, **values})
    objective = run.data.metrics.get("objective")
    header = (
        "# @package _global_\n"
        f"# Exported by `expkit runs best --export` from run {run.info.run_id}"
        + (f" (objective {tags.get('objective.metric', '')} = {objective:.4f})" if objective is not None else "")
        + f":\n# preset {base} plus the winning overrides: {raw}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)
    return path
