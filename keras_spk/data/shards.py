"""Sharded corpora: an utterance list packed into TFRecord files, read at random or streamed.

A corpus of a million small files (VoxCeleb2: 1.1 M utterances) is slow to
list, copy and read from a network disk. `write_shards` packs it into a few
hundred large files, each utterance's file bytes as they were (WAV, FLAC,
...; never re-encoded), so training decodes exactly what it decoded from
the files.

A shard folder holds:

    index.json                         the index, written last
    shard-00000-of-00012.tfrecord      TFRecord files, one `tf.train.Example` a record
    ...
    .parts/shard-00000-of-00012.json   one per finished shard, so a rerun resumes

Each record is a `tf.train.Example` with the features `audio` (the file's
bytes), `key` (its path relative to the corpus root), `speaker` (its
speaker id) and `index` (its position in the utterance list). The index
(`keras_spk.shards/1`, JSON) holds the speaker map (sorted speaker ids),
one entry per shard (`file`, `size` in bytes, `sha256`, `records`) and one
column per utterance field, in the order of the packed list: `key`,
`speaker` (index into the speaker map), `shard`, `offset` and `length` of
the record's payload (the file's bytes, inside the record's Example) in
the shard, its `crc32` (zlib) and, when the list had them, `duration`.

Two ways to read a shard folder:

* Random access, with every sampler: `read_shards(folder)` (the `shards`
  data layout of `read_dataset`) gives an `UtteranceList` whose paths are
  shard references,

      shard://<absolute shard path>?offset=<o>&length=<n>&crc32=<c>#<key>

  and `read_contents(path)`, which the training pipelines use instead of
  `tf.io.read_file`, reads just that byte range (the file's bytes) and
  checks its checksum, so a damaged shard is an error naming the shard and
  the key. The crops and batches of an epoch are then exactly those read
  from the files.
* Streaming (the WebDataset way, for the uniform sampler on network
  disks): `shard_stream_dataset` reads whole shards in order, interleaved,
  records mixed in a seeded shuffle window; epoch `e` holds the utterances
  the `random` sampler's epoch `e` would, and each data-parallel worker can
  read its own shards.

A shard folder is written by one packer at a time.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import re
import threading
import zlib

import numpy as np

from keras_spk.utils.files import atomic_write_text

INDEX_NAME = "index.json"
SCHEME = "shard://"
_FORMAT = "keras_spk.shards/1"
_PART_FORMAT = "keras_spk.shard_part/1"
_PARTS = ".parts"
# A TFRecord record: uint64 length, uint32 masked CRC of the length, the data, uint32
# masked CRC of the data.
_RECORD_HEADER = 12
_RECORD_OVERHEAD = 16
_REFERENCE = re.compile(r"shard://(.+?)\?offset=(\d+)&length=(\d+)&crc32=(\d+)#(.*)", re.DOTALL)
_SHARD_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.tfrecord")
# Read buffer of each streamed shard: several records (files of ~250 kB) per read.
_STREAM_READ_BUFFER = 8 << 20
_FIX = "Delete the shard and rerun tools/make_shards.py on the corpus to rewrite it."


# === References ===

def shard_reference(shard_path, offset, length, crc32, key):
    """The shard reference of one record's payload (see the module docstring)."""
    return (
        f"{SCHEME}{shard_path}?offset={int(offset)}&length={int(length)}&crc32={int(crc32)}#{key}"
    )


def parse_shard_reference(reference):
    """`(shard_path, offset, length, crc32, key)` of a shard reference.

    Raises:
        ValueError: `reference` is not a shard reference.
    """
    if isinstance(reference, bytes):
        reference = reference.decode("utf-8", "replace")
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise ValueError(
            f"Not a shard reference: {reference!r}. Expected "
            "shard://<shard path>?offset=<o>&length=<n>&crc32=<c>#<key> (from read_shards)."
        )
    shard, offset, length, crc32, key = match.groups()
    return shard, int(offset), int(length), int(crc32), key


# === Random access ===

class _OpenShards:
    """File descriptors of the shards being read, shared by the tf.data threads.

    `os.pread` needs no lock or seek position, so one descriptor per shard
    serves every thread; at most `limit` idle ones stay open.
    """

    def __init__(self, limit=256):
        self.limit = limit
        self._lock = threading.Lock()
        self._open = collections.OrderedDict()  # path -> [fd, readers in progress]

    def pread(self, path, offset, length):
        with self._lock:
            entry = self._open.get(path)
            if entry is None:
                entry = self._open[path] = [os.open(path, os.O_RDONLY), 0]
            self._open.move_to_end(path)
            entry[1] += 1
            for other in list(self._open):
                if len(self._open) <= self.limit:
                    break
                if self._open[other][1] == 0:
                    os.close(self._open.pop(other)[0])
        try:
            return os.pread(entry[0], length, offset)
        finally:
            with self._lock:
                entry[1] -= 1

    def close(self):
        """Closes every idle descriptor (shards rewritten since are then read afresh)."""
        with self._lock:
            for path in [p for p, e in self._open.items() if e[1] == 0]:
                os.close(self._open.pop(path)[0])


_SHARDS = _OpenShards()


def _read_payload(reference):
    """`(file bytes, "")` of a shard reference, checked, or `(b"", problem)`."""
    try:
        shard, offset, length, crc32, key = parse_shard_reference(reference)
    except ValueError as error:
        return b"", str(error)
    where = f"{shard} (record {key!r} at byte {offset})"
    try:
        data = _SHARDS.pread(shard, offset, length)
    except OSError as error:
        return b"", f"{where}: cannot read the shard ({error.strerror or error}). {_FIX}"
    if len(data) != length:
        return b"", (
            f"{where}: the shard ends {length - len(data)} byte(s) before the record does: it is "
            f"truncated. {_FIX}"
        )
    # The bytes alone, not the record's Example: the checksum stands for the parse, at a
    # third of the cost, and the file's bytes are all training reads.
    if zlib.crc32(data) != crc32:
        return b"", (
            f"{where}: checksum mismatch, the shard is damaged (or the index is not this "
            f"shard's). {_FIX}"
        )
    return data, ""


def read_record(reference):
    """The file bytes a shard reference names, read eagerly.

    Raises:
        ValueError: not a shard reference, or a damaged or truncated shard
            (the message names the shard and the utterance's key).
    """
    data, problem = _read_payload(reference)
    if problem:
        raise ValueError(problem)
    return data


def _read_for_graph(reference):
    data, problem = _read_payload(reference)
    # Object arrays: a bytes scalar would lose the file's trailing zero bytes.
    return np.array(data, dtype=object), np.array(problem.encode("utf-8"), dtype=object)


def _read_reference(reference):
    import tensorflow as tf

    contents, problem = tf.numpy_function(
        _read_for_graph, [reference], [tf.string, tf.string], stateful=False
    )
    check = tf.debugging.Assert(tf.equal(problem, ""), [problem], summarize=1)
    with tf.control_dependencies([check]):
        return tf.reshape(tf.identity(contents), [])


_read_reference_call = None


def read_contents(path):
    """The bytes of an audio file: a plain path, or a shard reference (graph op).

    Safe in a `tf.data` map. A plain path is read with `tf.io.read_file`; a
    shard reference (`read_shards`) reads only its record's byte range and
    fails with an `InvalidArgumentError` naming the shard and the key when
    the record is truncated or damaged (checksum), never passing on
    garbage.

    Args:
        path: scalar string tensor or str.

    Returns:
        Scalar string tensor, the file's bytes.
    """
    import tensorflow as tf

    global _read_reference_call
    if _read_reference_call is None:
        # Behind a never-inlined call, so plain files do not pay for the shard branch's ops.
        _read_reference_call = tf.function(
            _read_reference, autograph=False, experimental_attributes={"_noinline": True}
        )
    path = tf.convert_to_tensor(path, tf.string)
    return tf.cond(
        tf.equal(tf.strings.substr(path, 0, len(SCHEME)), SCHEME),
        lambda: _read_reference_call(path),
        lambda: tf.io.read_file(path),
    )


# === The index ===

@dataclasses.dataclass
class ShardIndex:
    """A shard folder's index (`load_shard_index`).

    Attributes:
        folder: absolute path of the folder.
        speakers: the speaker map, sorted speaker ids.
        shards: one dict per shard: `file`, `size`, `sha256`, `records`.
        keys: key of each utterance (path relative to the corpus root).
        speaker: int64 [n], index into `speakers` of each utterance.
        shard: int64 [n], the shard of each utterance.
        offset, length, crc32: int64 [n], its payload in the shard.
        durations: list of seconds, or `None`.
        root: the folder the corpus was read from when packed.
        fingerprint: identifies the packed list and settings.
    """

    folder: str
    speakers: list
    shards: list
    keys: list
    speaker: np.ndarray
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    crc32: np.ndarray
    durations: list = None
    root: str = ""
    fingerprint: str = ""

    def __len__(self):
        return len(self.keys)

    def shard_path(self, i):
        return os.path.join(self.folder, self.shards[i]["file"])

    def references(self):
        """The shard reference of every utterance, in index order."""
        paths = [self.shard_path(i) for i in range(len(self.shards))]
        return [
            shard_reference(paths[s], o, n, c, k)
            for s, o, n, c, k in zip(
                self.shard.tolist(), self.offset.tolist(), self.length.tolist(),
                self.crc32.tolist(), self.keys,
            )
        ]

    def utterances(self):
        """An `UtteranceList` of shard references, in the packed list's order."""
        from keras_spk.data.readers import UtteranceList

        return UtteranceList(
            paths=self.references(),
            speakers=[self.speakers[i] for i in self.speaker.tolist()],
            root=self.folder,
            durations=self.durations,
        )

    def check_sizes(self):
        """Raises naming the first shard that is missing or whose size is not the index's."""
        for i, entry in enumerate(self.shards):
            path = self.shard_path(i)
            try:
                size = os.path.getsize(path)
            except OSError:
                raise FileNotFoundError(
                    f"{path}: shard {i} of the index {os.path.join(self.folder, INDEX_NAME)} is "
                    "missing. Rerun tools/make_shards.py on the corpus to write it again."
                ) from None
            if size != entry["size"]:
                raise ValueError(
                    f"{path}: the shard is {size} bytes, the index says {entry['size']}: it is "
                    f"truncated or damaged. {_FIX}"
                )


def _index_location(location):
    location = os.path.abspath(os.fspath(location))
    if os.path.isdir(location):
        return location, os.path.join(location, INDEX_NAME)
    if os.path.basename(location) == INDEX_NAME or os.path.isfile(location):
        return os.path.dirname(location), location
    raise FileNotFoundError(
        f"Shard folder {location} does not exist. Give the OUT_DIR of tools/make_shards.py."
    )


def load_shard_index(location, check_sizes=True):
    """Reads a shard folder's index (the folder, or its `index.json`).

    Args:
        location: the shard folder or its index file.
        check_sizes: check that every shard exists with the size the index
            records (cheap: one `stat` per shard).

    Returns:
        A `ShardIndex`.

    Raises:
        FileNotFoundError: no such folder, no index (packing did not
            finish), a missing shard.
        ValueError: a truncated or corrupt index, a shard of the wrong size.
    """
    folder, path = _index_location(location)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{folder} holds no {INDEX_NAME}: not a shard folder, or packing did not finish. "
            "Run tools/make_shards.py into it (a rerun resumes where it stopped)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path}: the shard index is truncated or corrupt ({error}). Rerun "
            "tools/make_shards.py on the corpus to write it again; complete shards are kept."
        ) from None
    return _index_from_json(content, folder, path, check_sizes)


def _index_from_json(content, folder, path, check_sizes):
    def corrupt(what):
        return ValueError(
            f"{path}: corrupt shard index ({what}). Rerun tools/make_shards.py on the corpus to "
            "write it again."
        )

    if not isinstance(content, dict) or content.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a keras_spk shard index (expected format {_FORMAT!r}).")
    try:
        speakers = [str(s) for s in content["speakers"]]
        shards = content["shards"]
        columns = content["utterances"]
        keys = [str(k) for k in columns["key"]]
        arrays = {
            name: np.asarray(columns[name], dtype=np.int64)
            for name in ("speaker", "shard", "offset", "length", "crc32")
        }
        durations = columns.get("duration")
        entries = [
            (str(s["file"]), int(s["size"]), str(s["sha256"]), int(s["records"])) for s in shards
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise corrupt(f"{type(error).__name__}: {error}") from None
    n = len(keys)
    lengths = [a.shape[0] if a.ndim == 1 else -1 for a in arrays.values()]
    if any(m != n for m in lengths) or (durations is not None and len(durations) != n):
        raise corrupt("its columns differ in length")
    if n and (
        arrays["speaker"].min() < 0 or arrays["speaker"].max() >= len(speakers)
        or arrays["shard"].min() < 0 or arrays["shard"].max() >= len(shards)
    ):
        raise corrupt("a speaker or shard number is out of range")
    if any(not _SHARD_NAME.fullmatch(e[0]) for e in entries):
        raise corrupt("a shard file name is not shard-<i>-of-<n>.tfrecord")
    index = ShardIndex(
        folder=folder,
        speakers=speakers,
        shards=[dict(zip(("file", "size", "sha256", "records"), e)) for e in entries],
        keys=keys,
        durations=durations,
        root=str(content.get("root", "")),
        fingerprint=str(content.get("fingerprint", "")),
        **arrays,
    )
    if check_sizes:
        index.check_sizes()
    return index


def read_shards(location):
    """Reads a shard folder as an `UtteranceList` of shard references (layout `shards`).

    The list is the packed one, in its order, with its speakers (and
    durations, if it had them); its paths are shard references that
    `read_contents` (so every training sampler) and `load_audio` read.
    Every shard is checked to exist with the size the index records.

    Args:
        location: a folder written by `write_shards` / tools/make_shards.py,
            or its `index.json`.

    Example:

    ```python
    train = read_dataset("shards", "vox2_shards")
    dataset = training_dataset(train.paths, train.labels(), 48000, 128, start_epoch=0)
    ```
    """
    return load_shard_index(location).utterances()


def verify_shards(location):
    """Re-reads every shard and record of a shard folder; returns the problems found.

    Each shard's size and SHA-256 are compared with the index, every
    record is read back through its reference (checksum) and every shard
    read through as TFRecords (their CRCs), its keys compared with the
    index's. A sound folder gives `[]`.

    Returns:
        A list of messages, each naming a shard (and a key for a damaged
        record).

    Raises:
        FileNotFoundError, ValueError: as `load_shard_index` for a missing
            or corrupt index.
    """
    import tensorflow as tf

    index = load_shard_index(location, check_sizes=False)
    keys = {
        "key": tf.io.FixedLenFeature([], tf.string),
        "index": tf.io.FixedLenFeature([], tf.int64),
    }
    problems = []
    references = index.references()
    by_shard = collections.defaultdict(list)
    for position, shard in enumerate(index.shard.tolist()):
        by_shard[shard].append(position)
    _SHARDS.close()
    for i, entry in enumerate(index.shards):
        path = index.shard_path(i)
        try:
            size = os.path.getsize(path)
            digest = _sha256(path)
        except OSError as error:
            problems.append(f"{path}: cannot read the shard ({error.strerror or error}). {_FIX}")
            continue
        if size != entry["size"]:
            problems.append(
                f"{path}: the shard is {size} bytes, the index says {entry['size']}: it is "
                f"truncated or damaged. {_FIX}"
            )
        elif digest != entry["sha256"]:
            problems.append(
                f"{path}: the shard's SHA-256 differs from the index: it is damaged. {_FIX}"
            )
        if len(by_shard[i]) != entry["records"]:
            problems.append(
                f"{path}: the index lists {len(by_shard[i])} record(s) in it, but "
                f"{entry['records']} were written. Rerun tools/make_shards.py on the corpus."
            )
        for position in by_shard[i]:
            try:
                read_record(references[position])
            except ValueError as error:
                problems.append(str(error))
        records = tf.data.TFRecordDataset(path).map(lambda r: tf.io.parse_single_example(r, keys))
        try:
            found = [(int(r["index"]), r["key"].decode()) for r in records.as_numpy_iterator()]
        except tf.errors.OpError as error:
            # "{{function_node ...}} corrupted record at 6444 [Op:IteratorGetNext]": the middle.
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*", "", error.message.strip().splitlines()[0])
            problems.append(f"{path}: its records cannot be read through ({reason}). {_FIX}")
            continue
        listed = sorted(by_shard[i], key=lambda p: index.offset[p])
        if found != [(p, index.keys[p]) for p in listed]:
            problems.append(
                f"{path}: its records are not those the index lists there: the index is not this "
                "folder's. Rerun tools/make_shards.py on the corpus."
            )
    return problems


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# === Writing ===

@dataclasses.dataclass
class ShardSummary:
    """What `write_shards` did.

    Attributes:
        folder: the shard folder.
        utterances, speakers, shards: counts.
        written: shards written by this call.
        kept: complete shards of an earlier, interrupted run, kept as they were.
        bytes: total size of the shards.
    """

    folder: str
    utterances: int
    speakers: int
    shards: int
    written: int
    kept: int
    bytes: int


def shard_file_name(i, count):
    return f"shard-{i:05d}-of-{count:05d}.tfrecord"


def _keys(utterances):
    root = utterances.root
    keys = []
    for path in utterances.paths:
        key = os.path.relpath(path, root) if root else os.path.abspath(path)
        keys.append(key.replace(os.sep, "/"))
    return keys


def _plan(n, shard_size, seed):
    """The utterance positions of each shard: `ceil(n / shard_size)` shards of near-equal size."""
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    return [group.tolist() for group in np.array_split(order, math.ceil(n / shard_size))]


def _fingerprint(keys, speakers, sizes, shard_size, seed):
    digest = hashlib.sha256()
    digest.update(json.dumps([_FORMAT, shard_size, seed]).encode())
    for key, speaker, size in zip(keys, speakers, sizes):
        digest.update(json.dumps([key, speaker, size]).encode())
    return digest.hexdigest()


def _source_size(path):
    try:
        return os.path.getsize(path)
    except OSError as error:
        raise FileNotFoundError(
            f"{path}: cannot read the audio file ({error.strerror or error})."
        ) from None


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _foreign(out_dir, what):
    return ValueError(
        f"{out_dir} holds the shards of another corpus, or of this one packed with other "
        f"settings (shard size, seed): {what}. Give an empty or new folder, or delete {out_dir} "
        "to pack again."
    )


def _check_out_dir(out_dir, fingerprint, names):
    index = _load_json(os.path.join(out_dir, INDEX_NAME))
    if isinstance(index, dict) and index.get("fingerprint") not in (None, fingerprint):
        raise _foreign(out_dir, f"its {INDEX_NAME} describes another list")
    strangers = sorted(
        n for n in os.listdir(out_dir) if n.endswith(".tfrecord") and n not in set(names)
    )
    if strangers:
        raise _foreign(out_dir, f"{len(strangers)} shard(s) not in this plan, e.g. {strangers[0]}")
    parts = os.path.join(out_dir, _PARTS)
    if os.path.isdir(parts):
        for name in sorted(os.listdir(parts)):
            part = _load_json(os.path.join(parts, name))
            if isinstance(part, dict) and part.get("fingerprint") != fingerprint:
                raise _foreign(out_dir, f"{_PARTS}/{name} belongs to another list")


def _remove_stale_temporaries(out_dir):
    # Left by a packer that was killed mid-shard; never renamed, so never used.
    for folder in (out_dir, os.path.join(out_dir, _PARTS)):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.remove(os.path.join(folder, name))


def _complete_part(out_dir, name, fingerprint):
    """The part record of a finished shard, or `None` when it must be (re)written."""
    part = _load_json(os.path.join(out_dir, _PARTS, name[: -len(".tfrecord")] + ".json"))
    if not isinstance(part, dict) or part.get("fingerprint") != fingerprint:
        return None
    try:
        size = os.path.getsize(os.path.join(out_dir, name))
    except OSError:
        return None
    return part if size == part.get("size") else None


def _example(audio, key, speaker, position):
    import tensorflow as tf

    def as_bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "audio": as_bytes(audio),
        "key": as_bytes(key.encode("utf-8")),
        "speaker": as_bytes(str(speaker).encode("utf-8")),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[position])),
    })).SerializeToString()


def _write_shard(out_dir, name, positions, utterances, keys, fingerprint):
    """Writes one shard under a temporary name, then its part record, then renames it."""
    import tensorflow as tf

    final = os.path.join(out_dir, name)
    temporary = os.path.join(out_dir, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    records, end = [], 0
    try:
        with tf.io.TFRecordWriter(temporary) as writer:
            for position in positions:
                path = utterances.paths[position]
                try:
                    with open(path, "rb") as f:
                        audio = f.read()
                except OSError as error:
                    raise OSError(
                        f"{path}: cannot read the audio file ({error.strerror or error})."
                    ) from None
                payload = _example(audio, keys[position], utterances.speakers[position], position)
                writer.write(payload)
                # The file's bytes lie whole inside the serialised Example (a length-prefixed
                # bytes field); the other fields are too short to hold a copy of them.
                inside = payload.find(audio)
                if not audio or payload.find(audio, inside + 1) != -1:
                    raise ValueError(
                        f"{path}: the file is {len(audio)} bytes, too short to be audio."
                    )
                start = end + _RECORD_HEADER + inside
                records.append([position, start, len(audio), zlib.crc32(audio)])
                end += _RECORD_OVERHEAD + len(payload)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        size = os.path.getsize(temporary)
        if size != end:
            raise OSError(f"{temporary}: wrote {size} bytes where {end} were expected.")
        part = {
            "format": _PART_FORMAT, "fingerprint": fingerprint, "file": name, "size": size,
            "sha256": _sha256(temporary), "records": records,
        }
        atomic_write_text(
            os.path.join(out_dir, _PARTS, name[: -len(".tfrecord")] + ".json"),
            json.dumps(part, separators=(",", ":")),
        )
        os.replace(temporary, final)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return part


def write_shards(
    utterances, out_dir, shard_size=1000, workers=4, seed=0, check_audio=False,
    sample_rate=16000, progress=None,
):
    """Packs an `UtteranceList` into TFRecord shards and writes their index.

    Resumable and atomic: each shard is written under a temporary name and
    renamed when complete, then recorded in `.parts/`; the index is written
    last. A rerun with the same list and settings keeps every complete
    shard as it is (not even rewritten) and writes the rest; a folder
    holding the shards of another list is an error, never overwritten.

    Args:
        utterances: an `UtteranceList` (e.g. from `read_dataset`).
        out_dir: the shard folder (created if missing).
        shard_size: int >= 1, utterances per shard (all shards hold
            `ceil(n / shard_size)`-way near-equal shares).
        workers: int >= 1, shards written at once (threads: the work is
            mostly file I/O, which releases the GIL).
        seed: int, or `None`: which utterances share a shard. With an int,
            a seeded permutation spreads speakers over all shards (what a
            streamed shuffle window needs); with `None`, consecutive runs
            of the list. The index keeps the list's order either way.
        check_audio: decode the files of the shards still to write first
            (`keras_spk.data.audio.find_bad_audio`) and raise naming the
            bad ones, before anything is written.
        sample_rate: the rate `check_audio` decodes at.
        progress: optional callable `(done, total, name)`, called after
            each shard written.

    Returns:
        A `ShardSummary`.

    Raises:
        ValueError: an empty list, bad settings, a folder holding another
            list's shards, bad audio (with `check_audio`).
        OSError: an unreadable audio file (named).
    """
    from keras_spk.utils._checks import is_int

    for name, value in (("shard_size", shard_size), ("workers", workers)):
        if not is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    if seed is not None and not is_int(seed):
        raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
    if len(utterances) == 0:
        raise ValueError("The utterance list is empty: there is nothing to pack.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir} is a file; give a folder for the shards.")
    os.makedirs(os.path.join(out_dir, _PARTS), exist_ok=True)

    keys = _keys(utterances)
    sizes = [_source_size(p) for p in utterances.paths]
    groups = _plan(len(utterances), int(shard_size), seed)
    names = [shard_file_name(i, len(groups)) for i in range(len(groups))]
    fingerprint = _fingerprint(keys, utterances.speakers, sizes, int(shard_size), seed)
    _check_out_dir(out_dir, fingerprint, names)
    _remove_stale_temporaries(out_dir)

    parts = [_complete_part(out_dir, name, fingerprint) for name in names]
    todo = [i for i, part in enumerate(parts) if part is None]
    if todo and check_audio:
        from keras_spk.data.audio import AudioError
        from keras_spk.data.audio import find_bad_audio

        bad = find_bad_audio([utterances.paths[p] for i in todo for p in groups[i]], sample_rate)
        if bad:
            raise AudioError(
                f"{len(bad)} audio file(s) cannot be decoded, so nothing was packed: "
                + "; ".join(message for _, message in bad[:20])
                + (" ..." if len(bad) > 20 else "")
                + " Re-encode or remove them (tools/check_audio.py lists them all)."
            )
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
        futures = {
            pool.submit(
                _write_shard, out_dir, names[i], groups[i], utterances, keys, fingerprint
            ): i
            for i in todo
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                parts[i] = future.result()
                done += 1
                if progress is not None:
                    progress(done, len(todo), names[i])
        except BaseException:
            # Shards being written finish (and are kept for the rerun); the rest never start.
            pool.shutdown(wait=True, cancel_futures=True)
            raise

    n = len(utterances)
    columns = {name: [0] * n for name in ("shard", "offset", "length", "crc32")}
    for i, part in enumerate(parts):
        for position, offset, length, crc32 in part["records"]:
            columns["shard"][position] = i
            columns["offset"][position] = offset
            columns["length"][position] = length
            columns["crc32"][position] = crc32
    speakers = utterances.speaker_ids
    speaker_index = {s: i for i, s in enumerate(speakers)}
    index = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "root": utterances.root,
        "shard_size": int(shard_size),
        "seed": seed,
        "speakers": speakers,
        "shards": [
            {
                "file": p["file"], "size": p["size"], "sha256": p["sha256"],
                "records": len(p["records"]),
            }
            for p in parts
        ],
        "utterances": {
            "key": keys,
            "speaker": [speaker_index[s] for s in utterances.speakers],
            **columns,
            "duration": None if utterances.durations is None else list(utterances.durations),
        },
    }
    atomic_write_text(os.path.join(out_dir, INDEX_NAME), json.dumps(index, separators=(",", ":")))
    _SHARDS.close()
    return ShardSummary(
        folder=out_dir, utterances=n, speakers=len(speakers), shards=len(parts),
        written=len(todo), kept=len(parts) - len(todo), bytes=sum(p["size"] for p in parts),
    )


# === Streaming ===

def check_stream_replica(replica, batch_size, num_shards):
    """`None`, or `(index, count)` checked for streaming: `count` workers, each its own shards."""
    from keras_spk.data.pipeline import check_replica

    if replica is None:
        return None
    index, count = check_replica(replica, batch_size)
    if count > num_shards:
        raise ValueError(
            f"{count} workers cannot each stream their own shards from {num_shards} shard(s). "
            "Pack the corpus into more shards (a smaller --shard-size) or use fewer workers. "
            f"Received: replica={replica!r}"
        )
    return index, count


def replica_shards(num_shards, replica):
    """The shard numbers worker `index` of `count` streams: `i % count == index`."""
    if replica is None:
        return list(range(num_shards))
    index, count = replica
    return [i for i in range(num_shards) if i % count == index]


def _stream_sources(shards, labels):
    """`(index, positions, labels)`: the shard index and the streamed list's index positions."""
    from keras_spk.data.readers import UtteranceList

    if isinstance(shards, (str, os.PathLike)):
        index = load_shard_index(shards)
        positions = np.arange(len(index), dtype=np.int64)
        if labels is None:
            labels = index.speaker.copy()
        return index, positions, np.asarray(labels, np.int64)
    if isinstance(shards, UtteranceList):
        references = shards.paths
        if labels is None:
            labels = shards.labels()
    else:
        references = [str(p) for p in shards]
        if labels is None:
            raise ValueError(
                "A list of shard references needs its `labels`; pass a shard folder or an "
                "UtteranceList from read_shards to label by speaker map."
            )
    if not references:
        raise ValueError("The list of shard references is empty. Received 0 paths.")
    parsed = [parse_shard_reference(r) for r in references]
    folders = {os.path.dirname(p[0]) for p in parsed}
    if len(folders) != 1:
        raise ValueError(
            f"The references name shards in {len(folders)} folders ({sorted(folders)[:3]}); a "
            "stream reads one shard folder."
        )
    index = load_shard_index(folders.pop())
    files = {e["file"]: i for i, e in enumerate(index.shards)}
    where = {
        (s, o): p for p, (s, o) in enumerate(zip(index.shard.tolist(), index.offset.tolist()))
    }
    positions = []
    for reference, (shard, offset, _, _, _) in zip(references, parsed):
        position = where.get((files.get(os.path.basename(shard)), offset))
        if position is None:
            raise ValueError(
                f"{reference}: not a record of the index {os.path.join(index.folder, INDEX_NAME)}."
            )
        positions.append(position)
    labels = np.asarray(labels, np.int64)
    if labels.shape != (len(positions),):
        raise ValueError(
            "labels must hold one speaker index per reference. "
            f"Received: {len(positions)} references, labels of shape {labels.shape}"
        )
    return index, np.asarray(positions, np.int64), labels


def _stream_epochs(
    shards, labels, batch_size, seed, start_epoch, replica, shuffle_buffer, cycle_length,
    num_parallel_calls,
):
    """Batches `(contents [b], names [b], labels [b], positions [b], crop seed [2])`, epoch
    after epoch, and the steps per epoch; `b` is this worker's share of `batch_size`."""
    import tensorflow as tf

    from keras_spk.data.pipeline import _LAST_EPOCH
    from keras_spk.data.pipeline import _check_start_epoch
    from keras_spk.data.pipeline import _epoch_seed
    from keras_spk.utils._checks import is_int

    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer),
                        ("cycle_length", cycle_length)):
        if not is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    start_epoch = _check_start_epoch(start_epoch)
    index, positions, labels = _stream_sources(shards, labels)
    replica = check_stream_replica(replica, batch_size, len(index.shards))
    n, total = len(positions), len(index)
    label_of = np.full(total, -1, np.int64)
    label_of[positions] = labels
    if replica is None:
        share = batch_size
        steps = n // batch_size
        mine = list(range(len(index.shards)))
    else:
        share = batch_size // replica[1]
        listed = np.bincount(index.shard[positions], minlength=len(index.shards))
        # Every worker takes the same number of steps: as many as the smallest share allows.
        steps = min(
            int(listed[replica_shards(len(index.shards), (r, replica[1]))].sum()) // share
            for r in range(replica[1])
        )
        mine = replica_shards(len(index.shards), replica)
    if steps == 0:
        raise ValueError(
            f"A streamed epoch needs at least one full batch: {n} utterance(s) "
            + ("" if replica is None else f"over {replica[1]} workers ")
            + f"for batch_size={batch_size}. Use a smaller batch size."
        )
    paths_t = tf.constant([index.shard_path(i) for i in mine])
    all_paths_t = tf.constant([index.shard_path(i) for i in range(len(index.shards))])
    shard_of_t = tf.constant(index.shard)
    positions_t = tf.constant(positions)
    label_of_t = tf.constant(label_of)
    features = {
        "audio": tf.io.FixedLenFeature([], tf.string),
        "key": tf.io.FixedLenFeature([], tf.string),
        "index": tf.io.FixedLenFeature([], tf.int64),
    }

    def fold(seed_pair, *data):
        for d in data:
            seed_pair = tf.random.experimental.stateless_fold_in(seed_pair, d)
        return seed_pair

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return example["audio"], example["key"], example["index"]

    def epoch_batches(epoch):
        epoch_seed = _epoch_seed(seed, epoch)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(mine), dtype=tf.int64), fold(epoch_seed, 1)
        )
        # Records are whole files: a read buffer of several records, not TFRecordDataset's
        # 256 kB, halves the cost of reading them.
        elements = tf.data.Dataset.from_tensor_slices(tf.gather(paths_t, order)).interleave(
            lambda path: tf.data.TFRecordDataset(path, buffer_size=_STREAM_READ_BUFFER),
            cycle_length=cycle_length, block_length=1, num_parallel_calls=num_parallel_calls,
            deterministic=True,
        ).map(parse, num_parallel_calls=num_parallel_calls, deterministic=True)
        if replica is None:
            # The utterances of the random sampler's epoch: the first steps * batch_size of
            # the epoch's permutation of the list (`_epoch_stream`).
            kept = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), epoch_seed)
            kept = tf.gather(positions_t, kept[: steps * batch_size])
            member = tf.scatter_nd(kept[:, None], tf.ones_like(kept, tf.int32), [total]) > 0
        else:
            member = label_of_t >= 0
        elements = elements.filter(lambda audio, key, position: tf.gather(member, position))

        def mix(w, window):
            audio, key, position = window
            # The window's rows in a stateless permutation (epoch e's order depends on
            # (seed, e) only), gathered batch by batch: one copy of each file, not two.
            rows = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(audio)[0]), fold(epoch_seed, 2, w)
            )
            return tf.data.Dataset.from_tensor_slices(tf.reshape(rows, [-1, share])).map(
                lambda r: (tf.gather(audio, r), tf.gather(key, r), tf.gather(position, r))
            )

        window = -(-shuffle_buffer // share) * share  # whole batches
        batches = elements.take(steps * share).batch(window).enumerate().flat_map(mix)
        # The crop seed of batch j of epoch e, as the file pipelines draw it (`_batch_seeds`).
        seeds = tf.data.Dataset.range(steps).map(
            lambda j: tf.random.stateless_uniform(
                [2], epoch_seed + tf.stack([tf.constant(0, tf.int64), j + 1]),
                minval=None, maxval=None, dtype=tf.int64,
            )
        )

        def labelled(batch, batch_seed):
            audio, key, position = batch
            shard = tf.gather(all_paths_t, tf.gather(shard_of_t, position))
            names = tf.strings.join([shard, "#", key])
            return audio, names, tf.gather(label_of_t, position), position, batch_seed

        return tf.data.Dataset.zip((batches, seeds)).map(labelled)

    if start_epoch is None:
        epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        epochs = epochs.map(lambda s: tf.math.floormod(s, _LAST_EPOCH))
    else:
        epochs = tf.data.Dataset.range(start_epoch, _LAST_EPOCH)
    return epochs.flat_map(epoch_batches), steps


def shard_stream_dataset(
    shards,
    crop_samples,
    batch_size,
    sample_rate=16000,
    seed=0,
    start_epoch=0,
    replica=None,
    shuffle_buffer=1024,
    cycle_length=16,
    labels=None,
    num_parallel_calls=None,
):
    """Random crops streamed from whole shards: the uniform sampler for huge corpora.

    Reading records in file order is what a network disk does well (the
    WeSpeaker / WebDataset way). Epoch `e` is a function of `(seed, e)`:
    the shards are shuffled, read `cycle_length` at a time
    (`tf.data.Dataset.interleave` over `TFRecordDataset`s, deterministic),
    their records mixed in windows of `shuffle_buffer` by a seeded
    permutation, batched and cropped by `keras_spk.data.pipeline.crop_batch`
    with the crop seeds of the file pipelines.

    Without `replica`, epoch `e` holds exactly the utterances the `random`
    sampler's epoch `e` holds (`training_dataset(..., start_epoch=...)` on
    the same list and seed: the first `steps * batch_size` of its seeded
    permutation), in another order: `steps = len(list) // batch_size`.
    With `replica=(index, count)`, worker `index` streams only shards
    `i % count == index` (every utterance of them listed), in batches of
    `batch_size // count`, and every worker takes the same number of
    steps, the most the smallest share fills; the workers' shards are
    disjoint and together all shards.

    Memory: about twice `shuffle_buffer` whole files (VoxCeleb: about
    250 kB each; the window is rounded up to whole batches), plus
    `cycle_length` shard read buffers of 8 MB.

    Args:
        shards: a shard folder (or its `index.json`): every utterance, by
            the index's speaker map; or an `UtteranceList` from
            `read_shards` (a subset of one folder), or a list of shard
            references with `labels`.
        crop_samples: crop length in samples.
        batch_size: int, the (global) batch size.
        sample_rate: files at another rate are resampled to it.
        seed: int.
        start_epoch: int >= 0: the first epoch of an endless, resumable
            stream (`model.fit(..., initial_epoch=start_epoch,
            steps_per_epoch=steps)`); `None`: one epoch per pass, its
            number drawn afresh.
        replica: `None`, or `(index, count)`: this data-parallel worker's
            shards (an error if there are fewer shards than workers).
        shuffle_buffer: int >= 1, records per shuffle window.
        cycle_length: int >= 1, shards read at once.
        labels: speaker index of each utterance (default: the list's or the
            index's speaker map, sorted speaker ids).
        num_parallel_calls: read and decode parallelism (default AUTOTUNE).

    Returns:
        `(dataset, steps_per_epoch)`; elements `(waveforms [b, crop_samples]
        float32, labels [b] int64)`, `b = batch_size` (or its share).

    Raises:
        ValueError: bad settings, too few shards for the workers, an epoch
            shorter than one batch, a missing or damaged shard or index.

    Reading errors: a damaged record fails `TFRecordDataset`'s CRC check
    (`DataLossError`, "corrupted record at <byte>"); tools/make_shards.py
    `--verify` then names the shard and key. Decoding errors name
    `<shard path>#<key>`.
    """
    import tensorflow as tf

    from keras_spk.data.pipeline import crop_batch

    if num_parallel_calls is None:
        num_parallel_calls = tf.data.AUTOTUNE
    batches, steps = _stream_epochs(
        shards, labels, batch_size, seed, start_epoch, replica, shuffle_buffer, cycle_length,
        num_parallel_calls,
    )

    def crop(contents, names, batch_labels, positions, batch_seed):
        return crop_batch(contents, names, batch_seed, crop_samples, sample_rate), batch_labels

    dataset = batches.map(crop, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE), steps
