"""Build a graph model: named inputs, nodes (layers, shared layers, blocks), named outputs.

The config was checked by expkit.config.graph (references, cycles, kwargs) before TensorFlow was imported.
"""

from __future__ import annotations

from typing import Any

from expkit.config.graph import BLOCK_INPUT, NODE_KEYS, OUTPUT_KEYS, node_inputs, node_name, substitute, topological_order
from expkit.errors import ExpkitError
from expkit.models.builder import build_layer, call_layer, output_dtype, output_spec


class GraphBuilder:
    """Turns the graph part of a validated `model` config into Keras tensors, one node at a time."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.shared: dict[str, Any] = {}  # shared layers, created on first use: one instance, one set of weights
        self.blocks = {name: block.model_dump() for name, block in model.blocks.items()}

    def shared_layer(self, name: str) -> Any:
        if name not in self.shared:
            self.shared[name] = build_layer(self.model.shared[name], key=f"model.shared.{name}", name=name)
        return self.shared[name]

    def run_nodes(self, nodes: list[dict[str, Any]], tensors: dict[str, Any], *, prefix: str, scope: str) -> str:
        """Apply `nodes` (in dependency order) on `tensors`, adding each node's output; returns the last node's name."""
        names = [node_name(n, i) for i, n in enumerate(nodes)]
        by_name = dict(zip(names, nodes, strict=True))
        sources = list(tensors)
        edges, previous = {}, sources[0] if len(sources) == 1 else None
        for name, node in by_name.items():
            edges[name] = node_inputs(node, previous)
            previous = name
        for name in topological_order(edges):
            node, key = by_name[name], f"{prefix}.{name}"
            reads = [tensors[r] for r in edges[name]]
            x = reads[0] if len(reads) == 1 else reads
            layer_name = f"{scope}{name}"
            if "layer" in node:
                tensors[name] = call_layer(self.shared_layer(str(node["layer"])), x, key)
            elif "block" in node:
                args = {k: v for k, v in node.items() if k not in ("name", "in", "block")}
                tensors[name] = self.apply_block(str(node["block"]), args, x, key=key, scope=f"{layer_name}_")
            else:
                spec = {k: v for k, v in node.items() if k not in ("name", "in", "project")}
                if node.get("project") and isinstance(x, list):
                    x = project_to_first(x, f"{layer_name}_proj")
                tensors[name] = call_layer(build_layer(spec, key=key, name=layer_name), x, key)
        return names[-1]

    def apply_block(self, block: str, args: dict[str, Any], x: Any, *, key: str, scope: str) -> Any:
        """A fresh instance of `block` (its own weights) on `x`, with its params set from `args`."""
        definition = self.blocks[block]
        params = {**definition["params"], **args}
        nodes = [substitute(n, params) for n in definition["nodes"]]
        tensors = {BLOCK_INPUT: x}
        last = self.run_nodes(nodes, tensors, prefix=f"{key} (block {block}) nodes", scope=scope)
        return tensors[definition.get("output") or last]

    def build(self, input_specs: dict[str, tuple[tuple[int, ...], str]], name: str) -> Any:
        """The keras.Model with dict inputs and dict outputs keyed by the config's names."""
        import keras

        inputs = {n: keras.Input(shape=shape, dtype=dtype, name=n) for n, (shape, dtype) in input_specs.items()}
        return self.build_on(inputs, inputs, name)

    def build_on(self, tensors_in: dict[str, Any], inputs: dict[str, Any], name: str) -> Any:
        """The keras.Model whose graph inputs read `tensors_in` (e.g. encoded table features), with model inputs `inputs`."""
        import keras

        tensors: dict[str, Any] = dict(tensors_in)
        last = self.run_nodes(self.model.nodes, tensors, prefix="model.nodes", scope="") if self.model.nodes else None
        outputs = {}
        for out, spec in (self.model.outputs or {}).items():
            key = f"model.outputs.{out}"
            reads = [tensors[r] for r in node_inputs(spec, last or next(iter(inputs)))]
            x = reads[0] if len(reads) == 1 else reads
            layer_spec = {k: v for k, v in spec.items() if k not in OUTPUT_KEYS or k in ("type", "_target_", "trainable")}
            if "layer" in spec:
                x = call_layer(self.shared_layer(str(spec["layer"])), x, key)
                layer = keras.layers.Identity(name=out, dtype=output_dtype())
            elif "type" in spec or "_target_" in spec:
                layer = build_layer(output_spec(layer_spec), key=key, name=out)
            else:
                layer = keras.layers.Identity(name=out, dtype=output_dtype())
            outputs[out] = call_layer(layer, x, key)
        return keras.Model(inputs=inputs, outputs=outputs, name=name)


def project_to_first(tensors: list[Any], name: str) -> list[Any]:
    """Give every tensor the first one's shape with a strided 1x1 convolution (the residual shortcut), where they differ."""
    import keras

    first = tuple(tensors[0].shape)
    out = [tensors[0]]
    for i, t in enumerate(tensors[1:], start=1):
        shape = tuple(t.shape)
        if shape == first:
            out.append(t)
            continue
        rank = len(shape) - 2
        if rank not in (1, 2) or len(first) != len(shape):
            raise ExpkitError(f"cannot project shape {shape} to {first}: only 1-D and 2-D feature maps", key=name)
        strides = tuple(max(1, (s or 1) // (f or 1)) for s, f in zip(shape[1:-1], first[1:-1], strict=True))
        conv = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
        out.append(conv(first[-1], 1, strides=strides, padding="same", name=f"{name}{i}")(t))
    return out


def build_graph_model(model: Any, input_specs: dict[str, tuple[tuple[int, ...], str]], *, name: str = "model") -> Any:
    """The keras.Model for a graph `model` config, with inputs of the given (shape, dtype)."""
    return GraphBuilder(model).build(input_specs, name)


__all__ = ["NODE_KEYS", "GraphBuilder", "build_graph_model"]
