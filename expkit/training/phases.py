"""Multi-phase training: each phase sets what is trainable and its optimizer; epochs continue one axis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expkit.config.schema import ExperimentConfig
from expkit.errors import ExpkitError


@dataclass
class PhasePlan:
    """Global epochs [start, end) trained with `optimizer`, trainable as `trainable_from` says."""

    index: int
    start: int
    end: int
    optimizer: dict[str, Any]
    trainable_from: str | None


def plan_phases(config: ExperimentConfig, epochs: int | None = None) -> list[PhasePlan]:
    """The phases of a run; without `phases:` one phase of `epochs` (default trainer.epochs) with the run's optimizer."""
    if not config.phases:
        return [PhasePlan(0, 0, epochs or config.trainer.epochs, config.optimizer.model_dump(), None)]
    plans, start = [], 0
    for i, phase in enumerate(config.phases):
        optimizer = (phase.optimizer or config.optimizer).model_dump()
        plans.append(PhasePlan(i, start, start + phase.epochs, optimizer, phase.trainable_from))
        start += phase.epochs
    return plans


def all_layers(model: Any) -> list[Any]:
    """Every layer below `model`, depth first, parents before their children (nested models included)."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(all_layers(layer))
    return out


def remember_trainable(model: Any) -> dict[int, bool]:
    """The trainable flag of every layer as built from the config (restored by phases without trainable_from)."""
    return {id(layer): layer.trainable for layer in all_layers(model)}


def set_trainable(model: Any, trainable_from: str | None, built: dict[int, bool], key: str) -> None:
    """As built (`trainable_from` None), or: every weight-holding layer from `trainable_from` on trainable, the ones before frozen."""
    layers = all_layers(model)
    model.trainable = True
    if trainable_from is None:
        for layer in layers:  # parents come first, so a frozen parent does not override its children afterwards
            layer.trainable = built.get(id(layer), True)
        return
    names = [layer.name for layer in layers]
    if trainable_from not in names:
        raise ExpkitError(
            f"no layer named '{trainable_from}' in the model",
            key=key,
            hint=f"layer names: {', '.join(names[:40])}{' ...' if len(names) > 40 else ''}",
        )
    start = names.index(trainable_from)
    for i, layer in enumerate(layers):
        if not getattr(layer, "layers", None):  # leaves only; containers stay trainable so their later children can train
            layer.trainable = i >= start
