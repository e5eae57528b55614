"""Reading audio files as TensorFlow graph ops.

Everything here runs inside `tf.data` pipelines (and in eager mode):
`decode_audio` turns the bytes of a file into a mono float32 waveform in
[-1, 1] at the requested sample rate.

* WAV is parsed by our own graph-op reader (RIFF chunk walk), so 8-bit,
  16-bit, 24-bit and 32-bit PCM, 32/64-bit IEEE float and
  `WAVE_FORMAT_EXTENSIBLE` files all decode, with any extra chunks.
* FLAC, Ogg (Vorbis, Opus) and MP3 are decoded by libsndfile (through
  `soundfile`, called from the graph with `tf.numpy_function`). libsndfile
  is fuzzed continuously and checks every FLAC frame's CRC, so a corrupt
  file is an error rather than a hang or silently zeroed audio; it reads
  block by block, so memory follows the audio actually decoded, never a
  size a header declares.
* Several channels are mixed down to mono by averaging.
* A file whose rate differs from the target is resampled with a windowed-sinc
  interpolator (`resample`), in blocks of bounded memory.

Bad files never pass silently: a missing, empty, truncated, corrupt or
non-audio file, an unsupported encoding, a header field outside sane
bounds (sample rate, channels, block align, chunk sizes), NaN/Inf samples
or samples far outside [-1, 1] (checked after every transform) make the op
fail with an `InvalidArgumentError` whose message names the file and the
problem. The eager helper `read_audio` turns that into an `AudioError`.
"""

import io
import math
import os

import numpy as np
import tensorflow as tf

from keras_spk.data.formats import SUPPORTED_EXTENSIONS  # noqa: F401 (re-exported)
from keras_spk.data.wav import write_wav  # noqa: F401 (re-exported)

# Bounds on what a file may declare. Rates outside them are not audio a speaker model
# can use, and a tiny rate in a corrupt header would make the resampler stretch a few
# bytes into hours; with at least 8 kHz, a 16-kHz output is at most twice the input.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 16
# Decoded samples must stay within +-MAX_AMPLITUDE after every transform (full scale is
# 1; lossy decoders and the resampler overshoot it slightly on clipped audio, never by 2x).
MAX_AMPLITUDE = 2.0
# The most audio a compressed file may expand to: a compressed stream can encode long
# silence in few bytes, so its decoded length is bounded here rather than by its size,
# in seconds and, for high rates, in samples (2**28 float32 samples: 1 GiB).
MAX_COMPRESSED_SECONDS = 2 * 3600
MAX_COMPRESSED_SAMPLES = 2**28


# Problems a file can have; the index is the code carried through the graph. Some are
# followed by a detail (the offending value) computed in the graph.
_PROBLEMS = (
    "",
    "file is empty (0 bytes)",
    "not a supported audio file (expected WAV, FLAC, Ogg Vorbis/Opus or MP3 content)",
    "WAV file has no 'fmt ' or 'data' chunk (corrupt or truncated header)",
    "unsupported WAV encoding (use PCM 8/16/24/32-bit or float 32/64-bit)",
    "corrupt header: zero channels or a zero sample rate",
    "file is truncated: the WAV data chunk is longer than the file",
    "file is truncated: the WAV data ends inside a sample frame",
    "corrupt header: the sample rate is out of range",
    "corrupt header: the channel count is out of range",
    "corrupt header: the block align does not match the channels and bit depth",
    "corrupt header: the byte rate does not match the sample rate and block align",
    "corrupt header: the 'fmt ' chunk is too short",
    "cannot decode audio; the file is corrupt or truncated",
    "file holds no audio samples (empty or truncated)",
    "audio contains NaN or Inf samples",
    "samples far outside [-1, 1] (corrupt data, or float audio that is not normalised)",
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
    _BAD_RATE,
    _BAD_CHANNELS,
    _BAD_BLOCK_ALIGN,
    _BAD_BYTE_RATE,
    _SHORT_FMT,
    _DECODER_ERROR,
    _NO_SAMPLES,
    _NOT_FINITE,
    _OUT_OF_RANGE,
) = range(len(_PROBLEMS))
_FIX = "Re-encode the file or remove it from the data."

# WAV sample encodings, in the order of the decoder branches.
_PCM_U8, _PCM_16, _PCM_24, _PCM_32, _FLOAT_32, _FLOAT_64 = range(6)
# WAV decoder branches: invalid input, the six encodings with the header found by
# the fast path, a file needing a full chunk walk.
_INVALID, _WAV_FAST, _WAV_WALK = 0, 1, 7


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


def _detail(*parts):
    """A message detail from strings and numeric tensors."""
    return tf.strings.join(
        [p if isinstance(p, str) else tf.strings.as_string(p) for p in parts]
    )


# === WAV ===
def _wav_chunk(contents, offset):
    """(id, data offset, size, next chunk offset) of the RIFF chunk at `offset`."""
    size = _uint_le(contents, offset + 4, 4)
    # Chunks are padded to an even number of bytes.
    return _substr(contents, offset, 4), offset + 8, size, offset + 8 + size + size % 2


# Little-endian words read from the first 64 bytes in one gather: (offset, bytes).
# Indices 9 and 10 are the 'data' chunk id and size when 'fmt ' has the usual 16
# bytes; 11 is the block align and 12 the byte rate.
_HEAD_WORDS = (
    (0, 4), (8, 4), (12, 4), (16, 4), (20, 2), (22, 2), (24, 4), (34, 2), (44, 2), (36, 4),
    (40, 4), (32, 2), (28, 4),
)
_RIFF, _WAVE, _FMT, _DATA = 0x46464952, 0x45564157, 0x20746D66, 0x61746164
_FLAC_MAGIC, _OGG_MAGIC = 0x43614C66, 0x5367674F
_HEAD_BYTES = 64
_ZERO_HEAD = b"\0" * _HEAD_BYTES


def _head_words(head):
    """The `_HEAD_WORDS` fields of file heads [..., 64] (int64), as [..., 13]."""
    # Index _HEAD_BYTES points at an appended zero, padding 2-byte fields to 4.
    index = [[o + i if i < n else _HEAD_BYTES for i in range(4)] for o, n in _HEAD_WORDS]
    padded = tf.concat([head, tf.zeros_like(head[..., :1])], -1)
    weights = tf.constant([1, 256, 65536, 16777216], tf.int64)
    return tf.reduce_sum(tf.gather(padded, index, axis=-1) * weights, axis=-1)


def _wav_layout_walk(contents, length):
    """Walks every RIFF chunk; returns (fmt, fmt size, data, data size), -1 where missing.

    Every chunk moves the walk on by at least 8 bytes, so it ends within
    `length / 8` steps whatever the sizes declare.
    """

    def cond(offset, fmt, fmt_size, data, size):
        return tf.logical_and(offset + 8 <= length, tf.logical_or(fmt < 0, data < 0))

    def body(offset, fmt, fmt_size, data, size):
        chunk_id, start, chunk_size, following = _wav_chunk(contents, offset)
        is_fmt = tf.logical_and(tf.equal(chunk_id, "fmt "), fmt < 0)
        is_data = tf.logical_and(tf.equal(chunk_id, "data"), data < 0)
        return (
            following,
            tf.where(is_fmt, start, fmt),
            tf.where(is_fmt, chunk_size, fmt_size),
            tf.where(is_data, start, data),
            tf.where(is_data, chunk_size, size),
        )

    minus_one = tf.constant(-1, tf.int64)
    _, fmt, fmt_size, data, size = tf.while_loop(
        cond, body, [tf.constant(12, tf.int64), minus_one, minus_one, minus_one, minus_one]
    )
    return fmt, fmt_size, data, size


def _wav_fields(
    audio_format, channels, rate, bits, block_align, byte_rate, sub_format, fmt_size, length, fmt,
    data, size,
):
    """Checks a WAV header; returns (encoding, channels, size, problem, detail)."""
    extensible = tf.equal(audio_format, 0xFFFE)
    # WAVE_FORMAT_EXTENSIBLE keeps the real format in its sub-format GUID.
    audio_format = tf.where(extensible, sub_format, audio_format)
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
    frame_bytes = channels * (bits // 8)
    block = tf.maximum(frame_bytes, 1)
    min_fmt = tf.where(extensible, tf.constant(40, tf.int64), 16)
    problem = _first_problem(
        (tf.logical_or(fmt < 0, data < 0), _NO_CHUNKS),
        (fmt_size < min_fmt, _SHORT_FMT),
        (encoding < 0, _BAD_ENCODING),
        (tf.logical_or(tf.equal(channels, 0), tf.equal(rate, 0)), _ZERO_FIELDS),
        (tf.logical_or(rate < MIN_SAMPLE_RATE, rate > MAX_SAMPLE_RATE), _BAD_RATE),
        (channels > MAX_CHANNELS, _BAD_CHANNELS),
        (tf.not_equal(block_align, frame_bytes), _BAD_BLOCK_ALIGN),
        (tf.not_equal(byte_rate, rate * frame_bytes), _BAD_BYTE_RATE),
        (data + size > length, _TRUNCATED),
        (tf.not_equal(size % block, 0), _PARTIAL_FRAME),
    )
    detail = tf.switch_case(
        tf.clip_by_value(problem - _BAD_RATE + 1, 0, 6),
        [
            lambda: tf.constant(""),
            lambda: _detail(
                " (", rate, f" Hz; keras_spk reads {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
            ),
            lambda: _detail(" (", channels, f" channels; at most {MAX_CHANNELS})"),
            lambda: _detail(
                " (block align ", block_align, ", expected ", channels, " x ", bits, " bits = ",
                frame_bytes, " bytes)",
            ),
            lambda: _detail(
                " (byte rate ", byte_rate, ", expected ", rate, " Hz x ", frame_bytes, " bytes = ",
                rate * frame_bytes, ")",
            ),
            lambda: _detail(" (", tf.maximum(fmt_size, 0), " bytes, needs ", min_fmt, ")"),
            lambda: tf.constant(""),
        ],
    )
    return encoding, tf.clip_by_value(channels, 1, MAX_CHANNELS), size, problem, detail


def _wav_header(contents, length, fmt, fmt_size, data, size):
    """Reads the 'fmt ' chunk at `fmt`; returns (encoding, channels, rate, size, problem, detail)."""
    f = _bytes(contents, tf.maximum(fmt, 0), 26)
    rate = f[4] + 256 * f[5] + 65536 * f[6] + 16777216 * f[7]
    encoding, channels, size, problem, detail = _wav_fields(
        f[0] + 256 * f[1],
        f[2] + 256 * f[3],
        rate,
        f[14] + 256 * f[15],
        f[12] + 256 * f[13],
        f[8] + 256 * f[9] + 65536 * f[10] + 16777216 * f[11],
        f[24] + 256 * f[25],
        fmt_size,
        length,
        fmt,
        data,
        size,
    )
    return encoding, channels, rate, size, problem, detail


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
        # Values beyond float32's range become Inf here and fail the finiteness check.
        x = tf.cast(tf.io.decode_raw(raw, tf.float64), tf.float32)
    return tf.reshape(x, [-1, tf.cast(channels, tf.int32)])


def _decode_wav_walk(contents, length):
    """WAV with chunks the fast path does not cover; returns (samples, rate, problem, detail)."""
    fmt, fmt_size, data, size = _wav_layout_walk(contents, length)
    encoding, channels, rate, size, problem, detail = _wav_header(
        contents, length, fmt, fmt_size, data, size
    )
    index = tf.where(tf.equal(problem, _OK), encoding + 1, 0)
    branches = [lambda: tf.zeros([1, 1])] + [
        (lambda e=e: _decode_pcm(contents, data, size, e, channels)) for e in range(6)
    ]
    return tf.switch_case(index, branches), rate, problem, detail


# === Compressed formats (libsndfile) ===
_BLOCK_FRAMES = 65536


def _sndfile_decode(contents):
    """FLAC, Ogg or MP3 bytes -> (mono float32 [n, 1], rate int64, error text or b"").

    Runs inside the graph through `tf.numpy_function`; never raises, so that the
    graph can report the file by name. libsndfile releases the GIL while it
    decodes, so parallel tf.data maps decode in parallel.
    """
    import soundfile

    empty = np.zeros([1, 1], np.float32)
    try:
        with soundfile.SoundFile(io.BytesIO(contents)) as f:
            rate, channels, declared = int(f.samplerate), int(f.channels), int(f.frames)
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                return empty, np.int64(rate), (
                    f"{_PROBLEMS[_BAD_RATE]} ({rate} Hz; keras_spk reads {MIN_SAMPLE_RATE} to "
                    f"{MAX_SAMPLE_RATE} Hz). {_FIX}"
                ).encode()
            if not 1 <= channels <= MAX_CHANNELS:
                return empty, np.int64(rate), (
                    f"{_PROBLEMS[_BAD_CHANNELS]} ({channels} channels; at most {MAX_CHANNELS}). "
                    f"{_FIX}"
                ).encode()
            limit = min(int(MAX_COMPRESSED_SECONDS * rate), MAX_COMPRESSED_SAMPLES)
            block = np.empty([_BLOCK_FRAMES, channels], np.float32)
            pieces, total = [], 0
            while True:
                # Reading into a fixed block (fill_value set) never sizes memory from
                # the frame count the header declares.
                before = f.tell()
                f.read(out=block, fill_value=0.0)
                count = f.tell() - before
                if count <= 0:
                    break
                total += count
                if total > limit:
                    return empty, np.int64(rate), (
                        f"decodes to more than {limit / rate:g} s of audio ({limit} samples at "
                        f"{rate} Hz): a corrupt stream, or a recording to split into utterances "
                        "first. keras_spk.data.audio.MAX_COMPRESSED_SECONDS (and "
                        "MAX_COMPRESSED_SAMPLES) set the limit."
                    ).encode()
                pieces.append(block[:count].mean(axis=1, dtype=np.float32))
                if count < _BLOCK_FRAMES:
                    break
            # FLAC's STREAMINFO gives the exact length (0: unknown): less means a
            # truncated file, more a corrupt one.
            if f.format == "FLAC" and declared > 0 and total != declared:
                return empty, np.int64(rate), (
                    f"file is truncated or corrupt: its FLAC header declares {declared} "
                    f"samples, the stream holds {total}. {_FIX}"
                ).encode()
    except Exception as error:  # noqa: BLE001 - any decoder failure is reported by name
        # LibsndfileError's own words, without its "Error opening <BytesIO ...>" prefix.
        text = getattr(error, "error_string", None) or str(error)
        text = " ".join(text.split()) or type(error).__name__
        return empty, np.int64(0), f"{_PROBLEMS[_DECODER_ERROR]} ({text}). {_FIX}".encode()
    samples = np.concatenate(pieces) if pieces else np.zeros([0], np.float32)
    return samples[:, None], np.int64(rate), b""


def _decode_compressed(contents):
    """FLAC, Ogg or MP3 via libsndfile; returns (samples, rate, problem, detail)."""
    samples, rate, error = tf.numpy_function(
        _sndfile_decode, [contents], [tf.float32, tf.int64, tf.string], stateful=False
    )
    samples = tf.reshape(samples, [-1, 1])
    rate = tf.reshape(rate, [])
    error = tf.reshape(error, [])
    failed = tf.strings.length(error) > 0
    problem = _first_problem((failed, _DECODER_ERROR))
    return samples, rate, problem, error


# === Resampling ===
# Output samples computed at once; memory per block is about 40 bytes x this x taps.
_RESAMPLE_BLOCK = 1 << 20


def resample(waveform, rate_in, rate_out, taps=32, kaiser_beta=8.0):
    """Resamples a 1-D waveform by windowed-sinc interpolation.

    Output sample `n` sits at input time `t = n * rate_in / rate_out` and is
    `sum_k x[k] * h(t - k)` over the `taps` input samples nearest `t`, where
    `h` is a Kaiser-windowed sinc low-pass with its cut-off at the lower of
    the two Nyquist frequencies (so downsampling does not alias). The output
    is computed in blocks, so memory stays bounded for any length.

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
    width = tf.cast(half, tf.float64)
    offsets = tf.range(-half + 1, half + 1, dtype=tf.int64)[None, :]
    i0 = tf.math.bessel_i0(tf.constant(kaiser_beta, tf.float64))
    block = tf.maximum(tf.constant(_RESAMPLE_BLOCK, tf.int64) // (2 * half), 1)

    def outputs(start):
        t = tf.cast(tf.range(start, tf.minimum(start + block, n_out)), tf.float64) * ratio
        k = tf.cast(tf.floor(t), tf.int64)[:, None] + offsets
        d = t[:, None] - tf.cast(k, tf.float64)
        x = tf.clip_by_value(d / width, -1.0, 1.0)
        window = tf.math.bessel_i0(kaiser_beta * tf.sqrt(1.0 - x * x)) / i0
        arg = math.pi * cutoff * d
        at_zero = tf.abs(arg) < 1e-12
        one = tf.ones_like(arg)
        sinc = tf.where(at_zero, one, tf.sin(arg) / tf.where(at_zero, one, arg))
        h = tf.cast(cutoff * sinc * window, tf.float32)
        valid = tf.logical_and(k >= 0, k < n_in)
        gathered = tf.gather(waveform, tf.clip_by_value(k, 0, tf.maximum(n_in - 1, 0)))
        return tf.reduce_sum(tf.where(valid, gathered * h, tf.zeros_like(h)), axis=1)

    blocks = (n_out + block - 1) // block
    pieces = tf.TensorArray(tf.float32, size=tf.cast(blocks, tf.int32), infer_shape=False)
    _, pieces = tf.while_loop(
        lambda i, _: i < blocks,
        lambda i, acc: (i + 1, acc.write(tf.cast(i, tf.int32), outputs(i * block))),
        [tf.constant(0, tf.int64), pieces],
    )
    return tf.reshape(
        tf.cond(blocks > 0, pieces.concat, lambda: tf.zeros([0], tf.float32)), [-1]
    )


# === Public graph ops ===
def _decode_checked(contents, sample_rate):
    """Every format and encoding, with all checks; returns (waveform, problem, detail).

    RIFF files and the rest take separate never-inlined calls: tf.data's
    executor visits every op of a lowered branch not taken, so FLAC would
    otherwise pay for the WAV parser and WAV for the libsndfile call.
    """
    is_riff = tf.equal(tf.strings.substr(contents, 0, 4), "RIFF")
    return tf.cond(
        is_riff,
        lambda: _decode_wav_call(contents, sample_rate),
        lambda: _decode_other_call(contents, sample_rate),
    )


def _decode_wav(contents, sample_rate):
    """A RIFF file: the WAV fast path or the chunk walk; see `_decode_checked`."""
    length = tf.cast(tf.strings.length(contents), tf.int64)
    w = _head_words(_bytes(contents, 0, _HEAD_BYTES))
    is_wav = tf.equal(w[1], _WAVE)

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
    encoding, channels, size, wav_problem, wav_detail = _wav_fields(
        w[4], w[5], w[6], w[7], w[11], w[12], w[8], w[3], length, fmt, data, size
    )

    fast_problem = tf.logical_and(tf.logical_and(is_wav, found), wav_problem > 0)
    problem = _first_problem((tf.logical_not(is_wav), _NOT_AUDIO), (fast_problem, wav_problem))
    index = tf.where(found, _WAV_FAST + encoding, _WAV_WALK)
    index = tf.where(tf.equal(problem, _OK), index, _INVALID)

    def fixed(samples):
        return samples, w[6], problem, tf.where(fast_problem, wav_detail, "")

    branches = (
        [lambda: fixed(tf.zeros([1, 1]))]
        + [(lambda e=e: fixed(_decode_pcm(contents, data, size, e, channels))) for e in range(6)]
        + [lambda: _decode_wav_walk(contents, length)]
    )
    return _mono_checked(*tf.switch_case(index, branches), sample_rate)


def _decode_other(contents, sample_rate):
    """Anything but RIFF: FLAC, Ogg or MP3 through libsndfile; see `_decode_checked`."""
    head = _bytes(contents, 0, 4)
    magic = tf.reduce_sum(head * tf.constant([1, 256, 65536, 16777216], tf.int64))
    is_id3 = tf.reduce_all(tf.equal(head[:3], tf.constant([73, 68, 51], tf.int64)))  # "ID3"
    is_mp3 = tf.logical_or(is_id3, tf.logical_and(tf.equal(head[0], 0xFF), head[1] >= 0xE0))
    known = tf.reduce_any(tf.stack([tf.equal(magic, _FLAC_MAGIC), tf.equal(magic, _OGG_MAGIC), is_mp3]))
    problem = _first_problem(
        (tf.equal(tf.strings.length(contents), 0), _EMPTY_FILE),
        (tf.logical_not(known), _NOT_AUDIO),
    )
    samples, rate, problem, detail = tf.cond(
        tf.equal(problem, _OK),
        lambda: _decode_compressed(contents),
        lambda: (tf.zeros([1, 1]), tf.constant(0, tf.int64), problem, tf.constant("")),
    )
    return _mono_checked(samples, rate, problem, detail, sample_rate)


def _mono_checked(samples, rate, problem, detail, sample_rate):
    """Mix-down, checks, resampling, checks again; returns (waveform, problem, detail)."""
    # Mixing down and resampling can overflow or ring: the samples are checked after
    # each transform, so a problem is reported as the step that made it.
    waveform = tf.reduce_mean(samples, axis=1)
    problem, detail = _check_samples(waveform, problem, detail)
    return tf.cond(
        tf.logical_or(problem > 0, tf.equal(rate, sample_rate)),
        lambda: (tf.identity(waveform), problem, detail),
        lambda: _resample_checked_call(waveform, rate, sample_rate, problem, detail),
    )


def _resample_checked(waveform, rate, sample_rate, problem, detail):
    waveform = resample(waveform, rate, sample_rate)
    return (waveform, *_check_samples(waveform, problem, detail))


def _check_samples(waveform, problem, detail):
    """(problem, detail) after checking `waveform` for emptiness, NaN/Inf and range."""
    finite = tf.math.is_finite(waveform)
    peak = tf.reduce_max(tf.abs(tf.where(finite, waveform, 0.0)))
    peak = tf.where(tf.size(waveform) > 0, peak, 0.0)
    checked = _first_problem(
        (problem > 0, problem),
        (tf.equal(tf.size(waveform), 0), _NO_SAMPLES),
        (tf.logical_not(tf.reduce_all(finite)), _NOT_FINITE),
        (peak > MAX_AMPLITUDE, _OUT_OF_RANGE),
    )
    detail = tf.where(
        tf.equal(checked, problem),
        detail,
        tf.where(
            tf.equal(checked, _OUT_OF_RANGE),
            _detail(" (peak ", peak, f", limit {MAX_AMPLITUDE:g}). {_FIX}"),
            tf.constant(""),
        ),
    )
    return checked, detail


def _problem_text(problem, detail):
    """'<problem><detail>' as a string tensor ('' for _OK)."""
    # The libsndfile branch's detail is the whole problem description.
    return tf.where(
        tf.equal(problem, _DECODER_ERROR), detail,
        tf.strings.join([tf.gather(tf.constant(_PROBLEMS), problem), detail]),
    )


def _decode_any(contents, path, sample_rate):
    """`_decode_checked` with its problem raised as an assertion naming `path`."""
    waveform, problem, detail = _decode_checked(contents, sample_rate)
    message = tf.strings.join([path, ": ", _problem_text(problem, detail)])
    check = tf.debugging.Assert(tf.equal(problem, _OK), [message], summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(waveform)


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
    16-bit (block align 2, byte rate 2 x `sample_rate`), `sample_rate`, and a
    complete 'data' chunk right after it (the canonical 44-byte header).

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
    expected = tf.constant(
        [_RIFF, _WAVE, _FMT, 16, 1, 1, sample_rate, 16, _DATA, 2, 2 * sample_rate], tf.int64
    )
    fields = tf.gather(w, [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12], axis=-1)
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
_decode_checked_call, _decode_wav_call, _decode_other_call, _resample_checked_call = (
    tf.function(f, autograph=False, experimental_attributes={"_noinline": True})
    for f in (_decode_checked, _decode_wav, _decode_other, _resample_checked)
)


def load_audio(path, sample_rate=16000):
    """Reads and decodes one audio file as a graph op (see `decode_audio`)."""
    from keras_spk.data.shards import read_contents

    path = tf.convert_to_tensor(path, tf.string)
    return decode_audio(read_contents(path), path, sample_rate)


def read_audio(path, sample_rate=16000):
    """Reads one audio file eagerly into a numpy array.

    Args:
        path: file path.
        sample_rate: target rate; a file at another rate is resampled.

    Returns:
        float32 numpy array [samples].

    Raises:
        AudioError: naming the file, for a missing, empty, truncated,
            corrupt or non-audio file, an unsupported encoding, a header
            field out of bounds, NaN/Inf or out-of-range samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such audio file. Check the path and the data root.")
    try:
        waveform, problem, text = _read_eager(tf.constant(path), sample_rate)
    except tf.errors.OpError as error:  # e.g. the file cannot be read
        raise AudioError(audio_error_message(error, path)) from None
    if int(problem) != _OK:
        raise AudioError(f"{path}: {text.numpy().decode('utf-8', 'replace')}")
    return waveform.numpy()


@tf.function(reduce_retracing=True)
def _read_eager(path, sample_rate):
    # The checks' outcome as values, so the message needs no parsing.
    contents = tf.io.read_file(path)
    plain, num_samples = plain_wav_samples(contents, sample_rate)
    waveform, problem, detail = tf.cond(
        plain,
        lambda: (pcm16_samples(contents, 0, num_samples), tf.constant(_OK), tf.constant("")),
        lambda: _decode_checked_call(contents, sample_rate),
    )
    return waveform, problem, _problem_text(problem, detail)


def _unescape(text):
    # TensorFlow prints assertion messages C-escaped.
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\\'\"":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def audio_error_message(error, path=None):
    """The readable part of a failed audio op's message, naming the file.

    Our own checks fail as an assertion holding "<path>: <problem>" (printed
    C-escaped and bracketed on one line); other failures (an unreadable
    file) carry only TensorFlow's words, so `path` is prefixed.
    """
    text = getattr(error, "message", str(error))
    marker = "assertion failed: ["
    if marker in text:
        line = text[text.index(marker) + len(marker) :].split("\n", 1)[0].rstrip()
        return _unescape(line[:-1] if line.endswith("]") else line).strip()
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("[[") and "execution error" not in line
    ]
    reason = lines[0] if lines else text.strip()
    where = f"{path}: " if path is not None else ""
    return (
        f"{where}cannot decode audio ({reason}); the file is corrupt or truncated. "
        "Re-encode it or remove it from the data."
    )


# How the messages of the checks start (after "<path>: "), fixed and computed alike.
_MESSAGE_STARTS = _PROBLEMS[1:] + ("file is truncated or corrupt", "decodes to more than")


def audio_check_failure(error):
    """The message of a pipeline failure raised by the audio checks, or `None`.

    Training and evaluation pipelines fail inside `tf.data` with a
    `tf.errors.OpError` several screens long; this returns just
    "<path>: <problem>" when the error is one of this module's checks, and
    `None` for any other error (so callers re-raise those unchanged).
    """
    text = getattr(error, "message", "")
    if "assertion failed: [" not in text:
        return None
    message = audio_error_message(error)
    if not any(f": {start}" in message for start in _MESSAGE_STARTS):
        return None
    return message


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
