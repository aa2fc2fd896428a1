"""GPU benchmark: ResNet-50 at 224 and ResNet-18 at 32, float32 vs mixed precision + XLA, images/s.

    python benchmarks/gpu.py                 # on a GPU machine; target: mixed+XLA >= 2x float32
    python benchmarks/gpu.py --smoke         # tiny run that only checks the script works (any device)

Synthetic data (one random batch, repeated) so the input pipeline is out of the picture; the model, its
compile settings and the precision policy come from kerascnn exactly as `kerascnn train` sets them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def images_per_second(name: str, size: int, precision: str, jit: bool, batch: int, steps: int, repeats: int) -> float:
    import keras
    import tensorflow as tf

    from kerascnn import create_model, device

    keras.backend.clear_session()
    with device.dtype_policy(device.policy_name(precision)):
        model = create_model(name, input_shape=(size, size, 3), num_classes=1000 if size >= 128 else 10)
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        "sparse_categorical_crossentropy",
        jit_compile=jit,
        steps_per_execution=min(steps, 10),
    )
    x = tf.random.uniform((batch, size, size, 3))
    y = tf.random.uniform((batch,), maxval=model.output_shape[-1], dtype=tf.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat(steps).cache().prefetch(2)
    model.fit(data, epochs=1, verbose=0)  # compile, autotune, allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    return batch * steps / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny batches and steps: checks the script only")
    args = parser.parse_args()
    from kerascnn import device

    cases = [("resnet50", 224, 64), ("resnet18", 32, 256)]
    steps, repeats = (2, 1) if args.smoke else (50, 3)
    report = {"device": device.describe_devices(), "smoke": args.smoke, "results": []}
    for name, size, full_batch in cases:
        batch = 4 if args.smoke else full_batch
        f32 = images_per_second(name, size, "float32", False, batch, steps, repeats)
        fast = images_per_second(name, size, "mixed", True, batch, steps, repeats)
        row = {
            "model": name,
            "size": size,
            "batch": batch,
            "float32_img_s": f32,
            "mixed_xla_img_s": fast,
            "speedup": fast / f32,
        }
        report["results"].append(row)
        print(f"{name}@{size}: float32 {f32:.1f} img/s, mixed+XLA {fast:.1f} img/s, {fast / f32:.2f}x", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
