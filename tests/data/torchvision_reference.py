"""Checks the kit's conversions against real torchvision (not part of the suite: torch is not a dependency).

Step 1, in an environment with torch and torchvision (random weights, non-trivial batch-norm statistics):

    python tests/data/torchvision_reference.py export OUT_DIR [NAME ...]

writes ``NAME.npz`` and ``NAME.pth`` (the state dict), ``NAME_io.npz`` (inputs and torchvision's logits) and
``torchvision_keys.json`` (the key/shape table kept in this folder). Step 2, in the kit's environment:

    PYTHONPATH=. python tests/data/torchvision_reference.py compare OUT_DIR [NAME ...]

converts each state dict with ``kerascnn.convert_torchvision(..., preprocessing=None)`` and prints the
largest absolute and relative logit differences (``.pth`` files are read only if torch is importable).
"""

from __future__ import annotations

import json
import os
import sys

NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
]


def export(out: str, names: list[str]) -> None:
    import numpy as np
    import torch
    import torchvision

    torch.manual_seed(0)
    keys = {}
    for name in names:
        net = getattr(torchvision.models, name)(weights=None)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        net.eval()
        state = net.state_dict()
        keys[name] = {k: list(v.shape) for k, v in state.items()}
        np.savez(f"{out}/{name}.npz", **{k: v.numpy() for k, v in state.items()})
        torch.save(state, f"{out}/{name}.pth")
        rng = np.random.default_rng(1)
        io = {}
        for side in [224, 225, 160] if name.startswith("resnet") else [224]:
            x = rng.random((2, 3, side, side), dtype=np.float32)
            with torch.no_grad():
                io[f"x{side}"], io[f"logits{side}"] = x, net(torch.from_numpy(x)).numpy()
        np.savez(f"{out}/{name}_io.npz", **io)
        print(name, len(state), "entries", flush=True)
    with open(f"{out}/torchvision_keys.json", "w") as f:
        json.dump(keys, f)


def compare(out: str, names: list[str]) -> None:
    import importlib.util

    import keras
    import numpy as np

    import kerascnn

    has_torch = importlib.util.find_spec("torch") is not None
    for name in names:
        io = np.load(f"{out}/{name}_io.npz")
        for key in sorted(k for k in io.files if k.startswith("x")):
            side = int(key[1:])
            source = f"{out}/{name}.pth" if has_torch and side == 160 else f"{out}/{name}.npz"
            model = kerascnn.convert_torchvision(name, source, input_shape=(side, side, 3), preprocessing=None)
            features = keras.Model(model.inputs, model.get_layer("predictions").input)
            kernel, bias = model.get_layer("predictions").get_weights()
            logits = np.asarray(features.predict_on_batch(io[key].transpose(0, 2, 3, 1))) @ kernel + bias
            want = io[f"logits{side}"]
            diff = np.abs(logits - want).max()
            print(
                f"{name:9s} {side}px {os.path.splitext(source)[1]:5s} max|diff| {diff:.2e}  "
                f"relative {diff / np.abs(want).max():.2e}  "
                f"same top-1 {bool((logits.argmax(1) == want.argmax(1)).all())}",
                flush=True,
            )
            keras.backend.clear_session()


if __name__ == "__main__":
    command, folder, *chosen = sys.argv[1:]
    {"export": export, "compare": compare}[command](folder, chosen or NAMES)
