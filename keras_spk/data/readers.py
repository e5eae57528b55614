"""Dataset readers: which audio files belong to which speaker.

Three ways to describe a corpus, each returning an `UtteranceList`:

* `read_voxceleb(root)`: the VoxCeleb layout `<spk>/<video>/<utt>.wav`.
* `read_librispeech(root)`: the LibriSpeech layout `<spk>/<chapter>/<utt>.flac`.

Both layouts collect every audio format the decoders read
(`keras_spk.data.formats.SUPPORTED_EXTENSIONS`: WAV, FLAC, Ogg Vorbis, MP3)
by default, whatever the corpus' usual one; `extensions=` restricts them.
* `read_manifest(path)`: a plain text file, one utterance a line:
  `path speaker [duration]` (whitespace or comma separated, `#` comments,
  paths relative to the manifest's folder unless absolute).
* `read_shards(folder)`: a corpus packed by tools/make_shards.py
  (`keras_spk.data.shards`); its paths are shard references.

`read_wsj0_2mix(root, subset)` reads a speech-separation corpus instead: a
list of `SeparationMixture` (mixture, source files, their speakers), so it
is not among the `READERS` below, which all return an `UtteranceList`.

`read_dataset(layout, location)` picks one by name, for configs. A
`SpeakerMap` fixes the speaker-to-index order of a model's output layer and
is saved with every run.
"""

import dataclasses
import json
import os

import numpy as np

from keras_spk.data.formats import SUPPORTED_EXTENSIONS
from keras_spk.data.shards import read_shards
from keras_spk.utils.files import atomic_write_json

_SPEAKER_MAP_FORMAT = "keras_spk.speaker_map/1"


@dataclasses.dataclass
class UtteranceList:
    """Audio files and their speakers.

    Attributes:
        paths: absolute file paths.
        speakers: speaker id of each file.
        root: folder the corpus was read from (for relative names).
        durations: optional duration of each file in seconds.
    """

    paths: list
    speakers: list
    root: str = ""
    durations: list = None

    def __post_init__(self):
        if len(self.paths) != len(self.speakers):
            raise ValueError(
                "paths and speakers must have the same length. "
                f"Received: {len(self.paths)} paths, {len(self.speakers)} speakers"
            )
        if self.durations is not None and len(self.durations) != len(self.paths):
            raise ValueError(
                "durations must have one entry per path. "
                f"Received: {len(self.durations)} durations, {len(self.paths)} paths"
            )

    def __len__(self):
        return len(self.paths)

    @property
    def speaker_ids(self):
        """Sorted distinct speaker ids."""
        return sorted(set(self.speakers))

    def speaker_map(self):
        """A `SpeakerMap` over this list's speakers, in sorted order."""
        return SpeakerMap(self.speaker_ids)

    def labels(self, speaker_map=None):
        """Integer label of each file under `speaker_map` (default: `self.speaker_map()`)."""
        speaker_map = speaker_map or self.speaker_map()
        return speaker_map.encode(self.speakers)

    def relative_paths(self):
        """Paths relative to `root`; a shard reference's name is its utterance key."""
        return [
            p.split("#", 1)[1] if p.startswith("shard://") and "#" in p else os.path.relpath(p, self.root)
            for p in self.paths
        ]

    def select(self, indices):
        """A new list holding only the given positions."""
        indices = list(indices)
        return UtteranceList(
            paths=[self.paths[i] for i in indices],
            speakers=[self.speakers[i] for i in indices],
            root=self.root,
            durations=None if self.durations is None else [self.durations[i] for i in indices],
        )


class SpeakerMap:
    """The speaker-to-index order of a model's output layer.

    Args:
        speakers: speaker ids in index order (must be distinct).

    Example:
    >>> m = SpeakerMap(["id10001", "id10002"])
    >>> m.encode(["id10002"])
    array([1])
    """

    def __init__(self, speakers):
        speakers = [str(s) for s in speakers]
        if len(set(speakers)) != len(speakers):
            raise ValueError("SpeakerMap speakers must be distinct. Received duplicates.")
        self.speakers = speakers
        self._index = {s: i for i, s in enumerate(speakers)}

    def __len__(self):
        return len(self.speakers)

    def __contains__(self, speaker):
        return speaker in self._index

    def __eq__(self, other):
        return isinstance(other, SpeakerMap) and self.speakers == other.speakers

    def index(self, speaker):
        return self.encode([speaker])[0]

    def encode(self, speakers):
        """Indices of `speakers`; an unknown speaker raises naming it."""
        try:
            return np.array([self._index[s] for s in speakers], dtype=np.int64)
        except KeyError as error:
            raise ValueError(
                f"Unknown speaker {error.args[0]!r}: not among the {len(self)} speakers of "
                "this map. Use the speaker map saved with the model's run."
            ) from None

    def decode(self, indices):
        return [self.speakers[int(i)] for i in indices]

    def save(self, path):
        """Writes the map as JSON (atomically)."""
        atomic_write_json(path, {"format": _SPEAKER_MAP_FORMAT, "speakers": self.speakers})

    @classmethod
    def load(cls, path):
        """Reads a map written by `save`."""
        try:
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read speaker map ({error}).") from None
        if not isinstance(content, dict) or content.get("format") != _SPEAKER_MAP_FORMAT:
            raise ValueError(
                f"{path}: not a keras_spk speaker map (expected format {_SPEAKER_MAP_FORMAT!r})."
            )
        speakers = content.get("speakers")
        if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers):
            raise ValueError(f"{path}: corrupt speaker map ('speakers' must be a list of strings).")
        try:
            return cls(speakers)
        except ValueError as error:
            raise ValueError(f"{path}: corrupt speaker map ({error})") from None


def _normalise_extensions(extensions):
    if extensions is None:
        return tuple(SUPPORTED_EXTENSIONS)
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    unknown = [e for e in extensions if e not in SUPPORTED_EXTENSIONS]
    if not extensions:
        raise ValueError(
            f"`extensions` names no format; give some of {list(SUPPORTED_EXTENSIONS)}, or None for all."
        )
    if unknown:
        raise ValueError(
            f"Unsupported audio extension(s) {unknown}; supported: {list(SUPPORTED_EXTENSIONS)}."
        )
    return extensions


def read_directory(root, extensions=None, layout_name="<speaker>/<session>/<utterance>"):
    """Reads a three-level `<speaker>/<session>/<utterance>` tree.

    Files without an audio extension (transcripts, READMEs) are ignored;
    audio files at another depth are an error, since they would otherwise be
    silently left out or given the wrong speaker.

    Args:
        root: corpus folder.
        extensions: audio file extensions to collect, e.g. `(".wav",)`
            (case-insensitive, with or without the dot). `None` (default):
            every format the decoders read, `SUPPORTED_EXTENSIONS`.
        layout_name: layout shown in error messages.

    Returns:
        An `UtteranceList`, sorted by path.
    """
    root = os.path.abspath(os.fspath(root))
    extensions = _normalise_extensions(extensions)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Data folder {root} does not exist. Check --data / data.train.")
    paths, speakers, misplaced, left_out = [], [], [], {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        depth = os.path.relpath(dirpath, root).count(os.sep) + 1 if dirpath != root else 0
        for name in sorted(filenames):
            if not name.lower().endswith(extensions):
                other = os.path.splitext(name)[1].lower()
                if other in SUPPORTED_EXTENSIONS:
                    left_out[other] = left_out.get(other, 0) + 1
                continue
            full = os.path.join(dirpath, name)
            if depth != 2:
                misplaced.append(os.path.relpath(full, root))
                continue
            paths.append(full)
            speakers.append(os.path.relpath(dirpath, root).split(os.sep)[0])
    if misplaced:
        shown = ", ".join(misplaced[:5])
        raise ValueError(
            f"{len(misplaced)} audio file(s) under {root} are not at {layout_name} depth "
            f"(e.g. {shown}). Move them into that layout or list the corpus in a manifest."
        )
    if not paths:
        found = ", ".join(f"{n} {e}" for e, n in sorted(left_out.items()))
        raise ValueError(
            f"No {'/'.join(extensions)} files found under {root} in the layout {layout_name}."
            + (
                f" It holds {found} file(s), which `extensions` leaves out; leave it unset "
                "to collect every supported format."
                if left_out
                else ""
            )
        )
    return UtteranceList(paths=paths, speakers=speakers, root=root)


def read_voxceleb(root, extensions=None):
    """Reads a VoxCeleb-layout tree `<speaker>/<video>/<utterance>.<ext>`.

    Args:
        root: corpus folder.
        extensions: audio extensions to collect; `None` (default): every
            supported format (`.wav`, `.flac`, `.ogg`, `.mp3`), so a
            VoxCeleb copy converted to FLAC reads as it is.
    """
    return read_directory(root, extensions, "<speaker>/<video>/<utterance>")


def read_librispeech(root, extensions=None):
    """Reads a LibriSpeech-layout tree `<speaker>/<chapter>/<utterance>.<ext>`.

    Args:
        root: corpus folder.
        extensions: audio extensions to collect; `None` (default): every
            supported format (`.wav`, `.flac`, `.ogg`, `.mp3`). Transcripts
            (`.trans.txt`) are ignored.
    """
    return read_directory(root, extensions, "<speaker>/<chapter>/<utterance>")


def read_manifest(path, root=None):
    """Reads a manifest: one `path speaker [duration]` line per utterance.

    Fields are separated by commas or whitespace; blank lines and lines
    starting with `#` are skipped; a first line `path speaker ...` is taken
    as a header. Relative paths are resolved against `root` (default: the
    manifest's folder). Every listed file must exist.

    Raises:
        ValueError: naming the manifest line of a malformed entry or of
            missing files.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest {path} does not exist.")
    root = os.path.abspath(root if root is not None else os.path.dirname(path))
    paths, speakers, durations, missing = [], [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.replace(",", " ").split()
            if number == 1 and fields[:2] == ["path", "speaker"]:
                continue
            if len(fields) not in (2, 3):
                raise ValueError(
                    f"{path} line {number}: expected 'path speaker [duration]', got {line!r}."
                )
            full = fields[0] if os.path.isabs(fields[0]) else os.path.join(root, fields[0])
            if not os.path.isfile(full):
                missing.append(f"line {number}: {full}")
            paths.append(full)
            speakers.append(fields[1])
            if len(fields) == 3:
                try:
                    durations.append(float(fields[2]))
                except ValueError:
                    raise ValueError(
                        f"{path} line {number}: duration {fields[2]!r} is not a number."
                    ) from None
            else:
                durations.append(None)
    if missing:
        raise FileNotFoundError(
            f"{path}: {len(missing)} listed file(s) do not exist: "
            + "; ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
        )
    if not paths:
        raise ValueError(f"Manifest {path} lists no utterances.")
    if any(d is None for d in durations):
        durations = None if all(d is None for d in durations) else durations
        if durations is not None:
            raise ValueError(f"{path}: give a duration on every line or on none.")
    return UtteranceList(paths=paths, speakers=speakers, root=root, durations=durations)


WSJ0_2MIX_SUBSETS = ("tr", "cv", "tt")


@dataclasses.dataclass(frozen=True)
class SeparationMixture:
    """One mixture of a separation corpus, with its sources and their speakers.

    Attributes:
        mixture: absolute path of the mixture's audio file.
        sources: absolute paths of the source files, in the corpus' order
            (`s1`, `s2`, ...).
        speakers: speaker id of each source, in the same order.
    """

    mixture: str
    sources: tuple
    speakers: tuple

    @property
    def name(self):
        """The mixture's file name without its extension."""
        return os.path.splitext(os.path.basename(self.mixture))[0]


def _wsj0_2mix_speakers(path):
    """WSJ0 speakers of `<utt1>_<gain1>_<utt2>_<gain2>.wav`: first 3 characters of each utt."""
    fields = os.path.splitext(os.path.basename(path))[0].split("_")
    if len(fields) != 4 or len(fields[0]) < 3 or len(fields[2]) < 3:
        raise ValueError(
            f"{path}: not a WSJ0-2mix mixture name <utterance1>_<gain1>_<utterance2>_<gain2>.wav "
            "(e.g. 011a0101_0.061105_401c020r_-0.061105.wav), so its speakers are unknown. "
            "Remove the file or use the corpus' own names."
        )
    return fields[0][:3], fields[2][:3]


def read_wsj0_2mix(root, subset):
    """Reads one subset of WSJ0-2mix: `<root>/<subset>/{mix,s1,s2}/<name>.wav`.

    `root` is one rate and mode of the corpus as its scripts write it,
    typically `.../wsj0-mix/2speakers/wav16k/min`; `subset` is `"tr"`
    (20,000 training mixtures), `"cv"` (5,000) or `"tt"` (3,000, unseen
    speakers). A mixture's name joins its two WSJ0 utterance ids and gains
    (`011a0101_0.061105_401c020r_-0.061105.wav`); the speaker of each
    source is the first 3 characters of its utterance id (`011`, `401`).

    Args:
        root: the folder holding `tr`, `cv` and `tt`.
        subset: `"tr"`, `"cv"` or `"tt"`.

    Returns:
        A list of `SeparationMixture`, sorted by file name.

    Raises:
        ValueError: an unknown subset, no mixtures, or a mixture whose name
            does not give its speakers.
        FileNotFoundError: a missing subset or `mix` / `s1` / `s2` folder,
            or mixtures without their source files (the missing files are
            named).

    Example:

    ```python
    mixtures = read_wsj0_2mix("wsj0-mix/2speakers/wav16k/min", "tt")
    mixtures[0].sources  # (".../tt/s1/<name>.wav", ".../tt/s2/<name>.wav")
    mixtures[0].speakers  # e.g. ("050", "051")
    ```

    Reference:
        - Hershey, Chen, Le Roux and Watanabe, Deep clustering:
          discriminative embeddings for segmentation and separation,
          ICASSP 2016 (WSJ0-2mix)
    """
    if subset not in WSJ0_2MIX_SUBSETS:
        raise ValueError(
            f"Unknown WSJ0-2mix subset {subset!r}. Valid subsets: {list(WSJ0_2MIX_SUBSETS)} "
            "(training, validation, test)."
        )
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"WSJ0-2mix folder {root} does not exist.")
    folder = os.path.join(root, subset)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"WSJ0-2mix subset folder {folder} does not exist. Give the folder holding "
            "tr/, cv/ and tt/ (e.g. .../wsj0-mix/2speakers/wav16k/min)."
        )
    parts = ("mix", "s1", "s2")
    missing_folders = [p for p in parts if not os.path.isdir(os.path.join(folder, p))]
    if missing_folders:
        raise FileNotFoundError(
            f"WSJ0-2mix subset {folder} has no {', '.join(missing_folders)} folder(s); "
            "each subset needs mix/, s1/ and s2/."
        )
    names = sorted(
        n for n in os.listdir(os.path.join(folder, "mix")) if n.lower().endswith(".wav")
    )
    if not names:
        raise ValueError(f"No .wav mixtures found in {os.path.join(folder, 'mix')}.")
    mixtures, missing = [], []
    for name in names:
        sources = tuple(os.path.join(folder, p, name) for p in parts[1:])
        missing.extend(s for s in sources if not os.path.isfile(s))
        mixture = os.path.join(folder, "mix", name)
        mixtures.append(SeparationMixture(mixture, sources, _wsj0_2mix_speakers(mixture)))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} source file(s) of WSJ0-2mix mixtures in {folder} do not exist: "
            + "; ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + ". Every mix/<name>.wav needs s1/<name>.wav and s2/<name>.wav."
        )
    return mixtures


READERS = {
    "voxceleb": read_voxceleb,
    "librispeech": read_librispeech,
    "manifest": read_manifest,
    "shards": read_shards,
}


def read_dataset(layout, location, **kwargs):
    """Reads a corpus by layout name: one of `READERS` ("voxceleb", "librispeech", "manifest",
    "shards": a folder of `keras_spk.data.shards`)."""
    if layout not in READERS:
        raise ValueError(f"Unknown data layout {layout!r}. Valid layouts: {sorted(READERS)}.")
    return READERS[layout](location, **kwargs)


def check_speaker_overlap(train_speakers, eval_speakers, allow_overlap=False):
    """Raises when a training speaker also appears in the evaluation data.

    Returns the sorted shared speakers (empty when disjoint).
    """
    shared = sorted(set(train_speakers) & set(eval_speakers))
    if shared and not allow_overlap:
        raise ValueError(
            f"{len(shared)} speaker(s) appear in both the training and the evaluation data "
            f"(e.g. {shared[:5]}); verification results would be optimistic. Use disjoint "
            "speakers, or allow it explicitly (data.allow_speaker_overlap: true)."
        )
    return shared
