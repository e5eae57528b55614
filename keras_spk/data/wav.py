"""Writing WAV files (numpy only)."""

import numpy as np

from keras_spk.utils.files import atomic_write_bytes


def write_wav(path, waveform, sample_rate, subtype="PCM_16", fsync=False):
    """Writes a mono or [samples, channels] waveform as a WAV file, atomically.

    The file is written under a temporary name and renamed, so a failed
    write never leaves a half-written file at `path`.

    Args:
        path: destination.
        waveform: float array in [-1, 1], shape [samples] or [samples, channels].
        sample_rate: int.
        subtype: "PCM_U8", "PCM_16", "PCM_24", "PCM_32" or "FLOAT".
        fsync: flush to disk before the rename (off by default: audio is
            usually written in bulk into a folder that is itself renamed
            into place when complete).
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if subtype == "FLOAT":
        data, fmt, bits = x.astype("<f4").tobytes(), 3, 32
    else:
        bits = {"PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(subtype)
        if bits is None:
            raise ValueError(
                "subtype must be one of PCM_U8, PCM_16, PCM_24, PCM_32, FLOAT. "
                f"Received: subtype={subtype}"
            )
        scale = 2 ** (bits - 1)
        q = np.clip(np.round(x * scale), -scale, scale - 1).astype(np.int64)
        fmt = 1
        if bits == 8:
            data = (q + 128).astype(np.uint8).tobytes()
        elif bits == 24:
            q = q.astype("<i4").reshape(-1)
            data = np.stack([q & 255, (q >> 8) & 255, (q >> 16) & 255], 1).astype(np.uint8).tobytes()
        else:
            data = q.astype(f"<i{bits // 8}").tobytes()
    channels = x.shape[1]
    block = channels * bits // 8
    header = b"".join(
        [
            b"RIFF",
            (36 + len(data) + len(data) % 2).to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            fmt.to_bytes(2, "little"),
            channels.to_bytes(2, "little"),
            int(sample_rate).to_bytes(4, "little"),
            (int(sample_rate) * block).to_bytes(4, "little"),
            block.to_bytes(2, "little"),
            bits.to_bytes(2, "little"),
            b"data",
            len(data).to_bytes(4, "little"),
        ]
    )
    # RIFF chunks have an even length: an odd data chunk gets a pad byte.
    atomic_write_bytes(path, header + data + b"\0" * (len(data) % 2), fsync=fsync)
