"""tf.data pipelines for training and evaluation.

Training: shuffle -> parallel file reads -> batch -> parse, random
fixed-length crop and decode for the whole batch (utterances shorter than
the crop are repeated end to end until long enough, as the RawNet and FPM
papers do) -> prefetch. Every random choice derives from one seed, so a run
repeats exactly; shuffling and crops change from epoch to epoch.

Evaluation: whole utterances, one at a time or in length buckets with
their true lengths.
"""

import numpy as np
import tensorflow as tf

from keras_spk.data import audio
from keras_spk.data.audio import load_audio
from keras_spk.data.sampler import PKSampler
from keras_spk.data.shards import read_contents

AUTOTUNE = tf.data.AUTOTUNE


def crop_or_repeat(waveform, length, seed):
    """A `length`-sample window of `waveform`, repeating short utterances.

    An utterance of `n >= length` samples gives a plain random crop starting
    at a uniform offset in `[0, n - length]`. A shorter one is repeated end
    to end and the window starts at a uniform offset in `[0, n - 1]`, i.e.
    a uniformly random rotation of the repeated utterance.

    Args:
        waveform: float32 [samples], samples > 0.
        length: int, crop length in samples.
        seed: int32/int64 [2] stateless random seed.

    Returns:
        float32 [length].
    """
    n = tf.shape(waveform)[0]
    short = n < length
    span = tf.where(short, n, n - length + 1)
    # Enough copies for a window of `length` to start anywhere in the first copy.
    repeats = tf.where(short, (length + n - 1) // n + 1, 1)
    tiled = tf.tile(waveform, [repeats])
    offset = tf.random.stateless_uniform([], seed, minval=0, maxval=span, dtype=tf.int32)
    return tf.reshape(tiled[offset : offset + length], [length])


def _decode_and_crop_graph(contents, path, crop_samples, seed, sample_rate):
    return crop_or_repeat(audio.decode_audio(contents, path, sample_rate), crop_samples, seed)


# Behind a never-inlined call, so batches without such files do not pay for it
# (see keras_spk.data.audio._decode_any_call).
_decode_and_crop = tf.function(
    _decode_and_crop_graph, autograph=False, experimental_attributes={"_noinline": True}
)


def crop_batch(contents, paths, seed, crop_samples, sample_rate=16000, rows=None):
    """`crop_or_repeat`-style crops of a batch of files from their raw contents.

    Plain 16-bit WAVs at least `crop_samples` long (nearly every file of a
    prepared corpus; see `audio.plain_wav_samples`) are checked and cropped
    for the whole batch at once, decoding only the cropped bytes: graph ops
    in tf.data cost microseconds each, so batch-wide work is what makes the
    pipeline fast. Any other file goes through `decode_audio` and
    `crop_or_repeat` on its own, with all their checks.

    Args:
        contents: string [batch], whole files.
        paths: string [batch], for error messages.
        seed: int64 [2], the batch's stateless seed.
        crop_samples: int.
        sample_rate: int.
        rows: `None`, or `(start, global_batch)`: the batch is rows
            `start .. start + batch - 1` of a batch of `global_batch` rows
            (one worker's share in data-parallel training). Every random
            draw is made for the global batch and sliced, so the workers'
            crops together are exactly those of the whole batch.

    Returns:
        float32 [batch, crop_samples].
    """
    plain, n = audio.plain_wav_samples(contents, sample_rate)
    fast = tf.logical_and(plain, n >= crop_samples)
    batch = tf.shape(contents)[0]
    start, drawn = (0, batch) if rows is None else rows
    u = tf.random.stateless_uniform([drawn], seed, dtype=tf.float64)[start : start + batch]
    span = tf.maximum(n - crop_samples + 1, 1)
    offset = tf.minimum(tf.cast(u * tf.cast(span, tf.float64), tf.int64), span - 1)
    raw = tf.strings.substr(
        contents,
        tf.where(fast, 44 + 2 * offset, 0),
        tf.where(fast, tf.cast(2 * crop_samples, tf.int64), 0),
    )
    raw = tf.where(fast, raw, b"\0" * (2 * crop_samples))
    crops = tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) * (1.0 / 32768.0)

    def with_general_rows():
        rows = tf.where(tf.logical_not(fast))[:, 0]
        row_seeds = tf.random.stateless_uniform(
            [drawn, 2], seed[::-1], minval=None, maxval=None, dtype=tf.int64
        )[start : start + batch]
        general = tf.map_fn(
            lambda i: _decode_and_crop(
                contents[i], paths[i], crop_samples, row_seeds[i], sample_rate
            ),
            rows,
            fn_output_signature=tf.TensorSpec([crop_samples], tf.float32),
        )
        return tf.tensor_scatter_nd_update(crops, rows[:, None], general)

    crops = tf.cond(tf.reduce_all(fast), lambda: crops, with_general_rows)
    return tf.reshape(crops, [-1, crop_samples])


def contents_reader(paths):
    """The graph function reading the files of `paths`: `tf.io.read_file`, or `read_contents`
    when a path is a shard reference (so plain files do not pay for telling them apart)."""
    from keras_spk.data.shards import SCHEME

    return read_contents if any(p.startswith(SCHEME) for p in paths) else tf.io.read_file


def check_replica(replica, batch_size):
    """`None`, or `(index, count)` checked: worker `index` of `count` takes an equal share of each batch."""
    if replica is None:
        return None
    valid = (
        isinstance(replica, (tuple, list))
        and len(replica) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in replica)
        and 0 <= replica[0] < replica[1]
    )
    if not valid:
        raise ValueError(
            "replica must be None or (index, count) with 0 <= index < count. "
            f"Received: replica={replica!r}"
        )
    index, count = int(replica[0]), int(replica[1])
    if batch_size % count:
        raise ValueError(
            f"The batch of {batch_size} does not split evenly over {count} data-parallel workers: "
            f"make the batch size a multiple of {count}. Received: batch_size={batch_size}"
        )
    return index, count


def _read_and_crop(
    dataset,
    crop_samples,
    batch_size,
    sample_rate,
    seeds,
    drop_remainder,
    num_parallel_calls,
    transform=None,
    augment=None,
    replica=None,
    read=read_contents,
):
    """(path, label) elements -> batches of (crops, labels); `seeds`: one int64 [2] per batch.

    `read` maps a path to the file's bytes (`contents_reader(paths)`).

    `augment` (a `keras_spk.data.augment.Augmentation`), when given, maps
    the crops (read `augment.read_samples(crop_samples)` long) and labels
    of each batch. `transform`, when given, then maps `(crops, labels,
    seed)` to the element, inside the same parallel map. With `replica=
    (index, count)` (data-parallel training: batches of full batches
    only), the worker reads only its share of each batch of `batch_size`:
    rows `index * b .. (index + 1) * b - 1`, `b = batch_size // count`,
    cropped and augmented exactly as they are in the whole batch.
    """
    replica = check_replica(replica, batch_size)
    read_samples = crop_samples if augment is None else augment.read_samples(crop_samples)
    rows = None
    if replica is not None:
        if not drop_remainder:
            raise ValueError("Data-parallel reading (replica) needs drop_remainder=True.")
        share = batch_size // replica[1]
        start = replica[0] * share
        rows = (start, batch_size)
        dataset = dataset.enumerate().filter(
            lambda i, element: tf.logical_and(i % batch_size >= start, i % batch_size < start + share)
        )
        dataset = dataset.map(lambda i, element: element)
        batch_size = share
    dataset = dataset.map(
        lambda path, label: (read(path), path, label),
        num_parallel_calls=num_parallel_calls,
        deterministic=True,
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = tf.data.Dataset.zip((dataset, seeds))

    def crop(batch, seed):
        crops = crop_batch(batch[0], batch[1], seed, read_samples, sample_rate, rows=rows)
        labels = batch[2]
        if augment is not None:
            crops, labels = augment(
                crops, labels, tf.random.experimental.stateless_fold_in(seed, 7), rows=rows
            )
        return (crops, labels) if transform is None else transform(crops, labels, seed)

    dataset = dataset.map(crop, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.prefetch(AUTOTUNE)


def _seeds(seed):
    # A fresh random int64 pair per batch; a new stream on every pass (epoch).
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


# The largest epoch number of an endless epoch stream (`start_epoch`).
_LAST_EPOCH = 2**31 - 1


def _epoch_seed(seed, epoch):
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _check_start_epoch(start_epoch):
    if start_epoch is not None and (
        not isinstance(start_epoch, (int, np.integer))
        or isinstance(start_epoch, bool)
        or start_epoch < 0
    ):
        raise ValueError(
            f"`start_epoch` must be None or an int >= 0. Received: start_epoch={start_epoch!r}"
        )
    return None if start_epoch is None else int(start_epoch)


def _batch_seeds(seed, steps, start_epoch):
    """The crop seed of every batch of an epoch stream: that of batch `j` of epoch `e`
    depends only on `(seed, e, j)`."""

    def batch_seed(step):
        epoch, j = step // steps, step % steps
        return tf.random.stateless_uniform(
            [2], _epoch_seed(seed, epoch) + tf.stack([tf.constant(0, tf.int64), j + 1]),
            minval=None, maxval=None, dtype=tf.int64,
        )

    return tf.data.Dataset.range(start_epoch * steps, _LAST_EPOCH).map(batch_seed)


def _epoch_stream(paths, labels, batch_size, seed, shuffle, start_epoch):
    """Endless (path, label) elements, epoch after epoch from `start_epoch`.

    Epoch `e` holds `len(paths) // batch_size` full batches in an order that
    depends only on `(seed, e)`; the crop seed of its `j`-th batch depends
    only on `(seed, e, j)`. So a run resumed at epoch `e` sees exactly the
    data it would have seen without the interruption.
    """
    n = len(paths)
    steps = n // batch_size
    if steps == 0:
        raise ValueError(
            f"`start_epoch` needs at least one full batch per epoch: {n} file(s) for "
            f"batch_size={batch_size}. Use a smaller batch size."
        )
    paths_t = tf.constant(paths)
    labels_t = tf.constant(labels, tf.int64)

    def epoch_order(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, _epoch_seed(seed, epoch))
        order = order[: steps * batch_size]
        # One gather per epoch, not one map call per element.
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths_t, order), tf.gather(labels_t, order))
        )

    elements = tf.data.Dataset.range(start_epoch, _LAST_EPOCH).flat_map(epoch_order)
    return elements, _batch_seeds(seed, steps, start_epoch), steps


def _sampled_stream(epoch_indices, size, paths, labels, seed, start_epoch):
    """(path, label) elements drawn by a NumPy epoch sampler, and one crop seed per batch.

    `epoch_indices(epoch)` gives the file indices of a whole epoch (`size`
    of them), drawn at once when the epoch starts, so a batch costs no
    Python. With `start_epoch=e`: epochs `e, e + 1, ...` and the crop
    seeds of `_batch_seeds`, all functions of `(seed, epoch)`. With `None`:
    one epoch, whose number is drawn afresh on every pass over the dataset.
    """
    if start_epoch is None:
        epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        epochs = epochs.map(lambda s: tf.math.floormod(s, _LAST_EPOCH))
    else:
        epochs = tf.data.Dataset.range(start_epoch, _LAST_EPOCH)

    def draw(epoch):
        return np.asarray(epoch_indices(int(epoch)), np.int64).reshape(-1)

    paths_t = tf.constant(paths)
    labels_t = tf.constant(labels, tf.int64)

    def epoch_elements(epoch):
        indices = tf.numpy_function(draw, [epoch], tf.int64, stateful=False)
        indices = tf.reshape(indices, [size])
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths_t, indices), tf.gather(labels_t, indices))
        )

    return epochs.flat_map(epoch_elements)


def training_dataset(
    paths,
    labels,
    crop_samples,
    batch_size,
    sample_rate=16000,
    seed=0,
    shuffle=True,
    drop_remainder=True,
    num_parallel_calls=AUTOTUNE,
    start_epoch=None,
    augment=None,
    replica=None,
):
    """Random fixed-length crops with their speaker labels, batched.

    By default the dataset is one pass (epoch) over the files, reshuffled and
    re-cropped on every iteration: give it to `model.fit` as is. With
    `start_epoch=e` it is instead an endless stream of epochs `e, e + 1, ...`
    in which each epoch's order and crops depend only on `(seed, epoch)`;
    give it to `model.fit(..., initial_epoch=e,
    steps_per_epoch=len(paths) // batch_size)`. A training run resumed from
    a checkpoint at epoch `e` then sees exactly the batches an uninterrupted
    run would have seen.

    Args:
        paths: list of audio file paths.
        labels: int speaker index of each path.
        crop_samples: crop length in samples.
        batch_size: int.
        sample_rate: files at another rate are resampled to it.
        seed: int; fixes the shuffle order and the crops.
        shuffle: shuffle the whole list every epoch.
        drop_remainder: drop the last incomplete batch.
        num_parallel_calls: decode parallelism.
        start_epoch: `None` (one pass per iteration), or an int >= 0: the
            first epoch of an endless, resumable stream of epochs (each of
            `len(paths) // batch_size` full batches; `drop_remainder` must
            be true).
        augment: `None`, or a `keras_spk.data.augment.Augmentation` applied
            to every batch (its random draws follow the batch's seed, so
            they repeat with the data).
        replica: `None`, or `(index, count)` for data-parallel training:
            this worker's share of every batch (see `_read_and_crop`);
            `batch_size` is the global batch, a multiple of `count`, and
            `start_epoch` must be set.

    Returns:
        A `tf.data.Dataset` of `(waveforms [batch, crop_samples] float32,
        labels [batch] int64)`.
    """
    paths, labels = _check_lists(paths, labels)
    start_epoch = _check_start_epoch(start_epoch)
    if start_epoch is not None:
        if not drop_remainder:
            raise ValueError(
                "`start_epoch` streams whole epochs of full batches; it needs drop_remainder=True."
            )
        dataset, seeds, _ = _epoch_stream(paths, labels, batch_size, seed, shuffle, start_epoch)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        seeds = _seeds(seed)
    if replica is not None and start_epoch is None:
        raise ValueError("Data-parallel reading (replica) needs a resumable stream: set start_epoch.")
    return _read_and_crop(
        dataset, crop_samples, batch_size, sample_rate, seeds, drop_remainder, num_parallel_calls,
        augment=augment, replica=replica, read=contents_reader(paths),
    )


def pk_dataset(
    paths,
    labels,
    crop_samples,
    num_speakers,
    num_utterances,
    sample_rate=16000,
    seed=0,
    num_parallel_calls=AUTOTUNE,
    start_epoch=None,
    steps_per_epoch=None,
    augment=None,
    replica=None,
):
    """P speakers x K utterances batches of random crops (see `PKSampler`).

    An epoch is `len(PKSampler)` batches: `len(paths) // (P*K)` unless
    `steps_per_epoch` says otherwise. By default each pass over the dataset
    is one sampler epoch, a different one on every pass. With
    `start_epoch=e` the dataset is instead an endless stream of epochs
    `e, e + 1, ...` whose batches and crops depend only on `(seed, epoch)`,
    like `training_dataset`'s: give it to `model.fit(..., initial_epoch=e,
    steps_per_epoch=len(PKSampler(...)))`.

    Args:
        paths: list of audio file paths.
        labels: int speaker index of each path.
        crop_samples: crop length in samples.
        num_speakers: P, distinct speakers per batch.
        num_utterances: K, utterances per speaker.
        sample_rate: files at another rate are resampled to it.
        seed: int; fixes the batches and the crops.
        num_parallel_calls: decode parallelism.
        start_epoch: `None` (one epoch per pass), or an int >= 0: the first
            epoch of an endless, resumable stream.
        steps_per_epoch: `None` or an int >= 1, batches per epoch.
        augment: `None` or a `keras_spk.data.augment.Augmentation`.
        replica: `None` or `(index, count)`: this worker's share of each
            batch (`training_dataset`); P*K must be a multiple of `count`.

    Returns:
        A `tf.data.Dataset` of `(waveforms [P*K, crop_samples], labels [P*K])`,
        rows grouped speaker by speaker.
    """
    return _pk_dataset(
        paths, labels, crop_samples, num_speakers, num_utterances, sample_rate, seed,
        num_parallel_calls, start_epoch, steps_per_epoch, augment, replica,
    )[0]


def _pk_dataset(
    paths, labels, crop_samples, num_speakers, num_utterances, sample_rate, seed,
    num_parallel_calls, start_epoch, steps_per_epoch, augment=None, replica=None,
):
    """`pk_dataset` and its steps per epoch."""
    paths, labels = _check_lists(paths, labels)
    start_epoch = _check_start_epoch(start_epoch)
    sampler = PKSampler(
        labels, num_speakers, num_utterances, seed=seed, steps_per_epoch=steps_per_epoch
    )
    steps = len(sampler)
    dataset = _sampled_stream(
        sampler.epoch_indices, steps * sampler.batch_size, paths, labels, seed, start_epoch
    )
    seeds = _seeds(seed + 1) if start_epoch is None else _batch_seeds(seed, steps, start_epoch)
    if replica is not None and start_epoch is None:
        raise ValueError("Data-parallel reading (replica) needs a resumable stream: set start_epoch.")
    if replica is not None and sampler.num_speakers % check_replica(replica, sampler.batch_size)[1]:
        raise ValueError(
            f"P x K batches split over {replica[1]} data-parallel workers must give each worker "
            f"whole speakers (K utterances each): make num_speakers (P) a multiple of {replica[1]}. "
            f"Received: num_speakers={sampler.num_speakers}"
        )
    dataset = _read_and_crop(
        dataset, crop_samples, sampler.batch_size, sample_rate, seeds, True, num_parallel_calls,
        augment=augment, replica=replica, read=contents_reader(paths),
    )
    return dataset, steps


def evaluation_dataset(paths, sample_rate=16000, batch_size=1, bucket_boundaries=None):
    """Whole utterances for embedding extraction, in a fixed order.

    With `batch_size=1` (default) each element is one utterance
    `[1, samples]`. With a larger batch size utterances are grouped by
    length (`bucket_boundaries` in samples, default 2/4/8/16 s) and
    zero-padded; the true lengths come alongside.

    Returns:
        A `tf.data.Dataset` of `(index [batch] int64, waveforms [batch, samples],
        lengths [batch] int32)`; `index` is the position in `paths`, since
        bucketing changes the order.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("evaluation_dataset needs at least one path. Received an empty list.")
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
    dataset = dataset.map(
        lambda i, p: (i, load_audio(p, sample_rate)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.map(lambda i, w: (i, w, tf.shape(w)[0]))
    if batch_size == 1:
        dataset = dataset.map(lambda i, w, n: (i[None], w[None], n[None]))
    else:
        if bucket_boundaries is None:
            bucket_boundaries = [sample_rate * s for s in (2, 4, 8, 16)]
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda i, w, n: n,
            bucket_boundaries=list(bucket_boundaries),
            bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
            padded_shapes=([], [None], []),
        )
    return dataset.prefetch(AUTOTUNE)


def _check_lists(paths, labels):
    paths = [str(p) for p in paths]
    labels = np.asarray(labels, dtype=np.int64)
    if not paths:
        raise ValueError("The training list is empty. Received 0 paths.")
    if labels.shape != (len(paths),):
        raise ValueError(
            "labels must hold one speaker index per path. "
            f"Received: {len(paths)} paths, labels of shape {labels.shape}"
        )
    return paths, labels
