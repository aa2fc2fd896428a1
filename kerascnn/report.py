"""``describe(model)``: per-layer output size, parameters, MACs and receptive field.

Everything is computed from the layer configs with the formulas in
:mod:`kerascnn.arithmetic`, not read back from Keras, so the report shows the
arithmetic; the test suite checks it against Keras' own shapes and counts, for
the kit's models and every model in ``keras.applications``.

Known layers: convolutions (1-D, 2-D, 3-D; grouped, depthwise, separable,
transposed), pooling and global pooling, zero padding, cropping, up-sampling,
Flatten, Reshape, Dense, normalisation, activation, dropout and merge layers,
and nested Sequential/functional models (their layers are listed as
``outer/inner``).

**Receptive field rule.** ``RF`` is the size, in input pixels, of the input
region a unit of the layer can depend on, and ``Jump`` the input distance
between adjacent units (a fraction after up-sampling). Layers that remove the
spatial axes — global pooling and ``Flatten`` — widen it to the region of the
whole input map, ``r + (n - 1) * j`` per axis: every unit after them may depend
on every position (a ``Dense`` after ``Flatten`` does). ``Dense`` itself, like
any layer acting on each position separately, leaves it unchanged. So the
classifier of a CNN reports the receptive field of the whole network; it can
exceed the input size (the theoretical receptive field is not clipped).

**Not counted.** A layer whose type this module does not know (a custom layer,
``Resizing``, ...) is reported with Keras' output shape and ``count_params()``
and marked ``counted=False`` (``?`` in the table): its MACs are left out of the
total and the receptive field passes through it unchanged. Layers whose spatial
size is unknown (a model built for any input size) are marked the same way. A
field carried through such a layer, or widened over unknown sizes, is a guess:
it keeps its ``?`` (``receptive_field_known=False``) in every row after it; a field that does not depend
on the unknown (a convolution's, whatever the size) has none. The total MACs are then a lower bound
(``at least`` in the table, ``macs_complete=False`` in JSON).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from kerascnn import arithmetic
from kerascnn.errors import ArgumentError
from kerascnn.models._layers import keras

Axes = tuple[int, ...]


@dataclass
class LayerInfo:
    """One row of the report. ``receptive_field``/``jump`` are per spatial axis when they differ.

    ``counted`` is False for a layer the report cannot reason about (unknown type, or unknown spatial
    size): its MACs are not in the total and its receptive field is carried through unchanged.
    """

    name: str
    type: str
    output_shape: tuple[int | None, ...]
    params: int
    macs: int
    receptive_field: int | tuple[int, ...]
    jump: int | float | tuple[int | float, ...]
    trainable_params: int = field(default=0, repr=False)
    counted: bool = True
    note: str = field(default="", repr=False)
    call: int = 1  # a shared layer's later calls: their MACs count again, their parameters (0 here) do not
    receptive_field_known: bool = True  # False after a layer that could only carry the field through


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
        """MACs of the counted layers (see :attr:`not_counted`)."""
        return sum(row.macs for row in self.layers)

    @property
    def not_counted(self) -> list[LayerInfo]:
        """The rows marked ``counted=False``."""
        return [row for row in self.layers if not row.counted]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"model", "params", "trainable_params", "macs", "macs_complete", "layers"}``
        (``macs_complete`` is false when a layer is not counted: ``macs`` is then a lower bound).

        Each layer has ``name, type, output_shape, params, macs, receptive_field, jump, counted, call,
        receptive_field_known``.
        """
        rows = []
        for row in self.layers:
            item = asdict(row)
            item.pop("trainable_params")
            item.pop("note")
            for key in ("output_shape", "receptive_field", "jump"):
                if isinstance(item[key], tuple):
                    item[key] = list(item[key])
            rows.append(item)
        return {
            "model": self.model,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "macs_complete": not self.not_counted,
            "layers": rows,
        }

    def to_table(self) -> str:
        """An aligned, human-readable table with totals."""
        header = ("Layer (type)", "Output shape", "Params", "MACs", "RF", "Jump")
        body = [
            (
                f"{r.name} ({r.type})" + (f" call {r.call}" if r.call > 1 else ""),
                "x".join("?" if d is None else str(d) for d in r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}" if r.counted else "?",
                _axis_str(r.receptive_field) + ("" if r.receptive_field_known else "?"),
                _axis_str(r.jump) + ("" if r.receptive_field_known else "?"),
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
        missing = self.not_counted
        macs = f"at least {self.macs:,}" if missing else f"{self.macs:,}"
        lines.append(
            f"Total params: {self.params:,}  Trainable: {self.trainable_params:,}  "
            f"Non-trainable: {self.params - self.trainable_params:,}  MACs: {macs}"
        )
        if missing:
            reasons: dict[str, list[str]] = {}
            for row in missing:
                reasons.setdefault(row.note, []).append(row.type)
            parts = [
                f"{note} ({', '.join(sorted(set(types)))}): "
                + (
                    "MACs unknown; receptive fields from global pooling or Flatten on are unknown too"
                    if note == _SIZE_UNKNOWN
                    else "MACs left out, receptive field carried through unchanged"
                )
                for note, types in reasons.items()
            ]
            layers = len({row.name for row in missing})  # (a shared layer's calls are one layer)
            lines.append(f"? not counted: {layers} layer{'s' if layers > 1 else ''}; {'; '.join(parts)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()

    def __repr__(self) -> str:  # (``print()`` or a notebook's display gives the table)
        return f"Description(model={self.model!r}, layers={len(self.layers)}, params={self.params}, macs={self.macs})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_table())


def _axis_value(value: Any) -> int | float:
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def _axis_str(value: Any) -> str:
    def one(v: Any) -> str:
        return str(Fraction(v).limit_denominator(1 << 20)) if isinstance(v, float) else str(v)

    return "x".join(map(one, value)) if isinstance(value, tuple) else one(value)


def _squash(value: tuple) -> Any:
    values = tuple(_axis_value(v) for v in value)
    return values[0] if len(set(values)) == 1 else values


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
    return (int(value),) * rank if isinstance(value, int) else tuple(int(v) for v in value)


@dataclass
class _State:
    """What flows along an edge: shape (no batch), RF and jump per spatial axis, whether axes are spatial."""

    shape: tuple[int | None, ...]
    rf: Axes = (1,)
    jump: tuple[Fraction, ...] = (Fraction(1),)
    spatial: bool = False
    exact: bool = True  # RF and jump known (not after a layer that carried them through as a guess)


_SIZE_UNKNOWN = "spatial size unknown"


class _NotCounted(Exception):
    """A layer the report cannot compute; the message says why."""


def _split(state: _State, data_format: str, rank: int) -> tuple[tuple[int | None, ...], int | None]:
    """Spatial sizes and channels of a rank-``rank`` feature map."""
    shape = state.shape
    if len(shape) != rank + 1:
        raise _NotCounted("unexpected input rank")
    if data_format == "channels_first":
        return shape[1:], shape[0]
    return shape[:-1], shape[-1]


def _join(spatial: tuple[int | None, ...], channels: int | None, data_format: str) -> tuple[int | None, ...]:
    return (channels, *spatial) if data_format == "channels_first" else (*spatial, channels)


def _rf_axes(state: _State, rank: int) -> tuple[Axes, tuple[Fraction, ...]]:
    if len(state.rf) == rank:
        return state.rf, state.jump
    return (max(state.rf),) * rank, (max(state.jump),) * rank


def _sizes(sizes: tuple[int | None, ...]) -> tuple[int, ...] | None:
    """``sizes`` when every one is known, else ``None``."""
    return None if None in sizes else tuple(s for s in sizes if s is not None)


# Layer families (class name -> spatial rank) ----------------------------------------------------

_RANK = {"1D": 1, "2D": 2, "3D": 3}


def _rank(kind: str) -> int:
    for suffix, rank in _RANK.items():
        if suffix in kind:
            return rank
    return 2


_CONVS = (
    {f"Conv{r}" for r in _RANK}
    | {f"DepthwiseConv{r}" for r in ("1D", "2D")}
    | {f"SeparableConv{r}" for r in ("1D", "2D")}
)
_TRANSPOSED = {f"Conv{r}Transpose" for r in _RANK}
_POOLS = {f"{kind}Pooling{r}" for kind in ("Max", "Average") for r in _RANK}
_GLOBAL_POOLS = {f"Global{kind}Pooling{r}" for kind in ("Max", "Average") for r in _RANK}
_PADDINGS = {f"ZeroPadding{r}" for r in _RANK}
_CROPPINGS = {f"Cropping{r}" for r in _RANK}
_UPSAMPLINGS = {f"UpSampling{r}" for r in _RANK}
_INTERPOLATION_TAPS = {"nearest": 1, "area": 1, "bilinear": 2, "bicubic": 4, "lanczos3": 6, "lanczos5": 10}
_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_ELEMENTWISE = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "ActivityRegularization",
    "Activation",
    "ReLU",
    "Softmax",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "Rescaling",
    "Normalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
    "Identity",
    "Masking",
}
# keras.ops operations that can appear in a functional graph (ConvNeXt's residual add, MobileNetV3's hard
# sigmoid): element-wise, with NumPy broadcasting
_ELEMENTWISE_OPS = {
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "TrueDivide",
    "Maximum",
    "Minimum",
    "Power",
    "Negative",
    "Abs",
    "Square",
    "Sqrt",
    "Exp",
    "Log",
    "Relu",
    "Relu6",
    "Sigmoid",
    "HardSigmoid",
    "HardSilu",
    "Silu",
    "Gelu",
    "Tanh",
    "Softplus",
    "Elu",
    "Selu",
    "LeakyRelu",
}
# keras.applications' own layers: ConvNeXt's per-channel LayerScale and drop-path, InceptionResNetV2's
# x0 + scale * x1
_APPLICATION_LAYERS = {
    "LayerScale": "elementwise",
    "StochasticDepth": "elementwise",
    "CustomScaleLayer": "merge",
}


def _conv(kind: str, cfg: dict, src: _State) -> tuple[_State, int, int]:
    rank = _rank(kind)
    fmt = cfg.get("data_format", "channels_last")
    spatial, c_in = _split(src, fmt, rank)
    k, s, d = (
        _tuple(cfg["kernel_size"], rank),
        _tuple(cfg["strides"], rank),
        _tuple(cfg["dilation_rate"], rank),
    )
    if c_in is None:
        raise _NotCounted("input channels unknown")
    rf, jump = _rf_axes(src, rank)
    kernel_volume = math.prod(k)
    bias = int(cfg["use_bias"])
    transposed = kind in _TRANSPOSED
    fields: list[tuple[int, Fraction | int]]
    if transposed:
        op = cfg.get("output_padding")
        ops_ = (None,) * rank if op is None else _tuple(op, rank)
        out = tuple(
            None if n is None else arithmetic.conv_transpose_output_size(n, k[i], s[i], cfg["padding"], ops_[i], d[i])
            for i, n in enumerate(spatial)
        )
        fields = [arithmetic.transposed_receptive_field(rf[i], jump[i], k[i], s[i], d[i]) for i in range(rank)]
    else:
        out = tuple(
            None if n is None else arithmetic.conv_output_size(n, k[i], s[i], cfg["padding"], d[i])
            for i, n in enumerate(spatial)
        )
        fields = [arithmetic.receptive_field(rf[i], jump[i], k[i], s[i], d[i]) for i in range(rank)]
    if kind.startswith("DepthwiseConv"):
        c_out = c_in * cfg["depth_multiplier"]
        per_pixel = kernel_volume * c_out
    elif kind.startswith("SeparableConv"):
        mid = c_in * cfg["depth_multiplier"]
        c_out = cfg["filters"]
        per_pixel = kernel_volume * mid + mid * c_out
    else:
        c_out = cfg["filters"]
        per_pixel = kernel_volume * c_in // cfg.get("groups", 1) * c_out
    params = per_pixel + bias * c_out
    state = _State(_join(out, c_out, fmt), tuple(f[0] for f in fields), tuple(Fraction(f[1]) for f in fields), True)
    positions = _sizes(spatial if transposed else out)  # a transposed conv spends k*C_in*C_out per *input* pixel
    if positions is None:
        raise _Partial(state, params, _SIZE_UNKNOWN)
    return state, params, math.prod(positions) * per_pixel


class _Partial(Exception):
    """Shape and parameters known, MACs or receptive field not (carries what is known)."""

    def __init__(self, state: _State, params: int, note: str):
        super().__init__(note)
        self.state, self.params, self.note = state, params, note


def _pool(kind: str, cfg: dict, src: _State) -> _State:
    rank = _rank(kind)
    fmt = cfg.get("data_format", "channels_last")
    spatial, channels = _split(src, fmt, rank)
    k = _tuple(cfg["pool_size"], rank)
    s = _tuple(cfg["strides"] if cfg["strides"] is not None else cfg["pool_size"], rank)
    rf, jump = _rf_axes(src, rank)
    out = tuple(
        None if n is None else arithmetic.conv_output_size(n, k[i], s[i], cfg["padding"]) for i, n in enumerate(spatial)
    )
    fields = [arithmetic.receptive_field(rf[i], jump[i], k[i], s[i]) for i in range(rank)]
    return _State(_join(out, channels, fmt), tuple(f[0] for f in fields), tuple(Fraction(f[1]) for f in fields), True)


def _collapse(src: _State, spatial: tuple[int | None, ...], shape: tuple[int | None, ...]) -> _State:
    """Global pooling / Flatten: every output may depend on every position (see the module docstring)."""
    rf, jump = _rf_axes(src, len(spatial))
    state = _State(shape, rf, jump, False)
    sizes = _sizes(spatial)
    if sizes is None:  # (the widening needs the sizes)
        state.exact = False
        raise _Partial(state, 0, _SIZE_UNKNOWN)
    state.rf = tuple(math.ceil(r + (n - 1) * j) for r, n, j in zip(rf, sizes, jump))
    return state


def _pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    if isinstance(value, int):
        return [(value, value)] * rank
    if rank == 1:
        value = [value] if isinstance(value[0], int) and len(value) == 2 else value
    return [(v, v) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in value]


def _resize(kind: str, cfg: dict, src: _State, sign: int) -> _State:
    rank = _rank(kind)
    fmt = cfg.get("data_format", "channels_last")
    spatial, channels = _split(src, fmt, rank)
    amounts = _pairs(cfg["padding" if sign > 0 else "cropping"], rank)
    out = tuple(None if n is None else n + sign * (a + b) for n, (a, b) in zip(spatial, amounts))
    return _State(_join(out, channels, fmt), src.rf, src.jump, src.spatial)


def _upsample(kind: str, cfg: dict, src: _State) -> _State:
    rank = _rank(kind)
    fmt = cfg.get("data_format", "channels_last")
    spatial, channels = _split(src, fmt, rank)
    size = _tuple(cfg["size"] if "size" in cfg else cfg["length"], rank)
    taps = _INTERPOLATION_TAPS.get(cfg.get("interpolation", "nearest"))
    out = tuple(None if n is None else n * f for n, f in zip(spatial, size))
    state = _State(_join(out, channels, fmt), src.rf, src.jump, True)
    if taps is None:
        raise _Partial(state, 0, "unknown interpolation")
    rf, jump = _rf_axes(src, rank)
    # ``taps`` input pixels per output: like a transposed conv with kernel taps * factor
    fields = [arithmetic.transposed_receptive_field(rf[i], jump[i], taps * size[i], size[i]) for i in range(rank)]
    state.rf, state.jump = tuple(f[0] for f in fields), tuple(f[1] for f in fields)
    return state


def _broadcast(shapes: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        out.append(1 if not sizes else (None if None in sizes else max(sizes)))
    return tuple(out)


def _merge_fields(inputs: list[_State]) -> tuple[Axes, tuple[Fraction, ...]]:
    rank = max(len(i.rf) for i in inputs)
    fields = [_rf_axes(i, rank) for i in inputs]
    return (
        tuple(max(f[0][a] for f in fields) for a in range(rank)),
        tuple(max(f[1][a] for f in fields) for a in range(rank)),
    )


def _layer_info(layer: Any, inputs: list[_State], keras_shape: tuple[int | None, ...]) -> tuple[_State, int, int, str]:
    """Returns (output state, params, MACs, note) for one layer; ``note`` is empty if counted. The
    state is ``exact`` only if its inputs were and the layer's own rule held (an unknown layer's
    carried-through field, or a widening over unknown sizes, is a guess from there on)."""
    state, params, macs, note = _computed(layer, inputs, keras_shape)
    exact = state.exact and all(i.exact for i in inputs) and note in ("", _SIZE_UNKNOWN)
    return dataclasses.replace(state, exact=exact), params, macs, note


def _computed(layer: Any, inputs: list[_State], keras_shape: tuple[int | None, ...]) -> tuple[_State, int, int, str]:
    kind = type(layer).__name__
    try:
        if not isinstance(layer, keras.layers.Layer):  # a bare ``keras.ops`` operation in a functional graph
            if kind not in _ELEMENTWISE_OPS or not inputs:
                raise _Unknown(kind)
            rf, jump = _merge_fields(inputs)
            shape = _broadcast([i.shape for i in inputs])
            return _State(shape, rf, jump, any(i.spatial for i in inputs)), 0, 0, ""
        if kind in _APPLICATION_LAYERS and type(layer).__module__.startswith("keras."):
            kind = {"elementwise": "Identity", "merge": "Add"}[_APPLICATION_LAYERS[kind]]
            state, _, _ = _known_layer(kind, {}, layer, inputs, inputs[0])
            return state, _count_params(layer), 0, ""
        state, params, macs = _known_layer(kind, layer.get_config(), layer, inputs, inputs[0] if inputs else None)
        return state, params, macs, ""
    except _Partial as p:
        return p.state, p.params, 0, p.note
    except _Unknown:
        note = "unknown layer type"
    except _NotCounted as e:
        note = str(e)
    except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError) as e:
        note = f"config not understood ({type(e).__name__})"
    if inputs:  # Keras' shape and parameters; the receptive field passes through unchanged
        rf, jump = _merge_fields(inputs)
        spatial = any(i.spatial for i in inputs) and len(keras_shape) > 1
    else:
        rf, jump, spatial = (1,), (Fraction(1),), len(keras_shape) > 1
    return _State(keras_shape, rf, jump, spatial), _count_params(layer), 0, note


class _Unknown(_NotCounted):
    """A layer type the report does not know."""


def _count_params(layer: Any) -> int:
    return int(layer.count_params()) if hasattr(layer, "count_params") and getattr(layer, "built", True) else 0


def _global_pool(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    rank = _rank(kind)
    fmt = cfg.get("data_format", "channels_last")
    spatial, channels = _split(src, fmt, rank)
    shape = _join((1,) * rank, channels, fmt) if cfg.get("keepdims") else (channels,)
    state = _collapse(src, spatial, shape)
    state.spatial = bool(cfg.get("keepdims"))
    return state, 0, 0


def _flatten(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    known = _sizes(src.shape)
    flat = None if known is None else math.prod(known)
    if not src.spatial:
        return _State((flat,), src.rf, src.jump, False), 0, 0
    fmt = cfg.get("data_format") or "channels_last"
    spatial, _ = _split(src, fmt, len(src.shape) - 1)
    return _collapse(src, spatial, (flat,)), 0, 0


def _reshape(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    target: list[int | None] = list(cfg["target_shape"])
    if -1 in target:
        known, total = math.prod(d for d in target if d is not None and d != -1), _sizes(src.shape)
        target[target.index(-1)] = None if total is None else math.prod(total) // known
    rank = max(len(target) - 1, 1)
    rf, jump = _rf_axes(src, rank)
    return _State(tuple(target), rf, jump, src.spatial and len(target) > 1), 0, 0


def _dense(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    units, c_in = cfg["units"], src.shape[-1]
    if c_in is None:
        raise _NotCounted("input features unknown")
    params = c_in * units + int(cfg["use_bias"]) * units
    state = _State((*src.shape[:-1], units), src.rf, src.jump, src.spatial)
    positions = _sizes(src.shape[:-1])
    if positions is None:
        raise _Partial(state, params, _SIZE_UNKNOWN)
    return state, params, math.prod(positions) * c_in * units


def _batch_norm(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    axis = cfg["axis"] if isinstance(cfg["axis"], int) else cfg["axis"][0]
    channels = src.shape[axis - 1 if axis > 0 else axis]  # ``axis`` counts the batch axis
    if channels is None:
        raise _NotCounted("channels unknown")
    params = (int(cfg["center"]) + int(cfg["scale"])) * channels + 2 * channels  # + moving mean, variance
    return _State(src.shape, src.rf, src.jump, src.spatial), params, 0


def _merge(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    rf, jump = _merge_fields(inputs)
    return _State(_broadcast([i.shape for i in inputs]), rf, jump, any(i.spatial for i in inputs)), 0, 0


def _concatenate(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    axis = cfg.get("axis", -1)
    axis = axis - 1 if axis > 0 else axis
    shape = list(src.shape)
    sizes = [i.shape[axis] for i in inputs]
    shape[axis] = None if None in sizes else sum(s for s in sizes if s is not None)
    rf, jump = _merge_fields(inputs)
    return _State(tuple(shape), rf, jump, src.spatial), 0, 0


def _elementwise(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    return _State(src.shape, src.rf, src.jump, src.spatial), _count_params(layer), 0


def _window_layer(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State) -> tuple[_State, int, int]:
    if kind in _CONVS or kind in _TRANSPOSED:
        return _conv(kind, cfg, src)
    if kind in _POOLS:
        return _pool(kind, cfg, src), 0, 0
    if kind in _UPSAMPLINGS:
        return _upsample(kind, cfg, src), 0, 0
    return _resize(kind, cfg, src, +1 if kind in _PADDINGS else -1), 0, 0


Rule = Callable[[str, dict, Any, list[_State], _State], tuple[_State, int, int]]
_RULES: list[tuple[set[str], Rule]] = [
    (_CONVS | _TRANSPOSED | _POOLS | _UPSAMPLINGS | _PADDINGS | _CROPPINGS, _window_layer),
    (_GLOBAL_POOLS, _global_pool),
    ({"Flatten"}, _flatten),
    ({"Reshape"}, _reshape),
    ({"Dense"}, _dense),
    ({"BatchNormalization"}, _batch_norm),
    (_MERGES, _merge),
    ({"Concatenate"}, _concatenate),
    (_ELEMENTWISE, _elementwise),
]


def _known_layer(kind: str, cfg: dict, layer: Any, inputs: list[_State], src: _State | None) -> tuple[_State, int, int]:
    """(output state, params, MACs) of a layer type the report knows; ``_Unknown`` for others."""
    if kind == "InputLayer":
        shape = tuple(cfg["batch_shape"][1:])
        rank = max(len(shape) - 1, 1)
        return _State(shape, (1,) * rank, (Fraction(1),) * rank, len(shape) > 1), 0, 0
    for kinds, rule in _RULES:
        if kind in kinds:
            if src is None:
                raise _NotCounted("no input")
            return rule(kind, cfg, layer, inputs, src)
    raise _Unknown(kind)


def _graph(model: Any) -> tuple[Any, list[Any]]:
    """The functional graph of ``model`` and its nodes in topological order."""
    fn = model
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
    by_depth = getattr(fn, "_nodes_by_depth", None) if fn is not None else None
    if not by_depth:
        raise ArgumentError(f"`model` must be a built Sequential or functional Keras model. Received: model={model!r}")
    return fn, [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape[1:])


def _walk(model: Any, states: dict[int, _State], rows: list[LayerInfo], prefix: str, calls: dict[int, int]) -> None:
    """Appends a row per layer call of ``model``; ``calls`` counts each layer's calls so far (a
    shared layer's parameters are counted at its first call only, as ``count_params()`` does)."""
    _, nodes = _graph(model)
    for node in nodes:
        op = node.operation
        if prefix and type(op).__name__ == "InputLayer" and all(id(t) in states for t in node.output_tensors):
            continue  # a nested model's input: its state is the outer tensor's
        inputs = [states[id(t)] for t in node.input_tensors if id(t) in states]
        if isinstance(op, keras.Model) and _nested_graph(op):
            inner, _ = _graph(op)
            for outer_t, inner_t in zip(node.input_tensors, inner.inputs):
                states[id(inner_t)] = states[id(outer_t)]
            _walk(op, states, rows, f"{prefix}{op.name}/", calls)
            for outer_t, inner_t in zip(node.output_tensors, inner.outputs):
                states[id(outer_t)] = states[id(inner_t)]
            continue
        out = node.output_tensors[0]
        state, params, macs, note = _layer_info(op, inputs, _shape(out))
        for t in node.output_tensors:
            states[id(t)] = state
        calls[id(op)] = call = calls.get(id(op), 0) + 1
        trainable = sum(math.prod(w.shape) for w in getattr(op, "trainable_weights", [])) if call == 1 else 0
        params = params if call == 1 else 0
        rows.append(
            LayerInfo(
                name=prefix + op.name,
                type=type(op).__name__,
                output_shape=state.shape,
                params=params,
                macs=macs,
                receptive_field=_squash(state.rf),
                jump=_squash(state.jump),
                trainable_params=int(trainable),
                counted=not note,
                note=note,
                call=call,
                receptive_field_known=state.exact,
            )
        )


def _nested_graph(model: Any) -> bool:
    try:
        _graph(model)
    except ValueError:
        return False
    return True


def describe(model: keras.Model | str, **options: Any) -> Description:
    """Per-layer output shape, parameters, MACs, receptive field and jump.

    MACs count the multiply-accumulates of convolution and dense layers for
    one image (biases, activations, normalisation and pooling not counted).
    The receptive field rule and the ``counted`` mark are explained in the
    module docstring.

    Args:
        model: A built ``keras.Sequential`` or functional model (any
            ``keras.applications`` model, nested models included), or a
            registered model's name (built by ``create_model``).
        **options: With a name: ``create_model``'s options (``input_shape``,
            ``num_classes``, builder options).

    Returns:
        A :class:`Description`; ``print()`` it for a table, ``.to_dict()`` for JSON.

    Example:
        >>> from kerascnn import create_model, describe
        >>> describe(create_model("mnist_cnn")).params
        93322
        >>> describe("lenet5", input_shape=(28, 28, 1)).params
        44426
    """
    if isinstance(model, str):
        from kerascnn.models import check_known, create_model

        model = create_model(check_known(model, "model"), **options)
    elif options:
        raise ArgumentError(
            "Options apply to a model given by name; this one is built. "
            f"Received: {', '.join(f'{k}={v!r}' for k, v in sorted(options.items()))}"
        )
    rows: list[LayerInfo] = []
    _walk(model, {}, rows, "", {})
    return Description(model=model.name, layers=rows)
