"""Textbook convolution arithmetic, independent of Keras.

For a window of size ``k``, stride ``s``, dilation ``d`` and padding ``p``:

* output size   ``out = floor((n + 2p - d(k - 1) - 1) / s) + 1``
  (``floor((n + 2p - k) / s) + 1`` when ``d = 1``); Keras' ``"same"``
  padding gives ``ceil(n / s)``;
* parameters    ``(k*k*C_in/groups + 1) * C_out`` (no ``+ 1`` without bias);
* receptive field and jump (cumulative stride)
  ``r_out = r_in + (k_eff - 1) * j_in``, ``j_out = j_in * s``, where
  ``k_eff = d(k - 1) + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


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
    if padding == "same":
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


def receptive_field(r_in: int, j_in: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Returns ``(r_out, j_out)`` after a window of ``kernel`` and ``stride``.

    Example:
        >>> receptive_field(1, 1, 3, 1)
        (3, 1)
    """
    effective = dilation * (kernel - 1) + 1
    return r_in + (effective - 1) * j_in, j_in * stride


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
    raise ValueError(f"No input size up to {limit} fits these windows. Received: windows={windows}")
