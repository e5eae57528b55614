"""Discriminative auto-encoder (DCAE) enhancement of speaker embeddings."""

import functools

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from keras_spk.scoring._keras_training import check_training_params
from keras_spk.scoring._keras_training import kernel_regularizer
from keras_spk.scoring._keras_training import predict_in_chunks
from keras_spk.scoring._keras_training import seeded_keras
from keras_spk.scoring._keras_training import train_model
from keras_spk.utils._checks import check_non_negative_real
from keras_spk.utils._checks import check_positive_int

__all__ = ["DCAE"]


def _check_alpha(value):
    value = check_non_negative_real("center_alpha", value)
    if value > 1.0:
        raise ValueError(f"`center_alpha` must be in [0, 1]. Received: center_alpha={value!r}")
    return value


@functools.cache
def _reconstruction_loss_class():
    """A pass-through layer adding `weight * mean((x - x_hat)^2)` (defined once, lazily).

    It lives only in the training graph, which is never saved (the fitted
    state is the encoder), so it is not registered for serialization.
    """
    import keras

    class ReconstructionLoss(keras.layers.Layer):
        def __init__(self, weight, **kwargs):
            super().__init__(**kwargs)
            self.weight = weight

        def call(self, inputs):
            target, reconstruction = inputs
            error = keras.ops.square(
                keras.ops.cast(reconstruction, "float32") - keras.ops.cast(target, "float32")
            )
            self.add_loss(self.weight * keras.ops.mean(error))
            return reconstruction

        def compute_output_shape(self, input_shape):
            return input_shape[1]

    return ReconstructionLoss


class DCAE(TransformerMixin, BaseEstimator):
    """Discriminative auto-encoder: a learned, speaker-discriminant embedding enhancer.

    The RawNet paper (section 2.3, Table 2, column "Enhance") enhances
    speaker embeddings before cosine scoring either with LDA or with a
    "discriminative auto-encoder (DCAE)", a DNN-based enhancement from
    earlier work of the same group (Heo et al.); it does not describe the
    DCAE's architecture or training. This class is a DCAE in the sense of
    an auto-encoder whose bottleneck (the *code*, the enhanced embedding)
    is trained jointly to reconstruct its input and to discriminate the
    training speakers, with two of the objectives RawNet trains its own
    embedding with (softmax cross-entropy and center loss, section 2.3):

    ```
    z     = (x - mean) / scale                        (standardised input)
    code  = Dense(n_components)(encoder(z))           (linear code layer)
    z_hat = Dense(n_features)(decoder(code))          (linear reconstruction)
    L = reconstruction_weight * mean over batch and features of (z - z_hat)^2
      + softmax cross-entropy of the speaker from the code   (batch mean)
      + center_weight * mean over batch of 1/2 ||code - c_speaker||^2
      + L2 weight decay
    ```

    `encoder` is `Dense(units) -> LeakyReLU` per entry of `hidden_units`
    and `decoder` mirrors it (reversed sizes). `transform` returns the code.

    Choices the paper leaves open, and what is done here:

    * Architecture: one hidden layer of 256 units each side, LeakyReLU
      (slope 0.3, as the RawNet back-end DNN) and a linear 128-unit code
      (the size of a RawNet embedding); all set by the arguments.
    * Discriminative terms: `keras_spk.layers.SoftmaxHead` over the
      training speakers and `keras_spk.layers.CenterLoss` (alpha-rule
      center update) on the code. The center loss is averaged over the
      batch, so its weight does not depend on the batch size; the default
      0.1 equals, per utterance, RawNet's lambda = 1e-3 summed over a batch
      of about 100. No speaker-basis term (the code is not the RawNet
      embedding, which already had one).
    * Reconstruction: mean squared error of the standardised input, weight
      1; it keeps the code a description of the embedding rather than only
      a speaker classifier's feature.
    * Input scaling: centred with the training mean and divided by one
      global scale, the root mean square of the centred training values
      (`sqrt(mean_i ||x_i - mean||^2 / n_features)`), so the loss weights
      mean the same for any embedding scale; no per-dimension scaling,
      which would change the geometry the encoder starts from.
    * Optimisation: as the RawNet back-end (section 4.2): AMSGrad,
      learning rate 1e-3 with inverse-time decay 1e-4 per step, L2 weight
      decay 1e-4 on every kernel, batches of 102; 30 epochs (the paper
      gives no number).

    Like `DNNPairClassifier`, the Keras model is built in `fit` (Keras and
    `keras_spk.layers` imported there), and `fit` calls
    `keras.utils.set_random_seed(seed)` first (this reseeds Python, NumPy
    and the backend globally): the same data and seed give the same codes
    under one Keras backend; TensorFlow and PyTorch give different, equally
    valid, models. Only the encoder (`encoder_`, plain Dense / LeakyReLU
    layers) is kept, so a fitted DCAE saves with
    `keras_spk.scoring.save_backend`.

    Args:
        n_components: size of the code (the enhanced embedding).
        hidden_units: encoder hidden layer sizes (the decoder uses them
            reversed); an int is one layer, `()` none (a linear encoder).
        negative_slope: LeakyReLU slope for negative inputs.
        reconstruction_weight: weight of the reconstruction MSE (0 makes
            it a discriminatively trained encoder without a decoder term).
        center_weight: weight `lambda` of the center loss (0 disables it).
        center_alpha: center update rate of `CenterLoss`, in `[0, 1]`.
        weight_decay: L2 factor on every kernel.
        learning_rate: initial AMSGrad learning rate.
        lr_decay: inverse-time decay per step.
        epochs: passes over the training embeddings.
        batch_size: embeddings per step.
        seed: int seed for weights and shuffling.
        verbose: Keras `fit` verbosity (0 = silent).

    Attributes:
        mean_: `(n_features,)` training mean.
        scale_: float, the global input scale.
        classes_: sorted training speaker labels (row `k` of the
            softmax is speaker `classes_[k]`).
        encoder_: `keras.Model`, standardised embedding -> code.
        loss_curve_: total training loss per epoch (list of floats).
        n_components_: code size.
        n_features_in_: embedding size.

    Example:

    ```python
    backend = Pipeline([("dcae", DCAE(n_components=128)), ("cosine", CosineScorer())])
    backend.fit(train_embeddings, train_speakers)
    scores = score_pairs(backend, enroll_embeddings, test_embeddings)
    ```

    Reference:
        Jung et al., "RawNet: Advanced end-to-end deep neural network using
        raw waveforms for text-independent speaker verification", Interspeech
        2019, section 2.3 and Table 2 (DCAE named as an embedding
        enhancement); Wen et al., "A discriminative feature learning
        approach for deep face recognition", ECCV 2016 (center loss).
    """

    def __init__(
        self,
        n_components=128,
        hidden_units=(256,),
        negative_slope=0.3,
        reconstruction_weight=1.0,
        center_weight=0.1,
        center_alpha=0.5,
        weight_decay=1e-4,
        learning_rate=1e-3,
        lr_decay=1e-4,
        epochs=30,
        batch_size=102,
        seed=0,
        verbose=0,
    ):
        self.n_components = n_components
        self.hidden_units = hidden_units
        self.negative_slope = negative_slope
        self.reconstruction_weight = reconstruction_weight
        self.center_weight = center_weight
        self.center_alpha = center_alpha
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _checked_params(self):
        return {
            **check_training_params(self, allow_empty_hidden=True),
            "n_components": check_positive_int("n_components", self.n_components),
            "reconstruction_weight": check_non_negative_real(
                "reconstruction_weight", self.reconstruction_weight
            ),
            "center_weight": check_non_negative_real("center_weight", self.center_weight),
            "center_alpha": _check_alpha(self.center_alpha),
        }

    def _build_model(self, keras, n_features, n_speakers, params):
        from keras_spk.layers import CenterLoss
        from keras_spk.layers import SoftmaxHead

        # === Layers ===
        regularizer = kernel_regularizer(params["weight_decay"])

        def dense(units, name):
            return keras.layers.Dense(units, kernel_regularizer=regularizer, name=name)

        def leaky_relu(name):
            return keras.layers.LeakyReLU(negative_slope=params["negative_slope"], name=name)

        # === Functional Model ===
        inputs = keras.Input(shape=(n_features,), name="embeddings")
        speakers = keras.Input(shape=(), dtype="int32", name="speakers")
        x = inputs
        for i, units in enumerate(params["hidden_units"]):
            x = leaky_relu(f"encoder_leaky_relu_{i}")(dense(units, f"encoder_dense_{i}")(x))
        code = dense(params["n_components"], "code")(x)

        discriminated = code
        if params["center_weight"]:
            discriminated = CenterLoss(
                n_speakers,
                alpha=params["center_alpha"],
                weight=params["center_weight"],
                reduction="mean",
                name="center_loss",
            )([code, speakers])
        logits = SoftmaxHead(n_speakers, kernel_regularizer=regularizer, name="speaker_softmax")(
            [discriminated, speakers]
        )

        x = code
        for i, units in reversed(list(enumerate(params["hidden_units"]))):
            x = leaky_relu(f"decoder_leaky_relu_{i}")(dense(units, f"decoder_dense_{i}")(x))
        reconstruction = dense(n_features, "reconstruction")(x)
        outputs = [logits]
        if params["reconstruction_weight"]:
            reconstruction = _reconstruction_loss_class()(
                params["reconstruction_weight"], name="reconstruction_loss"
            )([inputs, reconstruction])
            outputs.append(reconstruction)

        trainer = keras.Model([inputs, speakers], outputs, name="dcae_trainer")
        encoder = keras.Model(inputs, code, name="dcae_encoder")
        return trainer, encoder

    def fit(self, X, y):
        """Builds and trains the auto-encoder.

        Args:
            X: `(n_samples, n_features)` training embeddings.
            y: `(n_samples,)` speaker labels (any sortable labels); at least
                2 speakers.

        Returns:
            `self`.
        """
        params = self._checked_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        classes, speakers = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                "DCAE needs embeddings of at least 2 speakers to learn a discriminative "
                f"code. Received: {X.shape[0]} sample(s) of 1 class (speaker) {classes[0]!r}"
            )
        X = X.astype(np.float64)
        mean = X.mean(axis=0)
        rms = float(np.sqrt(np.mean(np.square(X - mean))))
        scale = rms if rms > 0.0 else 1.0  # constant embeddings: nothing to rescale

        keras = seeded_keras(self.seed)
        trainer, encoder = self._build_model(keras, X.shape[1], classes.shape[0], params)
        # XLA compilation of a model this small costs more time than it saves.
        loss_curve = train_model(
            trainer,
            [((X - mean) / scale).astype(np.float32), speakers.reshape(-1).astype(np.int32)],
            None,
            params,
            verbose=self.verbose,
            jit_compile=False,
        )
        self.mean_ = mean
        self.scale_ = scale
        self.classes_ = classes
        self.encoder_ = encoder
        self.loss_curve_ = loss_curve
        self.n_components_ = params["n_components"]
        return self

    def transform(self, X):
        """The codes (enhanced embeddings) of `X`.

        Args:
            X: `(n_samples, n_features_in_)` embeddings.

        Returns:
            `(n_samples, n_components_)` float64 array.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        Z = ((X.astype(np.float64) - self.mean_) / self.scale_).astype(np.float32)
        return predict_in_chunks(self.encoder_, Z)
