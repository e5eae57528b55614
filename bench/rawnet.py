"""RawNet on CPU under each Keras backend, against plain PyTorch and plain TensorFlow.

Three RawNets of Table 1 (1,211 speakers), the same layer shapes:

- keras_spk: `papers/rawnet/model.py`'s `build_rawnet` (paper settings:
  recurrent dropout 0.3, eq. 3's objective, AMSGrad 1e-3), trained with
  `train_on_batch`, under the backend of the process;
- plain PyTorch (`plain_torch_rawnet`, written out in this file): what a
  PyTorch user would write instead: `nn.Conv1d` / `nn.BatchNorm1d` /
  `nn.MaxPool1d` residual blocks, `nn.GRU`, `nn.Linear`, the same loss
  (cross-entropy, center loss with its alpha rule, 5 x mean pairwise
  cosine of the speaker bases) and `torch.optim.Adam(amsgrad=True)`, whose
  `weight_decay=2e-4` on the kernels is the gradient of the L2 penalty
  `1e-4 ||W||^2`;
- plain TensorFlow (`plain_tf_rawnet`): Keras's built-in layers
  (`Conv1D`, `BatchNormalization`, `LeakyReLU`, `Add`, `MaxPooling1D`,
  `GRU(recurrent_dropout=0.3)`, `Dense`) in a functional model and a
  `tf.GradientTape` training step in a `tf.function`, the same loss, the
  same optimizer.

Where the baselines differ from `build_rawnet` (FLOPs are the same up to
a few elementwise operations per GRU step):

- The GRU. `build_rawnet`'s default is Keras 3's GRU (sigmoid gates,
  `reset_after=True`), which is also `nn.GRU`'s formulation (the reset
  gate multiplies the recurrent projection), so the weights map one to
  one; the authors' GRU (`--gru authors`: Keras 2's hard sigmoid gates
  `clip(0.2 x + 0.5, 0, 1)` and `reset_after=False`, the reset gate before
  the recurrent projection) has no `nn.GRU` form, and the plain models
  keep the default GRU (the same matrix products: x W over 3 gates, h U
  over 2 gates and (r h) or h U over the third).
- Recurrent dropout: `nn.GRU` has none (its `dropout` is between stacked
  layers), so the plain PyTorch GRU runs without it; the plain TensorFlow
  one has it, as `build_rawnet`.
- Weight decay: an L2 penalty in the loss for keras_spk and plain
  TensorFlow (Keras regularizers), the optimizer's `weight_decay` for plain
  PyTorch (the same gradient).

Each process times, interleaved round by round so that a change of
machine load affects them alike:

- the training step on one batch of 59,049-sample crops (`--batch`; the
  paper trains with batches of 102): keras_spk's `train_on_batch` and the
  plain model's step of the same backend;
- embedding one 4-s utterance (64,000 samples at 16 kHz): keras_spk's
  embedder as built for training (recurrent dropout 0.3: the GRU's own
  loop) and for extraction (recurrent dropout 0: Keras's fused GRU; the
  same weights and embeddings), each with `predict_on_batch`, and the
  plain model (PyTorch:
  `eval()` under `torch.no_grad()`; TensorFlow: `predict_on_batch`).
  The real-time factor (RTF) is seconds per utterance / 4 s; the issue's
  goal is RTF <= 0.02.

Ratios are keras_spk / plain (below 1: keras_spk is faster). The goals:
TensorFlow's training step <= 1.0 x plain TensorFlow, PyTorch's
<= 1.2 x plain PyTorch. With the default GRU the plain models also get
keras_spk's weights (BN statistics included), and the largest difference
of their embeddings from keras_spk's is printed: the check that the plain
models are the same network.

Each backend runs in its own process (a process has one backend). A last
process embeds under PyTorch with `OMP_WAIT_POLICY=PASSIVE` (OpenMP
threads sleep instead of spinning while they wait), keras_spk and plain
again: on cores shared with other busy processes, spinning threads can
make each call several times slower, which is no property of the model.
`--call-variants` adds the ways of calling the extraction build (direct
call, `tf.function`, XLA, `torch.inference_mode()`, and with
`--torch-compile` `jit_compile=True` under PyTorch, which compiles for
minutes).

    python bench/rawnet.py [--batch 8] [--steps 3] [--repeats 7] [--threads N]
                           [--gru default|authors] [--call-variants] [--torch-compile]

Example, on two CPU cores shared with other work (about 90 s a run):
medians of three runs of each of the layers before and after keras_spk's
`Conv1D`, `BatchNormalization`, `GRU` and the folded `RawNetBlock`, batch
8, default GRU; ms, then x plain (absolute times move with the load of
the moment; the ratios much less):

                                   before               after
    training step    tensorflow    2466 ms   1.12       1569 ms   0.78
                     torch         4374 ms   1.69       2621 ms   1.12
    embed 4 s, RTF   tensorflow    0.0179    1.03       0.0143    0.94
     (extraction)    torch         0.0352    1.67       0.0232    1.40
                     torch, PASSIVE 0.0336   1.58       0.0280    1.25

The plain models' RTF was 0.014-0.026 (TensorFlow) and 0.015-0.023
(PyTorch) in those runs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _threads import set_threads  # bench/_threads.py (this script's folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROP = 59049
UTTERANCE_SECONDS = 4.0
SAMPLE_RATE = 16000
NUM_SPEAKERS = 1211
# Table 1 and build_rawnet's defaults, written out for the plain models.
FILTERS = (128, 128, 256, 256, 256, 256)
FIRST_FILTERS = 128
GRU_UNITS = 1024
EMBEDDING_DIM = 128
SLOPE = 0.3
PRE_EMPHASIS = 0.97
L2 = 1e-4
CENTER_WEIGHT = 1e-3
CENTER_ALPHA = 0.5
BASIS_WEIGHT = 5.0
LEARNING_RATE = 1e-3
BN_EPSILON = 1e-3  # Keras's default
BN_MOMENTUM = 0.99  # Keras's convention; PyTorch's momentum is 1 - 0.99
PLAIN = "predict_on_batch"
GRU_SETTINGS = {
    "default": {},
    "authors": {"gru_reset_after": False, "gru_gate_activation": "hard_sigmoid_keras2"},
}


def _build(recurrent_dropout, gru="default"):
    sys.path.insert(0, ROOT)
    from papers.rawnet.model import build_rawnet

    return build_rawnet(NUM_SPEAKERS, recurrent_dropout=recurrent_dropout, **GRU_SETTINGS[gru])


# === Plain PyTorch RawNet ===


def plain_torch_rawnet(num_speakers=NUM_SPEAKERS):
    """Table 1 as a plain `torch.nn.Module`: `.embed(waveforms)` and `.loss(waveforms, labels)`."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def batch_norm(channels):
        return nn.BatchNorm1d(channels, eps=BN_EPSILON, momentum=1.0 - BN_MOMENTUM)

    class Block(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
            self.bn1 = batch_norm(c_out)
            self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
            self.bn2 = batch_norm(c_out)
            self.shortcut = (
                nn.Sequential(nn.Conv1d(c_in, c_out, 1), batch_norm(c_out))
                if c_in != c_out
                else nn.Identity()
            )
            self.pool = nn.MaxPool1d(3)

        def forward(self, x):
            h = F.leaky_relu(self.bn1(self.conv1(x)), SLOPE)
            h = self.bn2(self.conv2(h))
            return self.pool(F.leaky_relu(h + self.shortcut(x), SLOPE))

    class RawNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, FIRST_FILTERS, 3, stride=3)
            self.conv_bn = batch_norm(FIRST_FILTERS)
            blocks, channels = [], FIRST_FILTERS
            for filters in FILTERS:
                blocks.append(Block(channels, filters))
                channels = filters
            self.blocks = nn.Sequential(*blocks)
            self.gru = nn.GRU(channels, GRU_UNITS, batch_first=True)
            self.fc = nn.Linear(GRU_UNITS, EMBEDDING_DIM)
            self.fc_bn = batch_norm(EMBEDDING_DIM)
            self.head = nn.Linear(EMBEDDING_DIM, num_speakers, bias=False)
            centers = torch.empty(num_speakers, EMBEDDING_DIM).uniform_(-0.05, 0.05)
            self.register_buffer("centers", centers)

        def embed(self, waveforms):
            w = waveforms
            w = torch.cat([w[:, :1], w[:, 1:] - PRE_EMPHASIS * w[:, :-1]], 1)
            x = F.leaky_relu(self.conv_bn(self.conv(w[:, None])), SLOPE)
            _, state = self.gru(self.blocks(x).transpose(1, 2))
            return F.leaky_relu(self.fc_bn(self.fc(state[-1])), SLOPE)

        def loss(self, waveforms, labels):
            e = self.embed(waveforms)
            cross_entropy = F.cross_entropy(self.head(e), labels)
            center = CENTER_WEIGHT * 0.5 * torch.sum((e - self.centers[labels]) ** 2)
            bases = F.normalize(self.head.weight, dim=1)
            n = bases.shape[0]
            pairs = torch.sum(torch.sum(bases, 0) ** 2) - torch.sum(bases**2)
            basis = BASIS_WEIGHT * pairs / (n * (n - 1))
            with torch.no_grad():  # the centers' alpha rule
                targets = F.one_hot(labels, n).float()
                counts = targets.sum(0)[:, None]
                delta = (counts * self.centers - targets.t() @ e) / (1.0 + counts)
                self.centers -= CENTER_ALPHA * delta
            return cross_entropy + center + basis

    return RawNet()


def plain_torch_trainer(model):
    """`step(waveforms, labels)`: one AMSGrad step of the plain PyTorch RawNet."""
    import torch

    kernels = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.Adam(
        [{"params": kernels, "weight_decay": 2 * L2}, {"params": others}],
        lr=LEARNING_RATE,
        amsgrad=True,
    )

    def step(waveforms, labels):
        model.train()
        optimizer.zero_grad()
        loss = model.loss(waveforms, labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def copy_to_plain_torch(embedder, model):
    """Copies keras_spk's embedder weights (PyTorch backend, default GRU) into the plain model."""
    import torch

    def t(variable):
        return torch.as_tensor(keras_numpy(variable))

    def conv(layer, module):
        module.weight.data.copy_(t(layer.kernel).permute(2, 1, 0))
        module.bias.data.copy_(t(layer.bias))

    def batch_norm(layer, module):
        module.weight.data.copy_(t(layer.gamma))
        module.bias.data.copy_(t(layer.beta))
        module.running_mean.copy_(t(layer.moving_mean))
        module.running_var.copy_(t(layer.moving_variance))

    cnn = embedder.get_layer("rawnet_cnn")
    conv(cnn.get_layer("strided_conv"), model.conv)
    batch_norm(cnn.get_layer("strided_conv_bn"), model.conv_bn)
    for i, block in enumerate(model.blocks):
        layer = cnn.get_layer(f"res_block_{i + 1}")
        conv(layer.conv1, block.conv1)
        batch_norm(layer.bn1, block.bn1)
        conv(layer.conv2, block.conv2)
        batch_norm(layer.bn2, block.bn2)
        if layer.has_projection:
            conv(layer.shortcut_conv, block.shortcut[0])
            batch_norm(layer.shortcut_bn, block.shortcut[1])
    cell = embedder.get_layer("gru").cell

    def gates(matrix):  # Keras's [z | r | h] columns -> PyTorch's [r | z | n] rows
        z, r, h = torch.split(matrix, GRU_UNITS, dim=-1)
        return torch.cat([r, z, h], dim=-1)

    bias = t(cell.bias)
    model.gru.weight_ih_l0.data.copy_(gates(t(cell.kernel)).T)
    model.gru.weight_hh_l0.data.copy_(gates(t(cell.recurrent_kernel)).T)
    model.gru.bias_ih_l0.data.copy_(gates(bias[0]))
    model.gru.bias_hh_l0.data.copy_(gates(bias[1]))
    dense = embedder.get_layer("embedding_dense")
    model.fc.weight.data.copy_(t(dense.kernel).T)
    model.fc.bias.data.copy_(t(dense.bias))
    batch_norm(embedder.get_layer("embedding_bn"), model.fc_bn)


def keras_numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)


# === Plain TensorFlow RawNet ===


def plain_tf_rawnet(num_speakers=NUM_SPEAKERS, recurrent_dropout=0.3):
    """Table 1 with Keras's built-in layers and a `tf.GradientTape` step.

    Returns `(embedder, step)`: a functional `keras.Model` from waveforms
    `(batch, None)` to embeddings, and `step(waveforms, labels)`, one
    AMSGrad step of eq. 3 plus weight decay, in a `tf.function`.
    """
    import keras
    import tensorflow as tf
    from keras import layers

    l2 = keras.regularizers.L2(L2)
    conv_settings = {"kernel_initializer": "he_normal", "kernel_regularizer": l2}

    def block(x, filters, name):
        h = layers.Conv1D(filters, 3, padding="same", name=f"{name}_conv1", **conv_settings)(x)
        h = layers.LeakyReLU(SLOPE)(layers.BatchNormalization(name=f"{name}_bn1")(h))
        h = layers.Conv1D(filters, 3, padding="same", name=f"{name}_conv2", **conv_settings)(h)
        h = layers.BatchNormalization(name=f"{name}_bn2")(h)
        if x.shape[-1] != filters:
            x = layers.Conv1D(filters, 1, name=f"{name}_shortcut_conv", **conv_settings)(x)
            x = layers.BatchNormalization(name=f"{name}_shortcut_bn")(x)
        return layers.MaxPooling1D(3)(layers.LeakyReLU(SLOPE)(layers.Add()([h, x])))

    def pre_emphasis(w):
        return tf.concat([w[:, :1], w[:, 1:] - PRE_EMPHASIS * w[:, :-1]], axis=1)[..., None]

    waveforms = keras.Input((None,))
    x = layers.Lambda(pre_emphasis, output_shape=(None, 1))(waveforms)
    x = layers.Conv1D(FIRST_FILTERS, 3, strides=3, name="strided_conv", **conv_settings)(x)
    x = layers.LeakyReLU(SLOPE)(layers.BatchNormalization(name="strided_conv_bn")(x))
    for i, filters in enumerate(FILTERS):
        x = block(x, filters, name=f"res_block_{i + 1}")
    x = layers.GRU(
        GRU_UNITS,
        recurrent_dropout=recurrent_dropout,
        kernel_regularizer=l2,
        recurrent_regularizer=l2,
        name="gru",
    )(x)
    x = layers.Dense(EMBEDDING_DIM, name="embedding_dense", **conv_settings)(x)
    x = layers.BatchNormalization(name="embedding_bn")(x)
    embedding = layers.LeakyReLU(SLOPE)(x)
    embedder = keras.Model(waveforms, embedding)
    head = layers.Dense(num_speakers, use_bias=False, **conv_settings)
    head.build((None, EMBEDDING_DIM))
    centers = tf.Variable(tf.random.uniform((num_speakers, EMBEDDING_DIM), -0.05, 0.05))
    variables = embedder.trainable_variables + head.trainable_variables
    optimizer = keras.optimizers.Adam(LEARNING_RATE, amsgrad=True)
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def step(waveforms, labels):
        with tf.GradientTape() as tape:
            e = embedder(waveforms, training=True)
            logits = head(e)
            cross_entropy = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            )
            center = CENTER_WEIGHT * 0.5 * tf.reduce_sum(tf.square(e - tf.gather(centers, labels)))
            bases = tf.math.l2_normalize(head.kernel, axis=0)
            pairs = tf.reduce_sum(tf.square(tf.reduce_sum(bases, 1)))
            pairs -= tf.reduce_sum(tf.square(bases))
            basis = BASIS_WEIGHT * pairs / (num_speakers * (num_speakers - 1))
            loss = cross_entropy + center + basis + tf.add_n(embedder.losses + head.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        targets = tf.one_hot(labels, num_speakers)
        counts = tf.reduce_sum(targets, 0)[:, None]
        delta = (counts * centers - tf.matmul(targets, e, transpose_a=True)) / (1.0 + counts)
        centers.assign_sub(CENTER_ALPHA * delta)
        return loss

    return embedder, step


def copy_to_plain_tf(embedder, plain):
    """Copies keras_spk's embedder weights (default GRU) into the plain TensorFlow embedder."""
    cnn = embedder.get_layer("rawnet_cnn")
    pairs = [(cnn.get_layer(name), name) for name in ("strided_conv", "strided_conv_bn")]
    for i in range(len(FILTERS)):
        block = cnn.get_layer(f"res_block_{i + 1}")
        for part in ("conv1", "bn1", "conv2", "bn2", "shortcut_conv", "shortcut_bn"):
            if hasattr(block, part):
                pairs.append((getattr(block, part), f"res_block_{i + 1}_{part}"))
    for name in ("gru", "embedding_dense", "embedding_bn"):
        pairs.append((embedder.get_layer(name), name))
    for layer, name in pairs:
        plain.get_layer(name).set_weights(layer.get_weights())


# === Timing ===


def interleaved(calls, repeats):
    """`{name: median seconds}` of `calls` (`{name: function()}`), after one warm-up call each."""
    for call in calls.values():  # warm-up: tracing / first-call allocation
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(times[name]) for name in calls}


def training_steps(batch, gru):
    """`{name: function()}`: keras_spk's training step and the plain model's, one batch."""
    import keras
    import numpy as np

    trainer, _ = _build(recurrent_dropout=0.3, gru=gru)
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, amsgrad=True), loss=None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, CROP)).astype("float32")
    labels = rng.integers(0, NUM_SPEAKERS, batch).astype("int32")
    steps = {"keras_spk": lambda: trainer.train_on_batch([x, labels])}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        _, plain_step = plain_tf_rawnet()
        xt, yt = tf.constant(x), tf.constant(labels)
        steps["plain"] = lambda: plain_step(xt, yt).numpy()
    else:
        import torch

        plain_step = plain_torch_trainer(plain_torch_rawnet())
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype("int64"))
        steps["plain"] = lambda: plain_step(xt, yt).item()
    return steps


def embedding_calls(gru, call_variants=False, torch_compile=False):
    """`({name: function()}, {name: max |embedding - keras_spk's|})` for one 4-s utterance."""
    import keras
    import numpy as np

    samples = int(UTTERANCE_SECONDS * SAMPLE_RATE)
    x = np.random.default_rng(1).standard_normal((1, samples)).astype("float32")
    _, training_build = _build(recurrent_dropout=0.3, gru=gru)
    _, embedder = _build(recurrent_dropout=0.0, gru=gru)
    embedder.set_weights(training_build.get_weights())
    reference = keras_numpy(embedder.predict_on_batch(x))
    calls = {
        "keras_spk, training build": lambda: training_build.predict_on_batch(x),
        PLAIN: lambda: embedder.predict_on_batch(x),
    }
    outputs = {"keras_spk, training build": calls["keras_spk, training build"]}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        plain, _ = plain_tf_rawnet(recurrent_dropout=0.0)
        if gru == "default":
            copy_to_plain_tf(embedder, plain)
        calls["plain"] = outputs["plain"] = lambda: plain.predict_on_batch(x)
        if call_variants:

            def call(inputs):
                return embedder(inputs, training=False)

            dynamic = tf.function(
                call,
                input_signature=[tf.TensorSpec([None, None], tf.float32)],
                reduce_retracing=True,
            )
            xla = tf.function(call, jit_compile=True)
            calls["direct call (eager)"] = lambda: call(x).numpy()
            calls["tf.function, dynamic length"] = lambda: dynamic(x).numpy()
            calls["tf.function, jit_compile=True (XLA)"] = lambda: xla(x).numpy()
    else:
        import torch

        plain = plain_torch_rawnet().eval()
        if gru == "default":
            copy_to_plain_torch(embedder, plain)
        xt = torch.from_numpy(x)

        def plain_call():
            with torch.no_grad():
                return plain.embed(xt).numpy()

        calls["plain"] = plain_call
        if call_variants:

            def no_grad():
                with torch.no_grad():
                    return embedder(x, training=False).numpy()

            def inference_mode():
                with torch.inference_mode():
                    return embedder(x, training=False).numpy()

            calls["direct call, torch.no_grad()"] = no_grad
            calls["direct call, torch.inference_mode()"] = inference_mode
            if torch_compile:
                _, compiled = _build(recurrent_dropout=0.0, gru=gru)
                compiled.set_weights(embedder.get_weights())
                compiled.compile(jit_compile=True)
                calls["jit_compile=True (torch.compile)"] = lambda: compiled.predict_on_batch(x)
    outputs.update({name: call for name, call in calls.items() if name not in outputs})
    if gru != "default":
        outputs.pop("plain")  # another GRU: the plain model has other weights
    differences = {
        name: float(np.max(np.abs(keras_numpy(call()) - reference)))
        for name, call in outputs.items()
        if name != PLAIN
    }
    return calls, differences


def run_here(args):
    import keras

    results = {"_backend": keras.backend.backend()}
    calls, differences = embedding_calls(args.gru, args.call_variants, args.torch_compile)
    if args.embed_only:
        calls = {PLAIN: calls[PLAIN], "plain": calls["plain"]}
    results["embed_s"] = interleaved(calls, args.repeats)
    results["embed_max_diff"] = differences
    if args.steps > 0 and not args.embed_only:
        results["train_step_s"] = interleaved(training_steps(args.batch, args.gru), args.steps)
    return results


def run_child(backend, args, embed_only=False, extra_env=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **(extra_env or {}))
    command = [sys.executable, __file__, "--child", "--batch", str(args.batch)]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    command += ["--threads", str(args.threads), "--gru", args.gru]
    command += ["--embed-only"] if embed_only else []
    command += ["--call-variants"] if args.call_variants else []
    command += ["--torch-compile"] if args.torch_compile else []
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"The {backend} process failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="training batch (paper: 102)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps; 0 skips")
    parser.add_argument("--repeats", type=int, default=7, help="timed embeddings")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads of each backend; 0 keeps its default"
    )
    parser.add_argument(
        "--gru",
        choices=tuple(GRU_SETTINGS),
        default="default",
        help="keras_spk's GRU: Keras 3's (default) or the authors' Keras 2 GRU",
    )
    parser.add_argument(
        "--call-variants",
        action="store_true",
        help="also time other ways of calling the extraction build",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="with --call-variants, also jit_compile=True under PyTorch (minutes)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        set_threads(args.threads)
        print(json.dumps(run_here(args)))
        return
    results = {backend: run_child(backend, args) for backend in ("tensorflow", "torch")}
    passive = run_child("torch", args, embed_only=True, extra_env={"OMP_WAIT_POLICY": "PASSIVE"})
    tf_r, torch_r = results["tensorflow"], results["torch"]
    threads = f", {args.threads} threads" if args.threads > 0 else ""
    cores = f"{os.cpu_count()} cores{threads}"
    print(f"RawNet ({NUM_SPEAKERS} speakers, {args.gru} GRU), CPU ({cores})")
    print("medians; x plain = keras_spk / the plain model of the same backend, interleaved")
    print(f"{'':58s} {'tensorflow':>10s} {'x plain':>8s} {'torch':>10s} {'x plain':>8s}")

    def row(label, key, unit_format, plain_key="plain"):
        cells = []
        for r in (tf_r, torch_r):
            times = r[key]
            cells.append(f"{unit_format(times[label[0]]):>10s}")
            cells.append(f"{times[label[0]] / times[plain_key]:8.2f}" if plain_key else f"{'':8s}")
        print(f"{label[1]:58s} {' '.join(cells)}")

    def ms(seconds):
        return f"{1e3 * seconds:.0f} ms"

    if args.steps > 0:
        goal = "(goal: TF <= 1.0, torch <= 1.2)"
        print(f"training step, batch {args.batch} x {CROP} samples {goal}")
        row(("keras_spk", "  keras_spk train_on_batch"), "train_step_s", ms)
        row(("plain", "  plain step"), "train_step_s", ms, plain_key=None)
    length = f"{UTTERANCE_SECONDS:g}"
    print(f"embed one {length}-s utterance; RTF = s / {length} s (goal <= 0.02)")
    for name, label in (
        (PLAIN, "  keras_spk, extraction build (recurrent dropout 0)"),
        ("keras_spk, training build", "  keras_spk, training build (recurrent dropout 0.3)"),
        ("plain", "  plain model"),
    ):
        row((name, label), "embed_s", ms, plain_key=None if name == "plain" else "plain")

        def rtf(seconds):
            return f"{seconds / UTTERANCE_SECONDS:.4f}"

        row((name, "    RTF"), "embed_s", rtf, plain_key=None)
    times = passive["embed_s"]
    print("  torch in another process with OMP_WAIT_POLICY=PASSIVE:")
    for name, label in ((PLAIN, "keras_spk, extraction build"), ("plain", "plain model")):
        ratio = f", {times[name] / times['plain']:.2f} x plain" if name == PLAIN else ""
        print(f"    {label}: {ms(times[name])}, RTF {times[name] / UTTERANCE_SECONDS:.4f}{ratio}")
    print()
    print("largest |embedding - keras_spk extraction build's| (same weights)")
    for backend, r in results.items():
        for name, difference in r["embed_max_diff"].items():
            print(f"  {backend:11s} {name:44s} {difference:9.1e}")
    if args.call_variants:
        print()
        print("ways of calling the extraction build (/ predict_on_batch; below 1 is faster)")
        for backend, r in results.items():
            times = r["embed_s"]
            for name, seconds in times.items():
                if name in ("keras_spk, training build", "plain"):
                    continue
                rtf = seconds / UTTERANCE_SECONDS
                ratio = seconds / times[PLAIN]
                print(f"  {backend:11s} {name:44s} {ms(seconds):>9s} {rtf:7.4f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
