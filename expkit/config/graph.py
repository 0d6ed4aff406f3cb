"""Static checks of a graph model (inputs, nodes, shared layers, blocks, outputs), before TensorFlow is imported.

Also the helpers the builder shares with validation: node names, which tensors a node reads, placeholders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from expkit.errors import did_you_mean

# Node keys that are not layer constructor arguments.
NODE_KEYS = ("name", "in", "type", "layer", "block", "_target_", "trainable", "project")
# Output keys that go to compile(), not to the output layer.
OUTPUT_KEYS = ("in", "type", "layer", "_target_", "trainable", "loss", "metrics", "loss_weight")
BLOCK_INPUT = "input"

AddProblem = Callable[[str, str, str | None], None]


def node_name(node: dict[str, Any], index: int) -> str:
    """A node's name; unnamed nodes are called by their position."""
    name = node.get("name")
    return str(name) if name is not None else str(index)


def node_inputs(node: dict[str, Any], previous: str | None) -> list[str]:
    """The tensor names a node (or output) reads: its `in`, else the previous node's output."""
    src = node.get("in", previous)
    if src is None:
        return []
    return [str(s) for s in src] if isinstance(src, list | tuple) else [str(src)]


def substitute(value: Any, params: dict[str, Any]) -> Any:
    """Replace every "$name" string in `value` (nested lists/dicts too) by params[name]."""
    if isinstance(value, str) and value.startswith("$") and value[1:] in params:
        return params[value[1:]]
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    return value


def placeholders(value: Any) -> set[str]:
    """The "$name" placeholders used in `value`."""
    if isinstance(value, str) and value.startswith("$") and value[1:].isidentifier():
        return {value[1:]}
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    return set()


def _ref(add: AddProblem, key: str, name: str, known: list[str], what: str) -> bool:
    if name in known:
        return True
    best = did_you_mean(name, known)
    add(key, f"unknown {what} '{name}'", f"did you mean '{best}'?" if best else f"known: {', '.join(known) or 'none'}")
    return False


def check_nodes(
    nodes: list[dict[str, Any]],
    sources: list[str],
    *,
    prefix: str,
    shared: dict[str, Any],
    blocks: dict[str, Any],
    check_layer: Callable[[str, dict[str, Any], set[str]], None],
    add: AddProblem,
) -> dict[str, list[str]]:
    """Check a node list whose first node may read `sources`; returns each node's inputs (for cycle and use checks)."""
    names = [node_name(n, i) for i, n in enumerate(nodes)]
    seen: set[str] = set()
    for name in names:
        if name in sources:
            add(f"{prefix}.{name}.name", f"'{name}' is already an input name", "give the node another name")
        if name in seen:
            add(f"{prefix}.{name}.name", f"two nodes are called '{name}'", "node names must be unique")
        seen.add(name)
    known = [*sources, *names]
    edges: dict[str, list[str]] = {}
    previous = sources[0] if len(sources) == 1 else None
    for node, name in zip(nodes, names, strict=True):
        key = f"{prefix}.{name}"
        reads = node_inputs(node, previous)
        if not reads:
            add(f"{key}.in", "the first node must say which input it reads", f"inputs: {', '.join(sources)}")
        edges[name] = [r for r in reads if _ref(add, f"{key}.in", r, known, "tensor")]
        kinds = [k for k in ("type", "layer", "block", "_target_") if k in node]
        if len(kinds) != 1:
            add(key, "needs exactly one of `type` (a layer), `layer` (a shared layer), `block` or `_target_`", None)
        elif "layer" in node:
            _ref(add, f"{key}.layer", str(node["layer"]), list(shared), "shared layer")
            extra = sorted(set(node) - {"name", "in", "layer"})
            if extra:
                add(f"{key}.{extra[0]}", "a shared-layer node takes only name, in and layer", "set layer arguments in model.shared")
        elif "block" in node:
            block = str(node["block"])
            if _ref(add, f"{key}.block", block, list(blocks), "block"):
                params = list(blocks[block].get("params", {}))
                for arg in sorted(set(node) - {"name", "in", "block"}):
                    if arg not in params:
                        best = did_you_mean(arg, params)
                        hint = f"did you mean '{best}'?" if best else f"its params: {', '.join(params) or 'none'}"
                        add(f"{key}.{arg}", f"block '{block}' has no parameter '{arg}'", hint)
        else:
            check_layer(key, node, set(NODE_KEYS))
        previous = name
    _check_cycles(edges, prefix, add)
    return edges


def _check_cycles(edges: dict[str, list[str]], prefix: str, add: AddProblem) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2 or name not in edges:
            return
        if state.get(name) == 1:
            loop = [*path[path.index(name) :], name]
            add(f"{prefix}.{name}.in", f"cycle: {' -> '.join(reversed(loop))}", "a node cannot read its own output, directly or indirectly")
            return
        state[name] = 1
        for dep in edges[name]:
            visit(dep, [*path, name])
        state[name] = 2

    for name in edges:
        visit(name, [])


def topological_order(edges: dict[str, list[str]]) -> list[str]:
    """Node names so that every node comes after the nodes it reads (edges must be acyclic)."""
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in edges:
            return
        done.add(name)
        for dep in edges[name]:
            visit(dep)
        order.append(name)

    for name in edges:
        visit(name)
    return order


def check_graph(model: Any, check_layer: Callable[[str, dict[str, Any], set[str]], None], add: AddProblem) -> None:
    """Every reference resolves, no cycles, every input used, every output has a loss; layer kwargs via `check_layer`."""
    inputs = list(model.inputs or {})
    if not inputs:
        add("model.inputs", "a graph model needs at least one named input", "e.g. inputs: {features: {}}")
        return
    blocks = {name: block.model_dump() for name, block in model.blocks.items()}
    for name, spec in model.shared.items():
        if "layer" in spec or "block" in spec:
            add(f"model.shared.{name}", "a shared entry is one layer: `type` or `_target_`", None)
        else:
            check_layer(f"model.shared.{name}", spec, {"type", "_target_", "trainable"})
    for name, block in blocks.items():
        bkey = f"model.blocks.{name}"
        check_nodes(block["nodes"], [BLOCK_INPUT], prefix=f"{bkey}.nodes", shared=model.shared, blocks={}, check_layer=check_layer, add=add)
        params = set(block["params"])
        for i, node in enumerate(block["nodes"]):
            for missing in sorted(placeholders(node) - params):
                add(f"{bkey}.nodes.{node_name(node, i)}", f"uses ${missing} but the block has no parameter '{missing}'", "add it to params")
        out = block.get("output")
        if out is not None:
            _ref(add, f"{bkey}.output", out, [node_name(n, i) for i, n in enumerate(block["nodes"])], "node")

    edges = check_nodes(model.nodes, inputs, prefix="model.nodes", shared=model.shared, blocks=blocks, check_layer=check_layer, add=add)
    tensors = [*inputs, *edges]
    last = next(reversed(edges), inputs[0] if len(inputs) == 1 else None)
    used = {t for reads in edges.values() for t in reads}
    outputs = model.outputs or {}
    if not outputs:
        add("model.outputs", "a graph model needs at least one named output", None)
    for name, spec in outputs.items():
        key = f"model.outputs.{name}"
        if name in tensors:
            add(key, f"'{name}' is already an input or node name", "outputs need names of their own")
        for src in node_inputs(spec, last):
            if _ref(add, f"{key}.in", src, tensors, "tensor"):
                used.add(src)
        if "loss" not in spec:
            add(f"{key}.loss", "every output needs a loss", "e.g. loss: mse, or binary_crossentropy for a sigmoid")
        elif not isinstance(spec["loss"], str | dict):
            add(f"{key}.loss", f"must be a loss name or {{type: LossClass, ...}}, got {spec['loss']!r}", None)
        if "layer" in spec:
            _ref(add, f"{key}.layer", str(spec["layer"]), list(model.shared), "shared layer")
        elif "type" in spec or "_target_" in spec:
            check_layer(key, spec, set(OUTPUT_KEYS))
        weight = spec.get("loss_weight", 1.0)
        if not isinstance(weight, int | float) or weight < 0:
            add(f"{key}.loss_weight", f"must be a number >= 0, got {weight!r}", None)
    for name in inputs:
        if name not in used:
            add(f"model.inputs.{name}", "input is not used by any node or output", "read it from a node's `in`, or remove it")
