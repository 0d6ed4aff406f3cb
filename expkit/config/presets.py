"""A model's hyperparameters (extra `model` keys) and the preset files they come from: inherited keys dropped, unused ones named."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from expkit.config.problems import Problems
from expkit.config.schema import ExperimentConfig
from expkit.errors import did_you_mean


def _model_group_files() -> list[dict[str, Any]]:
    """The raw (unresolved) contents of every option of the `model` config group."""
    from expkit.config.locate import conf_dir

    try:
        folder = conf_dir() / "model"
    except RuntimeError:
        return []
    return [_model_group_file(str(f), f.stat().st_mtime_ns) for f in sorted(folder.glob("*.yaml"))]


@functools.cache
def _model_group_file(path: str, mtime: int) -> dict[str, Any]:
    """One `model` option's raw content, read as Hydra reads it (OmegaConf's YAML: `1e-3` is a float); cached per file
    version. Callers only read it."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


def _preset_files(config_dirs: list[Path]) -> list[Path]:
    """Every experiment preset file: packaged, then in the given config dirs."""
    from expkit.config.locate import conf_dir

    try:
        folders = [conf_dir() / "experiment", *(Path(d) / "experiment" for d in config_dirs)]
    except RuntimeError:
        folders = [Path(d) / "experiment" for d in config_dirs]
    return sorted(f for folder in folders if folder.is_dir() for f in folder.glob("*.yaml"))


@functools.cache
def _preset_yaml(path: str, mtime: int) -> dict[str, Any]:
    """A preset file's raw content (cached per file version); {} if it cannot be read."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except Exception:  # a broken file is reported when it is composed, not here
        return {}
    return doc if isinstance(doc, dict) else {}


def _preset_model(path: str, mtime: int) -> dict[str, Any] | None:
    """A preset file's raw `model` node; None if it has none."""
    model = _preset_yaml(path, mtime).get("model")
    return model if isinstance(model, dict) else None


def preset_chain(name: str, config_dirs: list[Path]) -> list[Path]:
    """The preset that names the run `name` and the presets it extends (its defaults list, followed); [] if none does."""
    files = _preset_files(config_dirs)
    docs = {f: _preset_yaml(str(f), f.stat().st_mtime_ns) for f in files}
    chain = [f for f in files if docs[f].get("name") == name]
    for f in chain:  # grows while it is walked: parents of parents
        for entry in docs[f].get("defaults") or []:
            parent = entry.rsplit("/", 1)[-1] if isinstance(entry, str) and entry != "_self_" else None
            chain += [g for g in files if g.stem == parent and g not in chain]
    return chain


def _preset_model_nodes(config_dirs: list[Path], name: str | None = None) -> list[dict[str, Any]]:
    """The raw `model` node of the run's presets (`name`'s chain; every preset when no file names the run) whose layers,
    nodes or outputs reference one of their own hyperparameters: a preset that extends one may replace those layers."""
    files = (preset_chain(name, config_dirs) if name else []) or _preset_files(config_dirs)
    nodes = [_preset_model(str(f), f.stat().st_mtime_ns) for f in files]
    return [n for n in nodes if n and "${model." in repr({k: n.get(k) for k in ("layers", "nodes", "outputs")})]


def presets_setting(key: str, value: Any, config_dirs: list[Path]) -> list[Path]:
    """The preset files that write `model.KEY: value` themselves (to name them when that key is unused)."""
    return [f for f in _preset_files(config_dirs) if (_preset_model(str(f), f.stat().st_mtime_ns) or {}).get(key, object()) == value]


def inherited_model_keys(raw_model: dict[str, Any], config_dirs: list[Path] | None = None, name: str | None = None) -> list[str]:
    """Keys a preset that defines its own model inherited unchanged and does not use: the default mlp's `units`, its
    `layers`/`loss`/`metrics` under a graph model, or a parent preset's hyperparameter (mnist_dense's `units`) once the
    preset extending it wrote its own layers. The user wrote none of them; the model starts clean without them."""
    groups = _model_group_files()
    inherited = {k for k, v in raw_model.items() if any(k in g and g[k] == v for g in groups)}
    own_layers = {k: raw_model.get(k) for k in ("layers", "nodes", "outputs")}
    fields = set(ExperimentConfig.model_fields["model"].annotation.model_fields)  # type: ignore[union-attr]
    unused = [k for k in raw_model if k not in fields and "${model." + k not in repr({n: v for n, v in raw_model.items() if n != k})]
    dirs = (config_dirs or []) if unused else []
    parents = [p for p in _preset_model_nodes(dirs, name) if p != raw_model] if unused else []
    for parent in parents:  # a parent: its own hyperparameters all arrived unchanged, but its layers were replaced
        hparams = {k: v for k, v in parent.items() if k not in fields}
        replaced = {n: parent.get(n) for n in own_layers} != own_layers
        if hparams and replaced and all(raw_model.get(k, object()) == v for k, v in hparams.items()):
            inherited |= set(hparams)
    drop = [k for k in ("layers", "loss", "metrics") if "outputs" in raw_model and (k in inherited or raw_model.get(k) == "???")]
    kept = {k: v for k, v in raw_model.items() if k not in drop}
    for key in sorted(inherited - fields):
        if "${model." + key + "}" not in repr({k: v for k, v in kept.items() if k != key}):
            drop.append(key)
    return drop


def name_hyperparameters(problems: Problems, raw_model: dict[str, Any]) -> None:
    """A bad layer argument that came from `${model.KEY}` is the user's model.KEY: name that key first."""
    layers = raw_model.get("layers")
    if not isinstance(layers, list):
        return
    for n, item in enumerate(problems.items):
        found = re.match(r"model\.layers\.(\d+)\.(\w+): ", item)
        if not found or int(found.group(1)) >= len(layers) or not isinstance(layers[int(found.group(1))], dict):
            continue
        raw = layers[int(found.group(1))].get(found.group(2))
        source = re.fullmatch(r"\$\{(model\.\w+)\}", raw) if isinstance(raw, str) else None
        if source:
            where = item[: found.end() - 2]
            problems.items[n] = f"{source.group(1)} (used by {where}): " + item[found.end() :]


def check_model_hparams(
    config: ExperimentConfig, raw_model: dict[str, Any], problems: Problems, config_dirs: list[Path] | None = None
) -> None:
    """Extra keys under `model` are hyperparameters; each must be used by a `${model.KEY}` interpolation. An unused one
    that a preset file wrote is reported with that file's name."""
    extras = set(config.model.model_extra or {}) - {"name"}
    # Used anywhere in the model node but its own value: in a layer, a node, or another hyperparameter
    # (a search preset's `hidden` block list, stacked `depth` times into `layers`).
    used = {k for k in extras if re.search(rf"\$\{{model\.{k}\b", repr({n: v for n, v in raw_model.items() if n != k}))}
    fields = list(type(config.model).model_fields)
    for key in sorted(extras - used):
        best = did_you_mean(key, fields + sorted(used))
        hint = f"did you mean 'model.{best}'?" if best else "reference it from a layer as ${model." + key + "}, or remove it"
        dirs = config_dirs or []
        chain = preset_chain(config.name, dirs)
        written = [f for f in presets_setting(key, raw_model.get(key), dirs) if f in chain]
        where = f" (written in {', '.join(str(f) for f in written[:3])})" if written else ""
        problems.add(f"model.{key}", f"unknown key: not a model field and not used by any layer{where}", hint)
