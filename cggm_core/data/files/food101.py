"""UPMC-Food-101 from its folder of JSON lists and images (the layout the official code reads).

    <folder>/train.json, <folder>/test.json
        [{"id": ..., "text_tokens": ["word", ...], "label": "<class name>", "img_path": "<path>"}, ...]
    <folder>/<img_path>                      one image per entry, read with Pillow
    <features>/{train,test}_ids.npy          optional precomputed features: (N,) ids, one per row
    <features>/{train,test}_{image,text}.npy (N, D) or (N, T, D) features, rows as in the ids file

`label` is the class name; its id is its position in the class list (by default the 101 Food-101
categories in alphabetical order, as the official `CLASS_NAME`; `classes=None` takes the sorted
names found in train.json). `img_path` is relative to the folder and may not leave it.

Splits. `test` is test.json. The official code validates (and picks its best epoch) on the test
split; we carve `valid` from train.json instead: `valid_fraction` of each class, seeded by
`seed`. `validate_on_test=True` reproduces the official quirk (valid = test, train = all of
train.json).

Modalities `image` and `text`, each either raw or precomputed:
- image, raw: (3, size, size) float32 through `ImagePipeline` (default: the official evaluation
  transform). The official trains on augmented images (flip, colour jitter, grey, blur); those
  augmentations are not implemented here.
- text, raw: `text="tokens"` gives the (n,) array of token strings, for a tokenizer that joins them
  with spaces (the official feeds BERT ' '.join(text_tokens), at most 50 word pieces);
  `text="ids"` gives (n,) int64 ids from a `Vocabulary` built on the training split (after the
  validation carve: no leakage), truncated to `max_tokens`, for a small encoder trained from scratch.
- precomputed: a modality whose `<split>_<modality>.npy` files exist in `features` comes from them
  (memory-mapped, read per sample) for both json splits; a file for one split only is an error.
  `features` may also map each modality to its own folder ({"image": dir_a, "text": dir_b}, each
  with its own ids files); a modality named there must have its files, the others stay raw.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from .common import (
    DataFormatError,
    FileDataset,
    Sample,
    SampleSource,
    load_npy,
    require_dir,
    require_file,
    seeded_holdout,
)
from .images import ImagePipeline, load_rgb, preprocess
from .root import DataPathError, check_relative_path

MODALITIES: tuple[str, str] = ("image", "text")
JSON_SPLITS: tuple[str, str] = ("train", "test")
TEXT_MAX_TOKENS = 50  # the official TEXT_MAX_LENGTH
LAYOUT = (
    "the UPMC-Food-101 folder: train.json and test.json (lists of {id, text_tokens, label, img_path}) "
    "and the images at img_path under the folder"
)

FOOD101_CLASSES: tuple[str, ...] = tuple(
    """
    apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap
    bread_pudding breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake
    ceviche cheese_plate cheesecake chicken_curry chicken_quesadilla chicken_wings chocolate_cake
    chocolate_mousse churros clam_chowder club_sandwich crab_cakes creme_brulee croque_madame
    cup_cakes deviled_eggs donuts dumplings edamame eggs_benedict escargots falafel filet_mignon
    fish_and_chips foie_gras french_fries french_onion_soup french_toast fried_calamari fried_rice
    frozen_yogurt garlic_bread gnocchi greek_salad grilled_cheese_sandwich grilled_salmon guacamole
    gyoza hamburger hot_and_sour_soup hot_dog huevos_rancheros hummus ice_cream lasagna
    lobster_bisque lobster_roll_sandwich macaroni_and_cheese macarons miso_soup mussels nachos
    omelette onion_rings oysters pad_thai paella pancakes panna_cotta peking_duck pho pizza
    pork_chop poutine prime_rib pulled_pork_sandwich ramen ravioli red_velvet_cake risotto samosa
    sashimi scallops seaweed_salad shrimp_and_grits spaghetti_bolognese spaghetti_carbonara
    spring_rolls steak strawberry_shortcake sushi tacos takoyaki tiramisu tuna_tartare waffles
    """.split()  # noqa: SIM905 (101 names read better as a block)
)
assert len(FOOD101_CLASSES) == 101 and list(FOOD101_CLASSES) == sorted(FOOD101_CLASSES)


@dataclass(frozen=True)
class Vocabulary:
    """Token → id for a text encoder trained from scratch: 0 pads, 1 stands for unknown tokens."""

    tokens: tuple[str, ...]  # tokens[id]; tokens[0] == "<pad>", tokens[1] == "<unk>"
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    PAD: ClassVar[int] = 0
    UNK: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 3) -> Vocabulary:
        """Tokens seen at least `min_freq` times, most frequent first (ties alphabetical)."""
        counts = Counter(t for tokens in token_lists for t in tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(("<pad>", "<unk>", *kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], max_tokens: int) -> np.ndarray:
        """(min(n, max_tokens),) int64 ids; unknown tokens map to UNK."""
        return np.asarray([self._ids.get(t, self.UNK) for t in tokens[:max_tokens]], dtype=np.int64)


@dataclass(frozen=True)
class _Entry:
    id: str
    tokens: tuple[str, ...]
    label: int
    image: Path


def read_food101(
    folder: str | Path,
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    validate_on_test: bool = False,
    classes: Sequence[str] | None = FOOD101_CLASSES,
    image: ImagePipeline | None = None,
    text: Literal["tokens", "ids"] = "tokens",
    max_tokens: int = TEXT_MAX_TOKENS,
    min_freq: int = 3,
    features: str | Path | Mapping[str, str | Path] | None = None,
) -> FileDataset:
    """Read the UPMC-Food-101 folder.

    `features`: a folder of feature files (or {modality: folder}), absolute or relative to
    `folder`. The reader does not check it against the data root: resolve it with
    `resolve_under_root` first.
    """
    if text not in ("tokens", "ids"):
        raise ValueError(f"text must be 'tokens' or 'ids', got {text!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be ≥ 1, got {max_tokens}")
    pipeline = image or ImagePipeline()
    folder = require_dir(Path(folder), LAYOUT)
    raw = {s: _read_json(folder / f"{s}.json") for s in JSON_SPLITS}
    class_names = (
        tuple(classes)
        if classes is not None
        else tuple(sorted({e["label"] for e in raw["train"] if isinstance(e["label"], str)}))
    )
    class_id = {c: i for i, c in enumerate(class_names)}
    entries = {s: _entries(folder / f"{s}.json", folder, raw[s], class_id) for s in JSON_SPLITS}

    feats: dict[str, dict[str, np.ndarray]] = {s: {} for s in JSON_SPLITS}
    rows: dict[str, dict[str, np.ndarray]] = {s: {} for s in JSON_SPLITS}  # split → modality → row per entry
    folders: dict[Path, list[str] | None] = {}  # folder → the modalities read from it (None: all found)
    if isinstance(features, Mapping):
        for m, d in features.items():
            if m not in MODALITIES:
                raise ValueError(f"features: unknown modality {m!r}; expected {', '.join(MODALITIES)}")
            folders.setdefault(folder / d, []).append(m)  # type: ignore[union-attr]
    elif features is not None:
        folders[folder / features] = None
    for d, wanted in folders.items():
        fdir = require_dir(d, "a folder of {train,test}_ids.npy and {train,test}_{image,text}.npy")
        got, got_rows = _read_features(fdir, entries, None if wanted is None else tuple(wanted))
        for s in JSON_SPLITS:
            feats[s].update(got[s])
            rows[s].update({m: got_rows[s] for m in got[s]})
    for s in JSON_SPLITS:
        if "image" not in feats[s]:
            for i, e in enumerate(entries[s]):
                if not e.image.is_file():
                    raise DataFormatError(e.image, f"no such image file (entry {i} of {s}.json)")

    train_all = entries["train"]
    if validate_on_test:
        kept, held = np.arange(len(train_all)), None
    else:
        kept, held = seeded_holdout([e.label for e in train_all], valid_fraction, seed)
    vocab = Vocabulary.build((train_all[i].tokens for i in kept), min_freq) if text == "ids" else None

    def split(name: str, json_split: str, idx: np.ndarray) -> FoodSplit:
        es = [entries[json_split][i] for i in idx]
        r = {m: per_entry[idx] for m, per_entry in rows[json_split].items()}
        return FoodSplit(name, es, feats[json_split], r, pipeline, text, vocab, max_tokens)

    test_idx = np.arange(len(entries["test"]))
    train = split("train", "train", kept)
    valid = split("valid", "test", test_idx) if held is None else split("valid", "train", held)
    test = split("test", "test", test_idx)

    shapes: dict[str, tuple[int | None, ...]] = {}
    dims: dict[str, int] = {}
    seq_lens: dict[str, int] = {}
    for m in MODALITIES:
        if m in feats["train"]:
            shape = tuple(int(v) for v in feats["train"][m].shape[1:])
            shapes[m], dims[m] = shape, shape[-1]
            if len(shape) == 2:
                seq_lens[m] = shape[0]
        elif m == "image":
            shapes[m], dims[m] = (3, pipeline.size, pipeline.size), 3
        else:
            shapes[m] = (None,)
            longest = max((len(e.tokens) for s in JSON_SPLITS for e in entries[s]), default=0)
            seq_lens[m] = min(longest, max_tokens) if vocab is not None else longest
            if vocab is not None:
                dims[m] = len(vocab)
    return FileDataset(
        name="food101",
        task="classification",
        modalities=MODALITIES,
        num_classes=len(class_names),
        feature_dims=dims,
        sample_shapes=shapes,
        seq_lens=seq_lens,
        train=train,
        valid=valid,
        test=test,
        info={
            "folder": str(folder),
            "class_names": class_names,
            "validate_on_test": validate_on_test,
            "precomputed": sorted(feats["train"]),
            "text": text,
            "vocabulary": vocab,
        },
    )


class FoodSplit(SampleSource):
    """Sample i: entry i's image and text, each raw (decoded on demand) or a row of a feature file."""

    def __init__(
        self,
        split: str,
        entries: list[_Entry],
        features: dict[str, np.ndarray],
        feature_rows: dict[str, np.ndarray],
        pipeline: ImagePipeline,
        text: str,
        vocab: Vocabulary | None,
        max_tokens: int,
    ) -> None:
        self.split = split
        self.modalities = MODALITIES
        self.entries = entries
        self.features = features  # modality → memory-mapped (N_file, ...) array
        self.feature_rows = feature_rows  # modality → (len,) row of each sample in its feature file
        self.pipeline = pipeline
        self.text = text
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.y = np.asarray([e.label for e in entries], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> np.ndarray:
        return self.y

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        e = self.entries[i]
        xs: dict[str, np.ndarray] = {}
        for m, arr in self.features.items():
            xs[m] = np.array(arr[int(self.feature_rows[m][i])], dtype=np.float32)  # a copy: the memmap is read-only
        if "image" not in xs:
            xs["image"] = preprocess(load_rgb(e.image), self.pipeline)
        if "text" not in xs:
            if self.vocab is not None:
                # An entry without tokens reads as one unknown token: an empty sequence has nothing to attend to.
                xs["text"] = self.vocab.encode(e.tokens or ("",), self.max_tokens)
            else:
                xs["text"] = np.asarray(e.tokens, dtype=np.str_).reshape(len(e.tokens))
        return xs, int(e.label)


def _read_json(path: Path) -> list[dict[str, Any]]:
    require_file(path, LAYOUT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"truncated or not a JSON file ({err})") from err
    if not isinstance(data, list):
        raise DataFormatError(path, f"holds a JSON {type(data).__name__}, expected a list of entries")
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise DataFormatError(
                path, f"entry {i} is a {type(e).__name__}, expected {{id, text_tokens, label, img_path}}"
            )
        for key in ("id", "text_tokens", "label", "img_path"):
            if key not in e:
                raise DataFormatError(
                    path, f"entry {i} has no {key!r}; each entry needs id, text_tokens, label, img_path"
                )
    return data


def _entries(path: Path, folder: Path, data: list[dict[str, Any]], class_id: dict[str, int]) -> list[_Entry]:
    out: list[_Entry] = []
    seen: set[str] = set()
    for i, e in enumerate(data):
        if not isinstance(e["id"], (str, int)) or isinstance(e["id"], bool):
            raise DataFormatError(path, f"entry {i}: id {e['id']!r} is not a string or an integer")
        sid = str(e["id"])
        if sid in seen:
            raise DataFormatError(path, f"entry {i}: id {sid!r} appears twice")
        seen.add(sid)
        tokens = e["text_tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataFormatError(path, f"entry {i} (id {sid!r}): text_tokens must be a list of strings")
        label = e["label"]
        if not isinstance(label, str) or label not in class_id:
            raise DataFormatError(
                path, f"entry {i} (id {sid!r}): label {label!r} is not one of the {len(class_id)} class names"
            )
        img = e["img_path"]
        if not isinstance(img, str):
            raise DataFormatError(path, f"entry {i} (id {sid!r}): img_path {img!r} is not a string")
        try:
            rel = check_relative_path(img, folder)
        except DataPathError as err:
            raise DataFormatError(path, f"entry {i} (id {sid!r}): {err}") from err
        out.append(_Entry(sid, tuple(tokens), class_id[label], folder / rel))
    return out


def _read_features(
    fdir: Path, entries: dict[str, list[_Entry]], wanted: tuple[str, ...] | None = None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Memory-map the feature files (of `wanted` modalities, which must be there; None: those found);
    returns ({split: {modality: array}}, {split: row per entry})."""
    layout = f"{{train,test}}_ids.npy beside {{train,test}}_{{image,text}}.npy in {fdir}"
    feats: dict[str, dict[str, np.ndarray]] = {s: {} for s in JSON_SPLITS}
    for m in MODALITIES if wanted is None else wanted:
        present = [s for s in JSON_SPLITS if (fdir / f"{s}_{m}.npy").is_file()]
        if wanted is not None and not present:
            raise DataFormatError(fdir / f"train_{m}.npy", f"no such file; expected {layout}")
        if len(present) == 1:
            other = next(s for s in JSON_SPLITS if s not in present)
            raise DataFormatError(
                fdir / f"{other}_{m}.npy",
                f"missing, but {present[0]}_{m}.npy exists: a modality's features cover every split",
            )
        for s in present:
            arr = load_npy(fdir / f"{s}_{m}.npy", layout, mmap=True)
            if arr.ndim not in (2, 3) or arr.dtype.kind not in "fiu":
                raise DataFormatError(
                    fdir / f"{s}_{m}.npy",
                    f"has shape {arr.shape}, dtype {arr.dtype}; expected (N, D) or (N, T, D) numbers",
                )
            feats[s][m] = arr
    if not feats["train"]:
        raise DataFormatError(fdir, f"holds no feature file; expected {layout}")
    shapes = {s: {m: a.shape[1:] for m, a in feats[s].items()} for s in JSON_SPLITS}
    for m in feats["train"]:
        if shapes["train"][m] != shapes["test"][m]:
            raise DataFormatError(
                fdir / f"test_{m}.npy", f"rows are {shapes['test'][m]} but train_{m}.npy's are {shapes['train'][m]}"
            )
    rows: dict[str, np.ndarray] = {}
    for s in JSON_SPLITS:
        ids_path = fdir / f"{s}_ids.npy"
        ids = load_npy(ids_path, layout)
        if ids.ndim != 1 or ids.dtype.kind not in "SUiu":
            raise DataFormatError(ids_path, f"has shape {ids.shape}, dtype {ids.dtype}; expected (N,) ids")
        keys = [v.decode() if isinstance(v, bytes) else str(v) for v in ids.tolist()]
        for m, a in feats[s].items():
            if len(a) != len(keys):
                raise DataFormatError(
                    fdir / f"{s}_{m}.npy", f"has {len(a)} rows but {ids_path.name} lists {len(keys)} ids"
                )
        where = {k: r for r, k in enumerate(keys)}
        missing = [e.id for e in entries[s] if e.id not in where]
        if missing:
            raise DataFormatError(
                ids_path, f"has no row for id {missing[0]!r} of {s}.json ({len(missing)} ids missing)"
            )
        rows[s] = np.asarray([where[e.id] for e in entries[s]], dtype=np.int64)
    return feats, rows
