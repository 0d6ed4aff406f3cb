"""Turn a composed config into a checked ExperimentConfig, or one clear error listing every problem.

The checks live by concern: schema_checks (keys and types), components (Keras names and arguments), presets (model
hyperparameters and the preset files), task (loss vs output layer and labels), graph (graph models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from expkit.config.components import check_components, layer_checker
from expkit.config.graph import check_graph
from expkit.config.presets import check_model_hparams, inherited_model_keys, name_hyperparameters
from expkit.config.problems import Problems
from expkit.config.schema import ExperimentConfig
from expkit.config.schema_checks import add_pydantic_error, check_dataset_options, check_model_form
from expkit.config.task import CATEGORICAL_LOSSES, SPARSE_LOSSES, check_outputs, check_task, loss_key
from expkit.errors import ExpkitError

__all__ = ["CATEGORICAL_LOSSES", "SPARSE_LOSSES", "Problems", "loss_key", "validate_config"]


def validate_config(cfg: Any, config_dirs: list[Path] | None = None) -> ExperimentConfig:
    """Resolve `cfg` (DictConfig or dict), check it against the schema and Keras' names.

    `config_dirs`: extra config folders (--config-dir) whose presets may be extended (the app passes its own: expkit.app.hydra_config_dirs).
    """
    from omegaconf import DictConfig, OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    try:
        model_node = cfg.get("model")
        raw_model: dict[str, Any] = OmegaConf.to_container(model_node, resolve=False) if isinstance(model_node, DictConfig) else {}  # type: ignore[assignment]
        name = cfg.get("name") if isinstance(cfg.get("name"), str) else None
        drop = inherited_model_keys(raw_model, config_dirs, name) if raw_model else []
        if drop:
            with open_dict(model_node):
                for key in drop:
                    del model_node[key]
                    raw_model.pop(key)
        cfg = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ExpkitError(str(exc).splitlines()[0], key=key, hint="check the ${...} interpolation") from None
    problems = Problems()
    check_dataset_options(cfg, problems)
    try:
        config = ExperimentConfig.model_validate(cfg)
    except ValidationError as exc:
        for err in exc.errors():
            add_pydantic_error(problems, err, cfg)
        problems.raise_if_any()
        raise  # unreachable: every error added a problem
    check_model_form(config, problems)
    check_components(config, problems)
    name_hyperparameters(problems, raw_model)
    check_model_hparams(config, raw_model, problems, config_dirs)
    if config.model.is_graph:
        check_graph(config.model, layer_checker(problems), problems.add)
        check_outputs(config, problems)
    elif config.model.layers and config.model.loss is not None:
        check_task(config, problems)
    problems.raise_if_any()
    return config
