"""Forward+backward time of FeaturePyramid, LearnableDictionaryEncoding and
SelfAttentivePooling on CPU, under each Keras backend.

Each backend runs in its own process (a process has one backend). Shapes
follow the fpm paper's ResNet-34 on 3-s crops (64 mel bins x 300 frames):
C2..C5 with 32/64/128/256 channels at time x freq 150x32, 75x16, 38x8,
19x4; LDE and SAP pool 300 frames of 64 and 256 features.

    python bench/layers.py [--batch 32] [--steps 10]
"""

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {"C2": (150, 32, 32), "C3": (75, 16, 64), "C4": (38, 8, 128), "C5": (19, 4, 256)}


def build_cases():
    import keras

    from keras_spk.layers import FeaturePyramid
    from keras_spk.layers import LearnableDictionaryEncoding
    from keras_spk.layers import SelfAttentivePooling

    cases = {}
    for mode in ("bilinear", "transposed"):
        inputs = {k: keras.Input(s, name=k) for k, s in SHAPES.items()}
        outputs = FeaturePyramid(channels=32, upsampling=mode)(inputs)
        cases[f"FeaturePyramid ({mode})"] = (keras.Model(inputs, outputs), SHAPES)
    frames = keras.Input((300, 64))
    cases["LearnableDictionaryEncoding (64 codewords)"] = (
        keras.Model(frames, LearnableDictionaryEncoding(num_codewords=64)(frames)),
        {"x": (300, 64)},
    )
    frames = keras.Input((300, 256))
    cases["SelfAttentivePooling"] = (
        keras.Model(frames, SelfAttentivePooling()(frames)),
        {"x": (300, 256)},
    )
    return cases


def time_case(model, shapes, batch, steps):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = {k: rng.standard_normal((batch, *s)).astype("float32") for k, s in shapes.items()}
    x = x["x"] if list(x) == ["x"] else x
    outputs = model(x)
    if isinstance(outputs, dict):
        y = {k: np.zeros(tuple(v.shape), "float32") for k, v in outputs.items()}
    else:
        y = np.zeros(tuple(outputs.shape), "float32")
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    for _ in range(2):  # warm-up: tracing / first-call allocation
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps * 1000.0


def run_here(batch, steps):
    import keras

    return {
        name: time_case(model, shapes, batch, steps)
        for name, (model, shapes) in build_cases().items()
    } | {"_backend": keras.backend.backend()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_here(args.batch, args.steps)))
        return
    results = {}
    for backend in ("tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--batch", str(args.batch), "--steps", str(args.steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    names = [n for n in results["tensorflow"] if not n.startswith("_")]
    print(f"forward+backward+SGD step, batch {args.batch}, CPU ({os.cpu_count()} cores), ms/step")
    print(f"{'layer':44s} {'tensorflow':>11s} {'torch':>11s} {'torch/tf':>9s}")
    for n in names:
        tf_ms, torch_ms = results["tensorflow"][n], results["torch"][n]
        print(f"{n:44s} {tf_ms:11.1f} {torch_ms:11.1f} {torch_ms / tf_ms:9.2f}")


if __name__ == "__main__":
    main()
