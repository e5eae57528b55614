"""Reading audio files as TensorFlow graph ops.

Everything here runs inside `tf.data` pipelines (and in eager mode):
`decode_audio` turns the bytes of a file into a mono float32 waveform in
[-1, 1] at the requested sample rate.

* WAV is parsed by our own graph-op reader (RIFF chunk walk), so 8-bit,
  16-bit, 24-bit and 32-bit PCM, 32/64-bit IEEE float and
  `WAVE_FORMAT_EXTENSIBLE` files all decode, with any extra chunks.
* FLAC, Ogg Vorbis and MP3 are decoded by tensorflow-io; their sample rate
  and channel count are read from the stream header by graph ops.
* Several channels are mixed down to mono by averaging.
* A file whose rate differs from the target is resampled with a windowed-sinc
  interpolator (`resample`).

Bad files never pass silently: a missing, empty, truncated or non-audio
file, an unsupported encoding, or NaN/Inf samples make the op fail with an
`InvalidArgumentError` whose message names the file and the problem. The
eager helper `read_audio` turns that into an `AudioError`.
"""

import math
import os

import tensorflow as tf

from keras_spk.data.formats import SUPPORTED_EXTENSIONS  # noqa: F401 (re-exported)
from keras_spk.data.wav import write_wav  # noqa: F401 (re-exported)


# Problems a file can have; the index is the code carried through the graph.
_PROBLEMS = (
    "",
    "file is empty (0 bytes)",
    "not a supported audio file (expected WAV, FLAC, Ogg Vorbis or MP3 content)",
    "WAV file has no 'fmt ' or 'data' chunk (corrupt or truncated header)",
    "unsupported WAV encoding (use PCM 8/16/24/32-bit or float 32/64-bit)",
    "corrupt header: zero channels or a zero sample rate",
    "file is truncated: the WAV data chunk is longer than the file",
    "file is truncated: the WAV data ends inside a sample frame",
    "Ogg file does not hold a Vorbis stream (only Vorbis is supported)",
    "no MPEG audio frame after the ID3 tag (corrupt MP3)",
    "corrupt FLAC header (zero sample rate)",
    "file holds no audio samples (empty or truncated)",
    "audio contains NaN or Inf samples",
)
(
    _OK,
    _EMPTY_FILE,
    _NOT_AUDIO,
    _NO_CHUNKS,
    _BAD_ENCODING,
    _ZERO_FIELDS,
    _TRUNCATED,
    _PARTIAL_FRAME,
    _NOT_VORBIS,
    _NO_MP3_FRAME,
    _BAD_FLAC,
    _NO_SAMPLES,
    _NOT_FINITE,
) = range(len(_PROBLEMS))

# WAV sample encodings, in the order of the decoder branches.
_PCM_U8, _PCM_16, _PCM_24, _PCM_32, _FLOAT_32, _FLOAT_64 = range(6)
# Decoder branches: invalid input, the six WAV encodings with the header found
# by the fast path, WAV needing a full chunk walk, FLAC, Ogg Vorbis, MP3.
_INVALID, _WAV_FAST, _WAV_WALK, _FLAC, _OGG, _MP3 = 0, 1, 7, 8, 9, 10


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and the fix."""


# === Byte helpers ===
def _substr(contents, offset, length):
    """Like `tf.strings.substr`, but an offset past the end gives an empty string."""
    end = tf.cast(tf.strings.length(contents), tf.int64)
    offset = tf.clip_by_value(tf.cast(offset, tf.int64), 0, end)
    return tf.strings.substr(contents, offset, length)


def _bytes(contents, offset, length):
    """`length` bytes at `offset` as int64 (zeros past the end of the file)."""
    piece = tf.io.decode_raw(_substr(contents, offset, length), tf.uint8)
    return tf.cast(tf.pad(piece, [[0, length - tf.shape(piece)[0]]]), tf.int64)


def _uint_le(contents, offset, num_bytes):
    """Little-endian unsigned integer of `num_bytes` bytes at `offset` (int64)."""
    weights = tf.constant([256**i for i in range(num_bytes)], tf.int64)
    return tf.reduce_sum(_bytes(contents, offset, num_bytes) * weights)


def _first_problem(*pairs):
    """The code of the first (condition, code) pair whose condition holds, else _OK."""
    code = tf.constant(_OK)
    for condition, problem in reversed(pairs):
        code = tf.where(condition, tf.cast(problem, tf.int32), code)
    return code


# === WAV ===
def _wav_chunk(contents, offset):
    """(id, data offset, size, next chunk offset) of the RIFF chunk at `offset`."""
    size = _uint_le(contents, offset + 4, 4)
    # Chunks are padded to an even number of bytes.
    return _substr(contents, offset, 4), offset + 8, size, offset + 8 + size + size % 2


# Little-endian words read from the first 64 bytes in one gather: (offset, bytes).
# The last two are the 'data' chunk id and size when 'fmt ' has the usual 16 bytes.
_HEAD_WORDS = (
    (0, 4), (8, 4), (12, 4), (16, 4), (20, 2), (22, 2), (24, 4), (34, 2), (44, 2), (36, 4), (40, 4)
)
_RIFF, _WAVE, _FMT, _DATA = 0x46464952, 0x45564157, 0x20746D66, 0x61746164
_FLAC_MAGIC, _OGG_MAGIC = 0x43614C66, 0x5367674F
_HEAD_BYTES = 64
_ZERO_HEAD = b"\0" * _HEAD_BYTES


def _head_words(head):
    """The `_HEAD_WORDS` fields of file heads [..., 64] (int64), as [..., 11]."""
    # Index _HEAD_BYTES points at an appended zero, padding 2-byte fields to 4.
    index = [[o + i if i < n else _HEAD_BYTES for i in range(4)] for o, n in _HEAD_WORDS]
    padded = tf.concat([head, tf.zeros_like(head[..., :1])], -1)
    weights = tf.constant([1, 256, 65536, 16777216], tf.int64)
    return tf.reduce_sum(tf.gather(padded, index, axis=-1) * weights, axis=-1)


def _wav_layout_walk(contents, length):
    """Walks every RIFF chunk; returns (fmt, data, size) offsets, -1 where missing."""

    def cond(offset, fmt, data, size):
        return tf.logical_and(offset + 8 <= length, tf.logical_or(fmt < 0, data < 0))

    def body(offset, fmt, data, size):
        chunk_id, start, chunk_size, following = _wav_chunk(contents, offset)
        is_fmt = tf.logical_and(tf.equal(chunk_id, "fmt "), fmt < 0)
        is_data = tf.logical_and(tf.equal(chunk_id, "data"), data < 0)
        return (
            following,
            tf.where(is_fmt, start, fmt),
            tf.where(is_data, start, data),
            tf.where(is_data, chunk_size, size),
        )

    minus_one = tf.constant(-1, tf.int64)
    _, fmt, data, size = tf.while_loop(
        cond, body, [tf.constant(12, tf.int64), minus_one, minus_one, minus_one]
    )
    return fmt, data, size


def _wav_fields(audio_format, channels, rate, bits, sub_format, length, fmt, data, size):
    """Checks a WAV header; returns (encoding, channels, size, problem)."""
    # WAVE_FORMAT_EXTENSIBLE keeps the real format in its sub-format GUID.
    audio_format = tf.where(tf.equal(audio_format, 0xFFFE), sub_format, audio_format)
    pcm, ieee = tf.equal(audio_format, 1), tf.equal(audio_format, 3)
    encoding = tf.constant(-1)
    for code, is_format, depth in [
        (_PCM_U8, pcm, 8),
        (_PCM_16, pcm, 16),
        (_PCM_24, pcm, 24),
        (_PCM_32, pcm, 32),
        (_FLOAT_32, ieee, 32),
        (_FLOAT_64, ieee, 64),
    ]:
        encoding = tf.where(tf.logical_and(is_format, tf.equal(bits, depth)), code, encoding)
    # Streaming writers leave the size unset (0xFFFFFFFF): the data runs to the end.
    size = tf.where(tf.equal(size, 0xFFFFFFFF), length - data, size)
    block = tf.maximum(channels * (bits // 8), 1)
    problem = _first_problem(
        (tf.logical_or(fmt < 0, data < 0), _NO_CHUNKS),
        (encoding < 0, _BAD_ENCODING),
        (tf.logical_or(tf.equal(channels, 0), tf.equal(rate, 0)), _ZERO_FIELDS),
        (data + size > length, _TRUNCATED),
        (tf.not_equal(size % block, 0), _PARTIAL_FRAME),
    )
    return encoding, tf.maximum(channels, 1), size, problem


def _wav_header(contents, length, fmt, data, size):
    """Reads the 'fmt ' chunk at `fmt`; returns (encoding, channels, rate, size, problem)."""
    f = _bytes(contents, tf.maximum(fmt, 0), 26)
    rate = f[4] + 256 * f[5] + 65536 * f[6] + 16777216 * f[7]
    encoding, channels, size, problem = _wav_fields(
        f[0] + 256 * f[1],
        f[2] + 256 * f[3],
        rate,
        f[14] + 256 * f[15],
        f[24] + 256 * f[25],
        length,
        fmt,
        data,
        size,
    )
    return encoding, channels, rate, size, problem


def _decode_pcm(contents, data, size, encoding, channels):
    """Samples [frames, channels] float32 of a valid WAV data chunk (static `encoding`)."""
    raw = tf.strings.substr(contents, data, size)
    if encoding == _PCM_U8:
        x = (tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.float32) - 128.0) / 128.0
    elif encoding == _PCM_16:
        x = tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) / 32768.0
    elif encoding == _PCM_24:
        b = tf.reshape(tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int32), [-1, 3])
        value = b[:, 0] + b[:, 1] * 256 + b[:, 2] * 65536
        value = tf.where(value >= 2**23, value - 2**24, value)
        x = tf.cast(value, tf.float32) / float(2**23)
    elif encoding == _PCM_32:
        x = tf.cast(tf.io.decode_raw(raw, tf.int32), tf.float32) / float(2**31)
    elif encoding == _FLOAT_32:
        x = tf.io.decode_raw(raw, tf.float32)
    else:
        x = tf.cast(tf.io.decode_raw(raw, tf.float64), tf.float32)
    return tf.reshape(x, [-1, tf.cast(channels, tf.int32)])


def _decode_wav_walk(contents, length):
    """WAV with chunks the fast path does not cover; returns (samples, rate, problem)."""
    fmt, data, size = _wav_layout_walk(contents, length)
    encoding, channels, rate, size, problem = _wav_header(contents, length, fmt, data, size)
    index = tf.where(tf.equal(problem, _OK), encoding + 1, 0)
    branches = [lambda: tf.zeros([1, 1])] + [
        (lambda e=e: _decode_pcm(contents, data, size, e, channels)) for e in range(6)
    ]
    return tf.switch_case(index, branches), rate, problem


# === Compressed formats (tensorflow-io) ===
def _tfio():
    # Imported lazily: loading tensorflow-io's kernels takes a moment and WAV needs none.
    import tensorflow_io as tfio

    return tfio


def _flac_header(contents):
    # STREAMINFO follows "fLaC" and a 4-byte block header; the sample rate (20 bits),
    # channels-1 (3 bits) and bits-per-sample-1 (5 bits) start at byte 18.
    b = _bytes(contents, 18, 4)
    rate = b[0] * 4096 + b[1] * 16 + b[2] // 16
    bits = (b[2] % 2) * 16 + b[3] // 16 + 1
    return rate, bits


def _decode_flac(contents):
    """FLAC via tensorflow-io; returns (samples, rate, problem)."""
    rate, bits = _flac_header(contents)
    tfio = _tfio()
    samples = tf.cond(
        bits <= 16,
        lambda: tf.cast(tfio.audio.decode_flac(contents, dtype=tf.int16), tf.float32) / 32768.0,
        # tensorflow-io left-aligns deeper samples in int32.
        lambda: tf.cast(tfio.audio.decode_flac(contents, dtype=tf.int32), tf.float32)
        / float(2**31),
    )
    return samples, rate, _first_problem((tf.equal(rate, 0), _BAD_FLAC))


def _decode_ogg(contents):
    """Ogg Vorbis via tensorflow-io; returns (samples, rate, problem)."""
    is_vorbis, rate = _ogg_header(contents)
    samples = tf.cond(
        is_vorbis, lambda: _tfio().audio.decode_vorbis(contents), lambda: tf.zeros([1, 1])
    )
    return samples, rate, _first_problem((tf.logical_not(is_vorbis), _NOT_VORBIS))


def _decode_mp3(contents):
    """MP3 via tensorflow-io; returns (samples, rate, problem)."""
    ok, rate = _mp3_header(contents)
    samples = tf.cond(ok, lambda: _tfio().audio.decode_mp3(contents), lambda: tf.zeros([1, 1]))
    return samples, rate, _first_problem((tf.logical_not(ok), _NO_MP3_FRAME))


def _ogg_header(contents):
    # The Vorbis identification packet starts after the 27-byte page header and its
    # segment table: "\x01vorbis", version (4), channels (1), sample rate (4).
    packet = 27 + _bytes(contents, 26, 1)[0]
    is_vorbis = tf.equal(_substr(contents, packet, 7), "\x01vorbis")
    return is_vorbis, _uint_le(contents, packet + 12, 4)


_MP3_RATES = (
    # Rows: the 2-bit version field (MPEG-2.5, reserved, MPEG-2, MPEG-1); columns: rate index.
    (11025, 12000, 8000, 0),
    (0, 0, 0, 0),
    (22050, 24000, 16000, 0),
    (44100, 48000, 32000, 0),
)


def _mp3_header(contents):
    # Skip an ID3v2 tag (10-byte header, syncsafe size), then read the first frame header.
    has_id3 = tf.equal(tf.strings.substr(contents, 0, 3), "ID3")
    s = _bytes(contents, 6, 4)
    tag = tf.where(has_id3, 10 + s[0] * 2**21 + s[1] * 2**14 + s[2] * 2**7 + s[3], tf.zeros_like(s[0]))
    h = _bytes(contents, tag, 4)
    synced = tf.logical_and(tf.equal(h[0], 0xFF), h[1] >= 0xE0)
    rate = tf.gather(tf.reshape(tf.constant(_MP3_RATES, tf.int64), [-1]), ((h[1] // 8) % 4) * 4 + (h[2] // 4) % 4)
    return tf.logical_and(synced, rate > 0), rate


# === Resampling ===
def resample(waveform, rate_in, rate_out, taps=32, kaiser_beta=8.0):
    """Resamples a 1-D waveform by windowed-sinc interpolation.

    Output sample `n` sits at input time `t = n * rate_in / rate_out` and is
    `sum_k x[k] * h(t - k)` over the `taps` input samples nearest `t`, where
    `h` is a Kaiser-windowed sinc low-pass with its cut-off at the lower of
    the two Nyquist frequencies (so downsampling does not alias).

    Args:
        waveform: float32 tensor [samples].
        rate_in: input sample rate (int or scalar tensor).
        rate_out: output sample rate (int or scalar tensor).
        taps: filter length in input samples at unit cut-off (even).
        kaiser_beta: Kaiser window shape.

    Returns:
        float32 tensor [ceil(samples * rate_out / rate_in)].
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    rate_in = tf.cast(rate_in, tf.float64)
    rate_out = tf.cast(rate_out, tf.float64)
    n_in = tf.shape(waveform, out_type=tf.int64)[0]
    n_out = tf.cast(tf.math.ceil(tf.cast(n_in, tf.float64) * rate_out / rate_in), tf.int64)
    ratio = rate_in / rate_out
    # Cut-off relative to the input Nyquist; the filter widens when downsampling.
    cutoff = tf.minimum(tf.constant(1.0, tf.float64), 1.0 / ratio)
    half = tf.cast(tf.math.ceil(taps / 2 / cutoff), tf.int64)
    t = tf.cast(tf.range(n_out), tf.float64) * ratio
    base = tf.cast(tf.floor(t), tf.int64)
    k = base[:, None] + tf.range(-half + 1, half + 1, dtype=tf.int64)[None, :]
    d = t[:, None] - tf.cast(k, tf.float64)
    width = tf.cast(half, tf.float64)
    x = tf.clip_by_value(d / width, -1.0, 1.0)
    window = tf.math.bessel_i0(kaiser_beta * tf.sqrt(1.0 - x * x)) / tf.math.bessel_i0(
        tf.constant(kaiser_beta, tf.float64)
    )
    arg = math.pi * cutoff * d
    at_zero = tf.abs(arg) < 1e-12
    one = tf.ones_like(arg)
    sinc = tf.where(at_zero, one, tf.sin(arg) / tf.where(at_zero, one, arg))
    h = tf.cast(cutoff * sinc * window, tf.float32)
    valid = tf.logical_and(k >= 0, k < n_in)
    gathered = tf.gather(waveform, tf.clip_by_value(k, 0, tf.maximum(n_in - 1, 0)))
    return tf.reduce_sum(tf.where(valid, gathered * h, tf.zeros_like(h)), axis=1)


# === Public graph ops ===
def _decode_any(contents, path, sample_rate):
    """Every format and encoding, with all checks; see `decode_audio`."""
    length = tf.cast(tf.strings.length(contents), tf.int64)
    head = _bytes(contents, 0, _HEAD_BYTES)
    w = _head_words(head)
    is_wav = tf.logical_and(tf.equal(w[0], _RIFF), tf.equal(w[1], _WAVE))
    is_flac = tf.equal(w[0], _FLAC_MAGIC)
    is_ogg = tf.equal(w[0], _OGG_MAGIC)
    is_id3 = tf.reduce_all(tf.equal(head[:3], tf.constant([73, 68, 51], tf.int64)))  # "ID3"
    is_mp3 = tf.logical_or(is_id3, tf.logical_and(tf.equal(head[0], 0xFF), head[1] >= 0xE0))

    # Fast path for WAV: 'fmt ' at byte 12 and 'data' right after it; any other
    # chunk order takes the branch that walks every chunk.
    minus_one = tf.constant(-1, tf.int64)
    fmt = tf.where(tf.equal(w[2], _FMT), tf.constant(20, tf.int64), minus_one)
    chunk = _bytes(contents, 20 + w[3] + w[3] % 2, 8)
    found = tf.logical_and(
        fmt >= 0, tf.equal(chunk[0] + 256 * chunk[1] + 65536 * chunk[2] + 16777216 * chunk[3], _DATA)
    )
    data = tf.where(found, 28 + w[3] + w[3] % 2, minus_one)
    size = chunk[4] + 256 * chunk[5] + 65536 * chunk[6] + 16777216 * chunk[7]
    encoding, channels, size, wav_problem = _wav_fields(
        w[4], w[5], w[6], w[7], w[8], length, fmt, data, size
    )

    problem = _first_problem(
        (tf.equal(length, 0), _EMPTY_FILE),
        (tf.logical_not(tf.reduce_any(tf.stack([is_wav, is_flac, is_ogg, is_mp3]))), _NOT_AUDIO),
        (tf.logical_and(tf.logical_and(is_wav, found), wav_problem > 0), wav_problem),
    )
    index = tf.where(
        is_wav,
        tf.where(found, _WAV_FAST + encoding, _WAV_WALK),
        tf.where(is_flac, _FLAC, tf.where(is_ogg, _OGG, _MP3)),
    )
    index = tf.where(tf.equal(problem, _OK), index, _INVALID)

    def fixed(samples):
        return samples, w[6], problem

    branches = (
        [lambda: fixed(tf.zeros([1, 1]))]
        + [(lambda e=e: fixed(_decode_pcm(contents, data, size, e, channels))) for e in range(6)]
        + [
            lambda: _decode_wav_walk(contents, length),
            lambda: _decode_flac(contents),
            lambda: _decode_ogg(contents),
            lambda: _decode_mp3(contents),
        ]
    )
    samples, rate, problem = tf.switch_case(index, branches)
    # Mix down to mono.
    waveform = tf.reduce_mean(samples, axis=1)
    problem = _first_problem(
        (problem > 0, problem),
        (tf.equal(tf.size(waveform), 0), _NO_SAMPLES),
        (tf.logical_not(tf.reduce_all(tf.math.is_finite(waveform))), _NOT_FINITE),
    )
    message = tf.strings.join([path, ": ", tf.gather(tf.constant(_PROBLEMS), problem)])
    check = tf.debugging.Assert(tf.equal(problem, _OK), [message], summarize=1)
    with tf.control_dependencies([check]):
        return tf.cond(
            tf.equal(rate, sample_rate),
            lambda: tf.identity(waveform),
            lambda: resample(waveform, rate, sample_rate),
        )


def decode_audio(contents, path="<memory>", sample_rate=16000):
    """Decodes audio file bytes into a mono float32 waveform.

    The container is recognised from the content, not the file name. The
    common case (16-bit mono PCM WAV at `sample_rate` with a plain header)
    takes a short path of a few ops; everything else, and every error, goes
    through the general decoder, which collects all problems into one check.
    In tf.data each graph op costs microseconds, so op count is what matters
    for training throughput.

    Args:
        contents: scalar string tensor, the whole file.
        path: scalar string tensor or str naming the file in error messages.
        sample_rate: the rate the waveform is returned at; files at another
            rate are resampled.

    Returns:
        float32 tensor [samples] in [-1, 1].

    Raises:
        tf.errors.InvalidArgumentError: (when the op runs) for an empty,
            truncated, corrupt or non-audio file, an unsupported encoding, or
            NaN/Inf samples. The message names `path`.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    path = tf.convert_to_tensor(path, tf.string)
    plain, num_samples = plain_wav_samples(contents, sample_rate)
    return tf.cond(
        plain,
        lambda: pcm16_samples(contents, 0, num_samples),
        lambda: _decode_any_call(contents, path, sample_rate),
    )


def plain_wav_samples(contents, sample_rate, length=None):
    """Whether files are plain WAVs the fast path reads, and their sample counts.

    Plain means: RIFF/WAVE, a 16-byte 'fmt ' chunk at byte 12, PCM, mono,
    16-bit, `sample_rate`, and a complete 'data' chunk right after it (the
    canonical 44-byte header).

    Args:
        contents: string tensor of file contents, scalar or [batch]; only
            the first 64 bytes are read.
        sample_rate: the rate a plain file must have.
        length: int64 file lengths in bytes, when `contents` holds only
            the heads of the files (default: the lengths of `contents`).

    Returns:
        (bool, int64) tensors of the same shape as `contents`.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    # Exactly _HEAD_BYTES per file (zero-padded), so a batch decodes as one matrix.
    heads = tf.strings.substr(
        tf.strings.join([tf.strings.substr(contents, 0, _HEAD_BYTES), _ZERO_HEAD]), 0, _HEAD_BYTES
    )
    w = _head_words(tf.cast(tf.io.decode_raw(heads, tf.uint8), tf.int64))
    expected = tf.constant([_RIFF, _WAVE, _FMT, 16, 1, 1, sample_rate, 16, _DATA], tf.int64)
    fields = tf.gather(w, [0, 1, 2, 3, 4, 5, 6, 7, 9], axis=-1)
    size = w[..., 10]
    if length is None:
        length = tf.cast(tf.strings.length(contents), tf.int64)
    plain = tf.logical_and(
        tf.reduce_all(tf.equal(fields, expected), axis=-1),
        tf.logical_and(size > 1, tf.logical_and(size % 2 < 1, 44 + size <= length)),
    )
    return plain, size // 2


def pcm16_samples(contents, start, count):
    """`count` samples from sample `start` of a plain WAV (see `plain_wav_samples`)."""
    start = tf.cast(start, tf.int64)
    raw = tf.strings.substr(contents, 44 + 2 * start, 2 * tf.cast(count, tf.int64))
    return tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) / 32768.0


# The general decoder behind a call op that is never inlined: tf.data lowers a
# `tf.cond` into its graph and the executor still visits every op of the branch
# not taken, which made the common case pay for the general one.
_decode_any_call = tf.function(
    _decode_any, autograph=False, experimental_attributes={"_noinline": True}
)


def load_audio(path, sample_rate=16000):
    """Reads and decodes one audio file as a graph op (see `decode_audio`)."""
    path = tf.convert_to_tensor(path, tf.string)
    return decode_audio(tf.io.read_file(path), path, sample_rate)


def read_audio(path, sample_rate=16000):
    """Reads one audio file eagerly into a numpy array.

    Args:
        path: file path.
        sample_rate: target rate; a file at another rate is resampled.

    Returns:
        float32 numpy array [samples].

    Raises:
        AudioError: naming the file, for a missing, empty, truncated,
            corrupt or non-audio file, an unsupported encoding or NaN/Inf.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such audio file. Check the path and the data root.")
    try:
        return _load_eager(tf.constant(path), sample_rate).numpy()
    except tf.errors.OpError as error:
        raise AudioError(audio_error_message(error, path)) from None


@tf.function(reduce_retracing=True)
def _load_eager(path, sample_rate):
    return load_audio(path, sample_rate)


def audio_error_message(error, path=None):
    """The readable part of a failed audio op's message, naming the file.

    Our own checks produce "<path>: <problem>"; decoder failures from
    tensorflow-io carry only the decoder's words, so `path` is prefixed.
    """
    text = getattr(error, "message", str(error))
    if "assertion failed" in text and path is not None:
        # The assertion prints the message C-escaped (\' \" \\) and bracketed, so
        # a path holding quotes, backslashes or "]" would come out mangled:
        # rebuild it from the known path and the problem it names.
        for problem in _PROBLEMS[1:]:
            escaped = problem.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
            if f": {escaped}]" in text:
                return f"{path}: {problem}"
    if "assertion failed" in text:
        start = text.index("[", text.index("assertion failed")) + 1
        return text[start : text.index("]", start)].strip()
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("[[") and "execution error" not in line
    ]
    reason = lines[0] if lines else text.strip()
    return (
        f"{path}: cannot decode audio ({reason}); the file is corrupt or truncated. "
        "Re-encode it or remove it from the data."
    )


def find_bad_audio(paths, sample_rate=16000):
    """Decodes every file and returns `[(path, problem), ...]` for those that fail.

    Runs as one parallel tf.data pass; failing elements are dropped and
    identified by their absence, then each is re-read eagerly for its message.
    Used to name the culprit when a pipeline fails inside a decoder.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return []
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: (p, tf.size(load_audio(p, sample_rate))),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.apply(tf.data.experimental.ignore_errors())
    good = {p.decode() for p, _ in dataset.as_numpy_iterator()}
    bad = []
    for path in paths:
        if path in good:
            continue
        try:
            read_audio(path, sample_rate)
            bad.append((path, f"{path}: failed to decode inside the pipeline"))
        except AudioError as error:
            bad.append((path, str(error)))
    return bad
