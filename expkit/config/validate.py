"""Turn a composed config into a checked ExperimentConfig, or one clear error listing every problem."""

from __future__ import annotations

import functools
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from expkit.config.arguments import argument_problem, plain_pydantic
from expkit.config.catalog import load_catalog
from expkit.config.graph import check_graph
from expkit.config.schema import STEP_OPS, ExperimentConfig, OneHot
from expkit.errors import ExpkitError, did_you_mean, suggestion

# Losses that need one output unit per class, and those that need a single unit (snake_case: see loss_key).
CATEGORICAL_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy"}
SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy"}


def loss_key(loss: Any) -> str:
    """A configured loss as Keras' snake_case function name: 'categorical_crossentropy' for that string, for
    'CategoricalCrossentropy' and for {type: CategoricalCrossentropy, ...}; '' for a `_target_` loss."""
    name = loss if isinstance(loss, str) else str(loss.get("type", "")) if isinstance(loss, dict) else ""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def named_source(config: ExperimentConfig) -> bool:
    """A source whose targets are arrays of the user's own shape (random, npz): their encoding shows in their shape,
    which the pre-flight reads (expkit.preflight.check_targets), not in the preprocessing steps."""
    from expkit.data.named import SOURCES

    source = SOURCES.get(config.dataset.source)
    return source is not None and source.named_arrays


# Metric/loss names Keras resolves by string without a module attribute of that name.
METRIC_ALIASES = {"accuracy", "acc", "crossentropy", "ce", "mse", "mae", "mape", "msle"}


class Problems:
    """Collects config problems so the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str, hint: str | None = None) -> None:
        self.items.append(f"{key}: {message}" + (f" ({hint})" if hint else ""))

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise ExpkitError(self.items[0])
        if self.items:
            raise ExpkitError(f"{len(self.items)} problems in the config:\n  - " + "\n  - ".join(self.items))


def validate_config(cfg: Any, config_dirs: list[Path] | None = None) -> ExperimentConfig:
    """Resolve `cfg` (DictConfig or dict), check it against the schema and Keras' names.

    `config_dirs`: extra config folders (--config-dir) whose presets may be extended; default: the running Hydra app's.
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
    _check_dataset_options(cfg, problems)
    try:
        config = ExperimentConfig.model_validate(cfg)
    except ValidationError as exc:
        for err in exc.errors():
            _add_pydantic_error(problems, err, cfg)
        problems.raise_if_any()
        raise  # unreachable: every error added a problem
    _check_model_form(config, problems)
    _check_components(config, problems)
    _name_hyperparameters(problems, raw_model)
    _check_model_hparams(config, raw_model, problems, config_dirs)
    if config.model.is_graph:
        check_graph(config.model, _layer_checker(problems), problems.add)
        _check_outputs(config, problems)
    elif config.model.layers and config.model.loss is not None:
        _check_task(config, problems)
    problems.raise_if_any()
    return config


def _model_group_files() -> list[dict[str, Any]]:
    """The raw (unresolved) contents of every option of the `model` config group."""
    from omegaconf import OmegaConf

    from expkit.config.locate import conf_dir

    try:
        folder = conf_dir() / "model"
    except RuntimeError:
        return []
    return [OmegaConf.to_container(OmegaConf.load(f), resolve=False) for f in sorted(folder.glob("*.yaml"))]  # type: ignore[misc]


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


def _hydra_config_dirs() -> list[Path]:
    """The --config-dir folders of the running Hydra app (none outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        sources = HydraConfig.get().runtime.config_sources
        return [Path(s.path) for s in sources if s.provider == "command-line" and s.schema == "file"]
    except Exception:
        return []


def inherited_model_keys(raw_model: dict[str, Any], config_dirs: list[Path] | None = None, name: str | None = None) -> list[str]:
    """Keys a preset that defines its own model inherited unchanged and does not use: the default mlp's `units`, its
    `layers`/`loss`/`metrics` under a graph model, or a parent preset's hyperparameter (mnist_dense's `units`) once the
    preset extending it wrote its own layers. The user wrote none of them; the model starts clean without them."""
    groups = _model_group_files()
    inherited = {k for k, v in raw_model.items() if any(k in g and g[k] == v for g in groups)}
    own_layers = {k: raw_model.get(k) for k in ("layers", "nodes", "outputs")}
    fields = set(ExperimentConfig.model_fields["model"].annotation.model_fields)  # type: ignore[union-attr]
    unused = [k for k in raw_model if k not in fields and "${model." + k not in repr({n: v for n, v in raw_model.items() if n != k})]
    dirs = (_hydra_config_dirs() if config_dirs is None else config_dirs) if unused else []
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


def _check_dataset_options(cfg: dict[str, Any], problems: Problems) -> None:
    """Options beyond the shared dataset keys belong to the source's own registered schema."""
    from expkit.config.schema import Dataset
    from expkit.data.named import SOURCES

    dataset = cfg.get("dataset")
    if not isinstance(dataset, dict):
        return
    extra = {k: dataset[k] for k in list(dataset) if k not in Dataset.model_fields}
    source = SOURCES.get(str(dataset.get("source")))
    if source is None and isinstance(dataset.get("source"), str):
        from expkit.data.named import all_source_names

        known = all_source_names()
        if dataset["source"] not in known:
            problems.add(
                "dataset.source", f"unknown dataset source '{dataset['source']}'", suggestion(dataset["source"], known, noun="sources")
            )
            return
    if source is None or not source.own_keys:  # a source whose options are shared dataset keys only (keras, image_dir, ...)
        fields = list(Dataset.model_fields)
        for key in extra:
            best = did_you_mean(key, fields)
            hint = (f"did you mean 'dataset.{best}'?" if best else "") + f" allowed: {', '.join(fields)}"
            problems.add(f"dataset.{key}", "unknown key", hint.strip())
        return
    try:
        source.options.model_validate(extra)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ("dataset", *err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = [*source.options.model_fields, *Dataset.model_fields]
                best = did_you_mean(str(loc[-1]), allowed)
                problems.add(_dotted(loc), "unknown key", f"did you mean '{best}'?" if best else f"allowed: {', '.join(allowed)}")
            elif err["type"] == "missing":
                problems.add(_dotted(loc), f"required key is missing (the {dataset.get('source')} source needs it)")
            else:
                problems.add(_dotted(loc), f"{err['msg']}, got {err.get('input')!r}")


def _check_model_form(config: ExperimentConfig, problems: Problems) -> None:
    model = config.model
    if model.is_graph:
        if model.layers:
            problems.add("model.layers", "give either `layers` (a sequential model) or `inputs`/`nodes`/`outputs` (a graph), not both")
        if model.loss is not None:
            problems.add("model.loss", "a graph model gives each output its own loss", "move it to model.outputs.<name>.loss")
        if model.input_shape is not None:
            problems.add("model.input_shape", "a graph model sets shapes per input", "use model.inputs.<name>.shape")
        return
    if not model.layers:
        problems.add("model.layers", "required key is missing", "a list of layers, or a graph with inputs/nodes/outputs")
    if model.loss is None:
        problems.add("model.loss", "required key is missing")
    for key in ("inputs", "nodes", "shared", "blocks"):
        if getattr(model, key):
            problems.add(f"model.{key}", "belongs to a graph model, which also needs `outputs`", None)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _schema_fields(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows at `loc` (used for did-you-mean on unknown keys)."""
    node: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int) or not (isinstance(node, type) and issubclass(node, BaseModel)):
            continue
        field = node.model_fields.get(part)
        if field is None:  # a discriminated-union tag such as 'scale' in a step's loc
            return []
        node = field.annotation
        while typing.get_origin(node) is not None and not (isinstance(node, type) and issubclass(node, BaseModel)):
            args = [a for a in typing.get_args(node) if isinstance(a, type) and issubclass(a, BaseModel)]
            inner = [a for a in typing.get_args(node) if a is not type(None)]
            node = args[0] if args else (inner[0] if inner else None)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _add_pydantic_error(problems: Problems, err: Any, cfg: Any) -> None:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        # Drop union tags (e.g. 'scale') from the path shown to the user.
        shown = tuple(p for p in loc if not (isinstance(p, str) and p in STEP_OPS and p != loc[-1]))
        fields = _schema_fields(loc[:-1])
        best = did_you_mean(str(loc[-1]), fields)
        hint = (f"did you mean '{_dotted((*shown[:-1], best))}'?" if best else "") + (f" allowed: {', '.join(fields)}" if fields else "")
        problems.add(_dotted(shown), "unknown key", hint.strip() or None)
    elif kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        problems.add(_dotted(loc), f"unknown op '{tag}'", suggestion(str(tag), STEP_OPS, noun="ops"))
    elif kind == "missing":
        problems.add(_dotted(loc), "required key is missing")
    else:
        key = _dotted(tuple(p for p in loc if not _is_type_label(p)))
        if not any(item.startswith(f"{key}: ") for item in problems.items):  # one problem per key, not one per union member
            plain = plain_pydantic(err)
            problems.add(key, *plain) if plain else problems.add(key, f"{err['msg']}, got {err.get('input')!r}")


def _is_type_label(part: Any) -> bool:
    """pydantic puts union member names (int, constrained-float, dict[str,any], op tags) into error paths."""
    return isinstance(part, str) and (
        part in STEP_OPS or part in {"int", "float", "str", "bool", "none"} or "[" in part or part.startswith(("constrained-", "function-"))
    )


def _check_kwargs(problems: Problems, key: str, kind: str, spec: dict[str, Any], catalog: dict[str, list[str]], skip: set[str]) -> None:
    """`spec` is {type: Name, **kwargs}: check Name against `catalog` and the kwargs against its signature."""
    if "_target_" in spec:
        if "type" in spec:
            problems.add(key, "give either `type` or `_target_`, not both")
        return
    name = spec.get("type")
    if not isinstance(name, str):
        problems.add(key, f"needs `type: <Keras {kind} name>` or `_target_: package.Class`")
        return
    if name not in catalog:
        problems.add(f"{key}.type", f"unknown {kind} '{name}'", suggestion(name, catalog, noun="known"))
        return
    allowed = catalog[name]
    for arg in spec:
        if arg not in allowed and arg not in skip:
            best = did_you_mean(arg, allowed)
            problems.add(
                f"{key}.{arg}", f"{name} has no argument '{arg}'", f"did you mean '{best}'?" if best else f"allowed: {', '.join(allowed)}"
            )
        elif kind != "layer" and arg not in skip and (problem := argument_problem(arg, spec[arg])):  # layers: see _layer_checker
            problems.add(f"{key}.{arg}", *problem)


def layer_catalog() -> dict[str, list[str]]:
    """Every layer name validation accepts: Keras layers, keras.applications models, and layers registered with expkit."""
    from expkit.config.catalog import _init_params
    from expkit.models.builder import LAYERS

    catalog = load_catalog()
    known = {**{n: [*p, "trainable"] for n, p in catalog.get("applications", {}).items()}, **catalog["layers"]}
    for name, obj in LAYERS.own().items():
        known.setdefault(name, _init_params(obj) if isinstance(obj, type) else list(typing.get_type_hints(obj)) or [])
    return known


def _layer_checker(problems: Problems) -> Any:
    """check(key, spec, skip): a layer spec's type, kwargs, activation and dropout rate."""
    layers = layer_catalog()
    activations = set(load_catalog()["activations"])

    def check(key: str, spec: dict[str, Any], skip: set[str]) -> None:
        _check_kwargs(
            problems, key, "layer", {k: v for k, v in spec.items() if k not in skip or k in ("type", "_target_")}, layers, {"type"}
        )
        rate = spec.get("rate")
        if "Dropout" in str(spec.get("type")) and isinstance(rate, int | float) and not 0 <= rate < 1:
            problems.add(f"{key}.rate", f"dropout rate must be in [0, 1), got {rate}", "0.5 drops half the units")
        known = layers.get(str(spec.get("type")), [])
        for arg, value in spec.items():
            problem = argument_problem(arg, value) if arg in known and arg not in skip else None
            if problem and not any(item.startswith(f"{key}.{arg}: ") for item in problems.items):
                problems.add(f"{key}.{arg}", *problem)
        act = spec.get("activation")
        if isinstance(act, str) and not act.startswith("$") and act not in activations:
            problems.add(f"{key}.activation", f"unknown activation '{act}'", suggestion(act, activations, noun="known"))

    return check


def _check_components(config: ExperimentConfig, problems: Problems) -> None:
    catalog = load_catalog()
    check_layer = _layer_checker(problems)
    for i, layer in enumerate(config.model.layers):
        check_layer(f"model.layers.{i}", layer, set())
        if "trainable" in layer and not isinstance(layer["trainable"], bool):
            problems.add(f"model.layers.{i}.trainable", f"must be true or false, got {layer['trainable']!r}")
    for i, layer in enumerate(config.dataset.augment):
        check_layer(f"dataset.augment.{i}", layer, set())
    if config.features is not None and config.features.base not in catalog.get("applications", {}):
        problems.add("features.base", f"unknown keras.applications base '{config.features.base}'", "e.g. VGG16, ResNet50, MobileNetV2")
    for i, phase in enumerate(config.phases):
        if phase.optimizer is not None:
            spec = phase.optimizer.model_dump()
            _check_kwargs(
                problems,
                f"phases.{i}.optimizer",
                "optimizer",
                spec,
                {k.lower(): v for k, v in catalog["optimizers"].items()} | catalog["optimizers"],
                {"type"},
            )
    opt = config.optimizer.model_dump()
    _check_kwargs(
        problems, "optimizer", "optimizer", opt, {k.lower(): v for k, v in catalog["optimizers"].items()} | catalog["optimizers"], {"type"}
    )
    if isinstance(config.optimizer.learning_rate, dict):
        _check_kwargs(problems, "optimizer.learning_rate", "schedule", config.optimizer.learning_rate, catalog["schedules"], {"type"})
    for name, spec in config.callbacks.items():
        _check_kwargs(problems, f"callbacks.{name}", "callback", spec, catalog["callbacks"], {"type"})
    _check_loss_and_metrics(problems, "model", config.model.loss, config.model.metrics)
    for name, spec in (config.model.outputs or {}).items():
        metrics = spec.get("metrics", [])
        if not isinstance(metrics, list):
            problems.add(f"model.outputs.{name}.metrics", f"must be a list, got {metrics!r}")
            metrics = []
        _check_loss_and_metrics(problems, f"model.outputs.{name}", spec.get("loss"), metrics)


def _check_loss_and_metrics(problems: Problems, prefix: str, loss: Any, metrics: list[Any]) -> None:
    catalog = load_catalog()
    if isinstance(loss, str) and loss not in catalog["losses"] and loss not in METRIC_ALIASES:
        problems.add(
            f"{prefix}.loss", f"unknown loss '{loss}'", suggestion(loss, [n for n in catalog["losses"] if n.islower()], noun="known")
        )
    for i, metric in enumerate(metrics):
        if isinstance(metric, str) and metric not in catalog["metrics"] and metric not in METRIC_ALIASES:
            problems.add(
                f"{prefix}.metrics.{i}",
                f"unknown metric '{metric}'",
                suggestion(metric, [n for n in catalog["metrics"] if n.islower()] + sorted(METRIC_ALIASES), noun="known"),
            )


def _name_hyperparameters(problems: Problems, raw_model: dict[str, Any]) -> None:
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


def _check_model_hparams(
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
        dirs = _hydra_config_dirs() if config_dirs is None else config_dirs
        chain = preset_chain(config.name, dirs)
        written = [f for f in presets_setting(key, raw_model.get(key), dirs) if f in chain]
        where = f" (written in {', '.join(str(f) for f in written[:3])})" if written else ""
        problems.add(f"model.{key}", f"unknown key: not a model field and not used by any layer{where}", hint)


def _check_task(config: ExperimentConfig, problems: Problems) -> None:
    """The loss must fit the output layer and the label encoding."""
    one_hot = [step.num_classes for step in config.dataset.preprocess.y if isinstance(step, OneHot)]
    encoded = bool(one_hot) or not named_source(config)
    last = config.model.layers[-1]
    _check_loss_fit(problems, "model.loss", "model.layers", config.model.loss, last, one_hot, "dataset.preprocess.y", encoded)


def _check_outputs(config: ExperimentConfig, problems: Problems) -> None:
    """Per output: the loss fits its layer and its labels' encoding."""
    for name, spec in (config.model.outputs or {}).items():
        if not isinstance(spec.get("loss"), str | dict):
            continue
        steps = config.dataset.preprocess.steps_for("y", name)
        one_hot = [step.num_classes for step in steps if step.op == "one_hot"]
        key = f"model.outputs.{name}"
        encoded = bool(one_hot) or not named_source(config)
        _check_loss_fit(problems, f"{key}.loss", f"{key}.units", spec["loss"], spec, one_hot, f"dataset.preprocess.{name}", encoded)


def _check_loss_fit(
    problems: Problems,
    key: str,
    units_key: str,
    loss: Any,
    last: dict[str, Any],
    one_hot_classes: list[int],
    labels_key: str,
    encoded: bool = True,
) -> None:
    """`encoded`: the steps say how labels are encoded (False: a named source's targets, checked by their shape)."""
    shown = loss if isinstance(loss, str) else str(loss.get("type", ""))
    loss = loss_key(loss)
    units = last.get("units") if last.get("type") == "Dense" else None
    activation = last.get("activation")
    one_hot = bool(one_hot_classes)
    if loss in CATEGORICAL_LOSSES | SPARSE_LOSSES and units == 1:
        problems.add(
            key,
            f"{shown} needs one output unit per class, but the last layer has 1 unit",
            "for two classes with a 1-unit sigmoid use binary_crossentropy",
        )
    if loss in BINARY_LOSSES and isinstance(units, int) and units > 1 and activation == "softmax":
        problems.add(
            key,
            f"binary_crossentropy on a {units}-way softmax",
            "use categorical_crossentropy (one-hot labels) or sparse_categorical_crossentropy (integer labels)",
        )
    if loss in SPARSE_LOSSES and one_hot:
        problems.add(
            key,
            f"{shown} expects integer labels, but {labels_key} one-hot encodes them",
            "use categorical_crossentropy, or drop the one_hot step",
        )
    if loss in CATEGORICAL_LOSSES and not one_hot and units != 1 and encoded:
        problems.add(
            key,
            f"{shown} expects one-hot labels, but {labels_key} has no one_hot step",
            "use sparse_categorical_crossentropy, or add {op: one_hot, num_classes: N}",
        )
    for classes in one_hot_classes:
        if isinstance(units, int) and units != classes:
            problems.add(units_key, f"the last layer has {units} units but labels are one-hot with {classes} classes", "make them match")
