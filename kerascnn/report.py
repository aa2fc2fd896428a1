"""``describe(model)``: per-layer output size, parameters, MACs and receptive field.

Everything is computed from the layer configs with the formulas in
:mod:`kerascnn.arithmetic`, not read back from Keras, so the report shows the
arithmetic; the test suite checks it against Keras' own shapes and counts.
Layers of a type this module does not know are reported with Keras' output
shape and ``count_params()``, 0 MACs and an unchanged receptive field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import keras

from kerascnn import arithmetic


@dataclass
class LayerInfo:
    """One row of the report. ``receptive_field``/``jump`` are per axis when they differ."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: int | tuple[int, int]
    jump: int | tuple[int, int]
    trainable_params: int = field(default=0, repr=False)


@dataclass
class Description:
    """The report for a whole model; ``str()`` gives an aligned table."""

    model: str
    layers: list[LayerInfo]

    @property
    def params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(row.trainable_params for row in self.layers)

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"model", "params", "trainable_params", "macs", "layers"}``."""
        rows = []
        for row in self.layers:
            item = asdict(row)
            item.pop("trainable_params")
            for key in ("output_shape", "receptive_field", "jump"):
                if isinstance(item[key], tuple):
                    item[key] = list(item[key])
            rows.append(item)
        return {
            "model": self.model,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "layers": rows,
        }

    def to_table(self) -> str:
        """An aligned, human-readable table with totals."""
        header = ("Layer (type)", "Output shape", "Params", "MACs", "RF", "Jump")
        body = [
            (
                f"{r.name} ({r.type})",
                "x".join(str(d) for d in r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                _axis_str(r.receptive_field),
                _axis_str(r.jump),
            )
            for r in self.layers
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        left = {0, 1}

        def fmt(row: tuple[str, ...]) -> str:
            cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(fmt(header))
        lines = [f'Model: "{self.model}"', rule, fmt(header), rule, *map(fmt, body), rule]
        lines.append(
            f"Total params: {self.params:,}  Trainable: {self.trainable_params:,}  "
            f"Non-trainable: {self.params - self.trainable_params:,}  MACs: {self.macs:,}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def _axis_str(value: int | tuple[int, int]) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _squash(value: tuple[int, int]) -> int | tuple[int, int]:
    return value[0] if value[0] == value[1] else value


@dataclass
class _State:
    """What flows along an edge: output shape, receptive field and jump per axis."""

    shape: tuple[int, ...]
    rf: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)


def _window(state: _State, kernel: tuple[int, int], strides: tuple[int, int], padding: Any,
            dilation: tuple[int, int] = (1, 1)) -> tuple[tuple[int, int], _State]:
    """Spatial size, RF and jump after a 2-D window; returns ((H, W), state without channels)."""
    h, w = state.shape[0], state.shape[1]
    out = (
        arithmetic.conv_output_size(h, kernel[0], strides[0], padding, dilation[0]),
        arithmetic.conv_output_size(w, kernel[1], strides[1], padding, dilation[1]),
    )
    rf_h, j_h = arithmetic.receptive_field(state.rf[0], state.jump[0], kernel[0], strides[0], dilation[0])
    rf_w, j_w = arithmetic.receptive_field(state.rf[1], state.jump[1], kernel[1], strides[1], dilation[1])
    return out, _State(shape=(), rf=(rf_h, rf_w), jump=(j_h, j_w))


def _layer_info(layer: keras.layers.Layer, inputs: list[_State]) -> tuple[_State, int, int, int]:
    """Returns (output state, params, trainable params, MACs) for one layer."""
    cfg = layer.get_config()
    kind = type(layer).__name__
    src = inputs[0] if inputs else None
    params = macs = 0

    if kind == "InputLayer":
        out = _State(shape=tuple(int(d) for d in cfg["batch_shape"][1:]))
    elif kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
        (h, w), out = _window(src, k, s, cfg["padding"], d)
        c_in = src.shape[-1]
        bias = int(cfg["use_bias"])
        if kind == "Conv2D":
            groups = cfg.get("groups", 1)
            c_out = cfg["filters"]
            per_pixel = k[0] * k[1] * c_in // groups * c_out
            params = per_pixel + bias * c_out
        elif kind == "DepthwiseConv2D":
            c_out = c_in * cfg["depth_multiplier"]
            per_pixel = k[0] * k[1] * c_out
            params = per_pixel + bias * c_out
        else:  # SeparableConv2D: depthwise then 1x1 pointwise
            mid = c_in * cfg["depth_multiplier"]
            c_out = cfg["filters"]
            per_pixel = k[0] * k[1] * mid + mid * c_out
            params = per_pixel + bias * c_out
        macs = h * w * per_pixel
        out.shape = (h, w, c_out)
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        k = _pair(cfg["pool_size"])
        s = _pair(cfg["strides"] if cfg["strides"] is not None else cfg["pool_size"])
        (h, w), out = _window(src, k, s, cfg["padding"])
        out.shape = (h, w, src.shape[-1])
    elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        (_, _), out = _window(src, (src.shape[0], src.shape[1]), (1, 1), "valid")
        out.shape = (1, 1, src.shape[-1]) if cfg.get("keepdims") else (src.shape[-1],)
    elif kind == "ZeroPadding2D":
        (top, bottom), (left, right) = cfg["padding"]
        out = _State((src.shape[0] + top + bottom, src.shape[1] + left + right, src.shape[2]), src.rf, src.jump)
    elif kind == "Flatten":
        out = _State((math.prod(src.shape),), src.rf, src.jump)
    elif kind == "Dense":
        units = cfg["units"]
        leading = math.prod(src.shape[:-1])
        params = src.shape[-1] * units + int(cfg["use_bias"]) * units
        macs = leading * src.shape[-1] * units
        out = _State((*src.shape[:-1], units), src.rf, src.jump)
    elif kind == "BatchNormalization":
        channels = src.shape[cfg["axis"] if isinstance(cfg["axis"], int) else cfg["axis"][0]]
        learned = (int(cfg["center"]) + int(cfg["scale"])) * channels
        params = learned + 2 * channels  # + moving mean and variance (not trainable)
        out = _State(src.shape, src.rf, src.jump)
        trainable = learned if layer.trainable else 0
        return out, params, trainable, macs
    elif kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"):
        shape = src.shape
        if kind == "Concatenate":
            shape = (*src.shape[:-1], sum(i.shape[-1] for i in inputs))
        rf = (max(i.rf[0] for i in inputs), max(i.rf[1] for i in inputs))
        jump = (max(i.jump[0] for i in inputs), max(i.jump[1] for i in inputs))
        out = _State(shape, rf, jump)
    elif kind in ("Dropout", "SpatialDropout2D", "Activation", "ReLU", "Softmax", "LeakyReLU",
                  "ELU", "PReLU", "Rescaling", "GaussianNoise", "LayerNormalization", "Identity"):
        out = _State(src.shape, src.rf, src.jump)
        params = layer.count_params()
    else:  # unknown layer: trust Keras for the shape and the weights
        out = _State(tuple(int(d) for d in layer.output.shape[1:]),
                     src.rf if src else (1, 1), src.jump if src else (1, 1))
        params = layer.count_params()
    trainable = params if layer.trainable else 0
    return out, params, trainable, macs


def _graph(model: keras.Model) -> list[tuple[keras.layers.Layer, list[str]]]:
    """Layers in topological order with the names of the layers feeding each."""
    if isinstance(model, keras.Sequential):
        model = model._functional if getattr(model, "_functional", None) else model
    by_depth = getattr(model, "_nodes_by_depth", None)
    if not by_depth:
        raise ValueError(f"`model` must be a built Sequential or functional Keras model. Received: model={model!r}")
    order = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            order.append((node.operation, [p.operation.name for p in node.parent_nodes]))
    return order


def describe(model: keras.Model) -> Description:
    """Per-layer output shape, parameters, MACs, receptive field and jump.

    MACs count the multiply-accumulates of convolution and dense layers for
    one image (biases and activations not counted).

    Args:
        model: A built ``keras.Sequential`` or functional model.

    Returns:
        A :class:`Description`; ``print()`` it for a table, ``.to_dict()`` for JSON.

    Example:
        >>> from kerascnn import create_model, describe
        >>> describe(create_model("mnist_cnn")).params
        93322
    """
    states: dict[str, _State] = {}
    rows = []
    for layer, parents in _graph(model):
        out, params, trainable, macs = _layer_info(layer, [states[p] for p in parents])
        states[layer.name] = out
        rows.append(
            LayerInfo(
                name=layer.name,
                type=type(layer).__name__,
                output_shape=out.shape,
                params=params,
                macs=macs,
                receptive_field=_squash(out.rf),
                jump=_squash(out.jump),
                trainable_params=trainable,
            )
        )
    return Description(model=model.name, layers=rows)
