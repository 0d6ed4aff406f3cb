"""Schema and type problems: unknown keys with did-you-mean, missing keys, wrong types, a source's own options."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from expkit.config.arguments import plain_pydantic
from expkit.config.problems import Problems, dotted
from expkit.config.schema import STEP_OPS, ExperimentConfig
from expkit.errors import did_you_mean, suggestion


def check_dataset_options(cfg: dict[str, Any], problems: Problems) -> None:
    """Options beyond the shared dataset keys belong to the source's own registered schema."""
    from expkit.config.schema import Dataset
    from expkit.data.catalog import SOURCES

    dataset = cfg.get("dataset")
    if not isinstance(dataset, dict):
        return
    extra = {k: dataset[k] for k in list(dataset) if k not in Dataset.model_fields}
    source = SOURCES.get(str(dataset.get("source")))
    if source is None and isinstance(dataset.get("source"), str):
        from expkit.data.catalog import all_source_names

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
                problems.add(dotted(loc), "unknown key", f"did you mean '{best}'?" if best else f"allowed: {', '.join(allowed)}")
            elif err["type"] == "missing":
                problems.add(dotted(loc), f"required key is missing (the {dataset.get('source')} source needs it)")
            else:
                problems.add(dotted(loc), f"{err['msg']}, got {err.get('input')!r}")


def check_model_form(config: ExperimentConfig, problems: Problems) -> None:
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


def add_pydantic_error(problems: Problems, err: Any, cfg: Any) -> None:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        # Drop union tags (e.g. 'scale') from the path shown to the user.
        shown = tuple(p for p in loc if not (isinstance(p, str) and p in STEP_OPS and p != loc[-1]))
        fields = _schema_fields(loc[:-1])
        best = did_you_mean(str(loc[-1]), fields)
        hint = (f"did you mean '{dotted((*shown[:-1], best))}'?" if best else "") + (f" allowed: {', '.join(fields)}" if fields else "")
        problems.add(dotted(shown), "unknown key", hint.strip() or None)
    elif kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        problems.add(dotted(loc), f"unknown op '{tag}'", suggestion(str(tag), STEP_OPS, noun="ops"))
    elif kind == "missing":
        problems.add(dotted(loc), "required key is missing")
    else:
        key = dotted(tuple(p for p in loc if not _is_type_label(p)))
        if not any(item.startswith(f"{key}: ") for item in problems.items):  # one problem per key, not one per union member
            plain = plain_pydantic(err)
            problems.add(key, *plain) if plain else problems.add(key, f"{err['msg']}, got {err.get('input')!r}")


def _is_type_label(part: Any) -> bool:
    """pydantic puts union member names (int, constrained-float, dict[str,any], op tags) into error paths."""
    return isinstance(part, str) and (
        part in STEP_OPS or part in {"int", "float", "str", "bool", "none"} or "[" in part or part.startswith(("constrained-", "function-"))
    )
