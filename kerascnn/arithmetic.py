"""Textbook convolution arithmetic, independent of Keras.

For a window of size ``k``, stride ``s``, dilation ``d`` and padding ``p``:

* output size   ``out = floor((n + 2p - d(k - 1) - 1) / s) + 1``
  (``floor((n + 2p - k) / s) + 1`` when ``d = 1``); Keras' ``"same"``
  padding gives ``ceil(n / s)``;
* parameters    ``(k*k*C_in/groups + 1) * C_out`` (no ``+ 1`` without bias);
* receptive field and jump (cumulative stride)
  ``r_out = r_in + (k_eff - 1) * j_in``, ``j_out = j_in * s``, where
  ``k_eff = d(k - 1) + 1``.

Transposed convolution (stride ``s`` spreads each input pixel over a ``k``
window of the output):

* output size ``out = (n - 1)s - 2p + k_eff + output_padding``;
* an output pixel sees at most ``ceil(k_eff / s)`` adjacent input pixels, so
  ``r_out = r_in + ceil((ceil(k_eff / s) - 1) * j_in)`` and ``j_out = j_in / s``
  (a fraction of an input pixel). Nearest-neighbour up-sampling by ``s`` is the
  case ``k = s``: ``r_out = r_in``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

from kerascnn.errors import ArgumentError


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int | str = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis.

    Args:
        n: Input length.
        kernel: Window size ``k``.
        stride: Stride ``s``.
        padding: Pixels added on each side, or Keras' ``"valid"``/``"same"``.
        dilation: Dilation rate ``d``.

    Example:
        >>> conv_output_size(227, 11, 4)  # AlexNet's first convolution
        55
    """
    if padding in ("same", "causal"):
        return math.ceil(n / stride)
    pad = 0 if padding == "valid" else int(padding)
    effective = dilation * (kernel - 1) + 1
    return (n + 2 * pad - effective) // stride + 1


def conv_params(kernel: int, c_in: int, c_out: int, *, use_bias: bool = True, groups: int = 1) -> int:
    """Weights of a square ``kernel`` convolution: ``(k*k*C_in/groups + 1) * C_out``.

    Example:
        >>> conv_params(11, 3, 96)
        34944
    """
    return (kernel * kernel * c_in // groups + int(use_bias)) * c_out


def receptive_field(
    r_in: int, j_in: int | Fraction, kernel: int, stride: int, dilation: int = 1
) -> tuple[int, int | Fraction]:
    """Returns ``(r_out, j_out)`` after a window of ``kernel`` and ``stride``.

    Example:
        >>> receptive_field(1, 1, 3, 1)
        (3, 1)
    """
    effective = dilation * (kernel - 1) + 1
    return math.ceil(r_in + (effective - 1) * j_in), j_in * stride


def conv_transpose_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: int | str = 0,
    output_padding: int | None = None,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one axis: ``(n - 1)s - 2p + k_eff + output_padding``.

    ``padding`` is the ``p`` pixels cropped from each side, or Keras' ``"valid"`` (``p = 0``; without
    ``output_padding`` the output is ``(n - 1)s + max(k_eff, s)``) or ``"same"`` (``n * s`` without
    ``output_padding``, else ``(n - 1)s + k_eff % 2 + output_padding``).

    Example:
        >>> conv_transpose_output_size(4, 4, 2, 1)  # doubles 4x4 to 8x8 (a DCGAN generator layer)
        8
    """
    effective = dilation * (kernel - 1) + 1
    if padding == "same":
        return n * stride if output_padding is None else (n - 1) * stride + effective % 2 + output_padding
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        return (n - 1) * stride + effective + extra
    return (n - 1) * stride - 2 * int(padding) + effective + (output_padding or 0)


def transposed_receptive_field(
    r_in: int, j_in: Fraction | int, kernel: int, stride: int, dilation: int = 1
) -> tuple[int, Fraction]:
    """``(r_out, j_out)`` after a transposed convolution (or up-sampling) of ``kernel`` and ``stride``.

    ``r_out`` is the largest over output positions; ``j_out = j_in / stride`` may be a fraction.

    Example:
        >>> transposed_receptive_field(1, 1, 4, 2)  # k=4, s=2: each output sees 2 input pixels
        (2, Fraction(1, 2))
    """
    effective = dilation * (kernel - 1) + 1
    taps = math.ceil(effective / stride)
    return r_in + math.ceil((taps - 1) * Fraction(j_in)), Fraction(j_in) / stride


Window = tuple[int, int, "int | str"]  # (kernel, stride, padding)


def min_input_size(windows: Iterable[Window], limit: int = 4096) -> int:
    """Smallest input length for which every window still outputs >= 1 pixel.

    Args:
        windows: ``(kernel, stride, padding)`` of each spatial layer, in order.
        limit: Largest size tried.

    Example:
        >>> min_input_size([(3, 1, "valid"), (2, 2, "valid")])
        4
    """
    windows = list(windows)
    for n in range(1, limit + 1):
        size = n
        for kernel, stride, padding in windows:
            size = conv_output_size(size, kernel, stride, padding)
            if size < 1:
                break
        else:
            return n
    raise ArgumentError(f"No input size up to {limit} fits these windows. Received: windows={windows}")
