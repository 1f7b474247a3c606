"""Training data: colour photos -> memory-mapped NumPy shards -> batches.

``prepare_shards`` turns folders and archives of colour photos into shards
(method.md, "Training"): per example the L channel, the true a*b* and the
frozen extractor's embedding, computed once, batched, ahead of training.
``ShardSet`` memory-maps the shards back and ``ShardBatches`` serves
shuffled batches (``keras_dataset`` wraps them for ``model.fit``).  Nothing
here imports TensorFlow (nor Keras, except ``keras_dataset``): the same code
runs on Keras' JAX backend on a GPU machine where TensorFlow is absent.

Shard layout (``<out>/``)::

    meta.json             options, extractor, counts, skipped photos
    plan.json             which photos go into which shard (fixed at the first run)
    train-00000/          one finished shard (renamed into place when complete)
        l.npy             uint8  (n, S, S)     L* * 255/100
        ab.npy            int8   (n, S, S, 2)  a*, b* rounded, clipped to [-128, 127]
        emb.npy           float16 (n, E)       extractor embedding
        info.json         photos, examples, gray and unreadable photos of the shard
    val-00000/ ...

For the U-Net (``PrepareOptions.model = "unet"``, :mod:`streamcolor.trainer.unet`)
a shard holds, instead of ``emb.npy``, the frozen encoder's feature maps
``s4.npy``, ``s8.npy``, ``s16.npy`` (float16, (n, S/k, S/k, C)), and ``ab.npy``
at the model's output grid (S/4, area-averaged): everything below the U-Net's
trainable part is computed once here, so training runs only the decoder.
Mirroring happens when the crops are cut (feature maps cannot be mirrored
afterwards).

Quantisation error of the storage is ~1e-5 in the loss's [-1, 1] scaling
(uniform rounding of a*b* by one unit: (1/128)^2 / 12), small against the
~2.5e-3 MSE the method reaches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from streamcolor.engines import archives, lab

log = logging.getLogger(__name__)

#: Shard format version written to meta.json.
SHARDS_FORMAT = 1
META = "meta.json"
PLAN = "plan.json"
SPLITS = ("train", "val")
#: What a shard set is made for: the seed network (embeddings) or the U-Net (feature maps).
MODELS = ("koalarization", "unet")
#: Manifest split for photos of whole sources kept out of training *and*
#: validation, to measure the model on pictures from sources it never saw.
#: :func:`prepare_shards` leaves them out unless asked (``splits=``).
HOLDOUT = "holdout"
ALL_SPLITS = (*SPLITS, HOLDOUT)
#: File name suffixes read as photos (folders and archive members).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".ppm", ".pgm")
ARCHIVE_SUFFIXES = tuple(s for suffixes in archives.ARCHIVE_SUFFIXES.values() for s in suffixes)
#: L is stored as uint8 L* * L_U8 (L* in [0, 100]).
L_U8 = 255.0 / 100.0
#: Keys a manifest entry may use for the photo's path, and for its split.
_MANIFEST_FILE_KEYS = ("file", "path", "filename", "local_path", "name")
_MANIFEST_LIST_KEYS = ("photos", "images", "items", "files", "entries")
_SPLIT_ALIASES = {"train": "train", "training": "train",
                  "val": "val", "valid": "val", "validation": "val", "test": "val",
                  "eval": "val", "holdout": HOLDOUT, "heldout": HOLDOUT, "held_out": HOLDOUT}


class DataError(RuntimeError):
    """The photos or shards cannot be used (empty set, all gray, mismatching options...)."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PrepareOptions:
    """Knobs of :func:`prepare_shards`."""

    size: int = 224  # side of the square training examples, pixels (multiple of 8; of 32 for "unet")
    model: str = "koalarization"  # "koalarization" (embeddings, the seed) or "unet" (encoder feature maps)
    extractor: str = "efficientnet_lite0"  # name in streamcolor.trainer.extractors.EXTRACTORS
    extractor_weights: str | None = "default"  # "default" (pre-trained) or None (random: tests only)
    crops_per_photo: int = 0  # 0: the whole photo, letterboxed (method.md); N: N random square crops
    min_crop_scale: float = 0.35  # random crop side, as a fraction of the photo's shorter side: [this, 1]
    flip: bool = True  # random crops are mirrored left-right with probability 1/2
    gray_threshold: float = 3.0  # photos with mean chroma sqrt(a*^2+b*^2) below this are skipped
    val_fraction: float = 0.1  # share of photos held out (by content hash), if no manifest split
    seed: int = 0  # crop randomness and the hash split
    shard_size: int = 512  # examples per shard (about, since gray photos drop out)
    embed_batch: int = 32  # extractor batch size
    workers: int = 0  # decode threads; 0: one per CPU core

    def fingerprint(self) -> dict[str, Any]:
        """The options that decide the content of the shards (a rerun must match them)."""
        d = asdict(self)
        for k in ("embed_batch", "workers"):
            d.pop(k)
        if d["model"] == MODELS[0]:  # shards written before "model" existed stay valid
            d.pop("model")
        return d


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PhotoRef:
    """One photo: a file, or a member of a zip or tar archive."""

    key: str  # stable id, e.g. "holiday/01.jpg" or "set.zip::a/01.jpg"
    path: Path  # the file, or the archive
    member: str | None = None  # member name inside the archive
    split: str | None = None  # "train"/"val" from a manifest, else None
    # the member's index in the archive: the name listed may not be the one stored (a zip written without
    # its UTF-8 flag stores "é" as CP437 bytes; the listing decodes them as UTF-8), so it is read by index
    locator: int = -1

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        return _archive_member(self.path, self.member, self.locator)


# Archives are read with streamcolor.engines.archives, the reader (and safety checks) batch jobs use.
_ZIPS: dict[Path, archives.Source] = {}
_ZIP_LOCK = threading.Lock()


def _archive_member(path: Path, member: str, locator: int = -1) -> bytes:
    with _ZIP_LOCK:
        try:
            zf = _ZIPS.get(path)
            if zf is None:
                zf = _ZIPS[path] = archives.Source(path)
            if zf.kind != "zip":
                raise DataError(f"{path}: random access to tar members is not supported (they are extracted first)")
            return zf.read(member, locator)
        except archives.ArchiveError as exc:
            raise DataError(str(exc)) from exc


def _is_archive(p: Path) -> bool:
    return archives.kind_by_name(p.name) is not None


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def list_photos(sources: Sequence[str | Path], *, manifest: str | Path | None = None,
                extract_dir: Path | None = None) -> tuple[list[PhotoRef], list[dict[str, str]]]:
    """All photos in ``sources`` (files, folders, .zip and .tar* archives).

    A folder holding a ``manifest.json`` (or an explicit ``manifest``) is read
    through it: only the listed files, with their ``split``.  Tar members are
    extracted under ``extract_dir`` (tar has no random access).  Returns the
    photos sorted by key, and the problems found (dicts with ``key`` and
    ``error``: missing files, unsafe archive members).
    """
    photos: list[PhotoRef] = []
    problems: list[dict[str, str]] = []
    if manifest is not None:
        photos += _from_manifest(Path(manifest), problems)
    for src in sources:
        src = Path(src)
        if not src.exists():
            problems.append({"key": str(src), "error": "no such file or folder"})
        elif src.is_dir():
            if (src / "manifest.json").is_file() and manifest is None:
                photos += _from_manifest(src / "manifest.json", problems)
                continue
            for p in sorted(src.rglob("*")):
                if p.is_file() and (_is_image(p.name) or _is_archive(p)) and not p.name.startswith("."):
                    rel = p.relative_to(src).as_posix()
                    if _is_archive(p):
                        photos += _from_archive(p, f"{src.name}/{rel}", extract_dir, problems)
                    else:
                        photos.append(PhotoRef(f"{src.name}/{rel}", p))
        elif _is_archive(src):
            photos += _from_archive(src, src.name, extract_dir, problems)
        else:
            photos.append(PhotoRef(src.name, src))
    seen: set[str] = set()
    unique = []
    for p in sorted(photos, key=lambda r: r.key):
        if p.key not in seen:
            seen.add(p.key)
            unique.append(p)
    return unique, problems


def _from_archive(path: Path, key: str, extract_dir: Path | None,
                  problems: list[dict[str, str]]) -> list[PhotoRef]:
    out = []
    try:
        with archives.Source(path) as src:
            if src.kind != "zip" and extract_dir is None:
                raise DataError(f"{path}: tar archives need an extraction folder")
            target = extract_dir / hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12] \
                if extract_dir is not None else None
            for m in src.members():
                if not (m.broken or _is_image(m.name)):
                    continue
                name, _ = archives.safe_member_path(m.name)
                if m.refusal or name is None:
                    problems.append({"key": f"{key}::{m.name}", "error": m.refusal or "unsafe member name"})
                    continue
                if src.kind == "zip":
                    out.append(PhotoRef(f"{key}::{name}", path, m.name, locator=m.locator))
                    continue
                dest = target / name  # tar: no random access, so extracted
                if not dest.is_file():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(dest.name + ".part")
                    tmp.write_bytes(src.read(m.name, m.locator))
                    tmp.replace(dest)
                out.append(PhotoRef(f"{key}::{name}", dest))
    except (OSError, archives.ArchiveError) as exc:
        problems.append({"key": key, "error": f"unreadable archive: {exc}"})
    return out


def _from_manifest(manifest: Path, problems: list[dict[str, str]]) -> list[PhotoRef]:
    """Photos listed in a manifest.json: a list of entries (or a dict holding one
    under "photos", "images", ...); each entry a dict with the path relative to
    the manifest's folder under "file" (or "path", "filename", ...) and an
    optional "split" ("train", "val" or "holdout"; "test"/"validation" count as val)."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{manifest}: unreadable manifest: {exc}") from exc
    if isinstance(data, dict):
        data = next((data[k] for k in _MANIFEST_LIST_KEYS if isinstance(data.get(k), list)), None)
    if not isinstance(data, list):
        raise DataError(f"{manifest}: expected a list of entries (or a dict with one of {_MANIFEST_LIST_KEYS})")
    base = manifest.parent
    out = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"file": entry}
        rel = next((entry[k] for k in _MANIFEST_FILE_KEYS if isinstance(entry, dict) and entry.get(k)), None)
        if rel is None:
            problems.append({"key": f"{manifest}#{i}", "error": f"entry has none of {_MANIFEST_FILE_KEYS}"})
            continue
        split = entry.get("split")
        if split is not None:
            split = _SPLIT_ALIASES.get(str(split).lower())
            if split is None:
                problems.append({"key": str(rel), "error": f"unknown split {entry.get('split')!r}; hashed"})
        path = base / rel
        if not path.is_file():
            problems.append({"key": str(rel), "error": "listed in the manifest but missing"})
            continue
        out.append(PhotoRef(f"{base.name}/{Path(rel).as_posix()}", path, split=split))
    log.info("%s: %d photos listed", manifest, len(out))
    return out


# --------------------------------------------------------------------------- image -> examples


#: Most pixels of a photo ``prepare`` and ``eval`` decode (100 Mpx, larger than any camera's): the
#: decoded photo and its float Lab copies take about 26 bytes a pixel, so one PNG of 30000 x 30000
#: that compresses to 3 MB took 23 GB and was killed by the kernel, with the run.
MAX_PHOTO_PIXELS = 100_000_000


def decode_photo(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 (H, W, 3), EXIF orientation applied.
    Raises ValueError when the bytes are not a decodable image, or hold more than ``max_pixels``
    pixels by their header (said before anything is decoded; default :data:`MAX_PHOTO_PIXELS`)."""
    max_pixels = MAX_PHOTO_PIXELS if max_pixels is None else max_pixels
    pixels = _header_pixels(data)
    if pixels is not None and pixels > max_pixels:
        raise ValueError(f"{pixels:,} pixels, more than {max_pixels:,} (a possible decompression bomb)")
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None or bgr.ndim != 3 or min(bgr.shape[:2]) < 8:
        raise ValueError("not a decodable image (or smaller than 8 pixels)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _header_pixels(data: bytes) -> int | None:
    """Width x height from the image's header (Pillow reads no pixels to tell), None if it cannot."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.size[0] * im.size[1]
    except Image.DecompressionBombError:  # (over twice Pillow's own limit: over ours too)
        return 1 << 62
    except Exception:  # (not an image Pillow knows: OpenCV says)
        return None


def mean_chroma(rgb: np.ndarray, max_side: int = 256) -> float:
    """Mean sqrt(a*^2 + b*^2) of an RGB uint8 image (measured on a copy at most
    ``max_side`` pixels long); below ~3 a photo is gray or nearly so
    (a colourful photo scores 10-30; a small coloured object on white, 4-6)."""
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ab = lab.rgb_to_lab(small)[..., 1:]
    return float(np.sqrt((ab * ab).sum(-1)).mean())


def photo_examples(rgb: np.ndarray, options: PrepareOptions, rng: np.random.Generator) -> np.ndarray:
    """Training examples of one photo as Lab float32 (n, S, S, 3).

    ``crops_per_photo == 0``: the whole photo resized to S x S with its aspect
    kept by padding (method.md); padding is L* = 50, a* = b* = 0 (0 in the
    [-1, 1] scaling, like :func:`streamcolor.engines.lab.letterbox`).  Otherwise N random
    square crops (side a random fraction in [min_crop_scale, 1] of the shorter
    side, random position, mirrored with probability 1/2 when ``flip``).
    """
    size = options.size
    rgbf = rgb.astype(np.float32) / 255.0
    h, w = rgbf.shape[:2]
    if options.crops_per_photo <= 0:
        s = size / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        small = lab.rgb_to_lab(lab.resize(rgbf, nh, nw))
        out = np.zeros((1, size, size, 3), np.float32)
        out[..., 0] = lab.L_SCALE
        top, left = (size - nh) // 2, (size - nw) // 2
        out[0, top:top + nh, left:left + nw] = small
        return out
    # Shrink large photos first so the smallest crop still has about `size` pixels.
    short = min(h, w)
    target_short = int(np.ceil(size / options.min_crop_scale))
    if short > target_short:
        s = target_short / short
        rgbf = lab.resize(rgbf, max(1, round(h * s)), max(1, round(w * s)))
        h, w = rgbf.shape[:2]
        short = min(h, w)
    crops = np.empty((options.crops_per_photo, size, size, 3), np.float32)
    for i in range(options.crops_per_photo):
        side = max(8, int(round(short * rng.uniform(options.min_crop_scale, 1.0))))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = lab.resize(np.ascontiguousarray(rgbf[top:top + side, left:left + side]), size, size)
        if options.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops[i] = lab.rgb_to_lab(np.ascontiguousarray(crop))
    return crops


def encode_l(l_star: np.ndarray) -> np.ndarray:
    """L* in [0, 100] -> uint8 storage."""
    return np.clip(np.rint(l_star * L_U8), 0, 255).astype(np.uint8)


def decode_l(l_u8: np.ndarray) -> np.ndarray:
    """uint8 storage -> network L in [-1, 1], float32 (same shape)."""
    return lab.scale_l(np.asarray(l_u8, np.float32) / L_U8)


def encode_ab(ab: np.ndarray) -> np.ndarray:
    """a*b* -> int8 storage (rounded, clipped to [-128, 127])."""
    return np.clip(np.rint(ab), -128, 127).astype(np.int8)


def decode_ab(ab_i8: np.ndarray) -> np.ndarray:
    """int8 storage -> network a*b* in [-1, 1], float32."""
    return lab.scale_ab(ab_i8)


# --------------------------------------------------------------------------- prepare


@dataclass
class PrepareReport:
    """What :func:`prepare_shards` did."""

    out: Path
    counts: dict[str, dict[str, int]]  # split -> {"photos" (that gave examples), "examples", "shards"}
    gray: list[str] = field(default_factory=list)  # photo keys skipped as near-gray
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"key", "error"}
    duplicates: list[str] = field(default_factory=list)  # keys dropped as exact duplicates
    left_out: dict[str, int] = field(default_factory=dict)  # split -> photos not in ``splits`` (e.g. holdout)
    shards_written: int = 0  # this run (0 on a finished rerun)
    shards_skipped: int = 0  # already finished by an earlier run
    shards_unused: int = 0  # of all the shard folders, those with no example (only near-gray or unreadable photos)


def _photo_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_split(sha: str, val_fraction: float, seed: int) -> str:
    h = hashlib.sha256(f"{seed}:{sha}".encode()).digest()
    return "val" if int.from_bytes(h[:8], "big") / 2**64 < val_fraction else "train"


def photo_split(data: bytes, options: PrepareOptions = PrepareOptions()) -> str:
    """"train" or "val" for a photo's bytes when no manifest gives its split:
    by content hash, as :func:`prepare_shards` splits with ``options``."""
    return _hash_split(_photo_hash(data), options.val_fraction, options.seed)


def _scan(photos: list[PhotoRef], workers: int) -> tuple[list[tuple[PhotoRef, str]], list[dict], list[str]]:
    """Read and hash every photo: (photo, sha256) of the first copy of each
    content, the unreadable ones, and the keys of exact duplicates."""
    def one(p: PhotoRef):
        try:
            return p, _photo_hash(p.read_bytes()), None
        except (OSError, KeyError, zipfile.BadZipFile, DataError) as exc:
            return p, None, f"cannot read: {exc}"

    kept, bad, dups, seen = [], [], [], {}
    from tqdm.auto import tqdm
    with ThreadPoolExecutor(workers) as pool:
        for p, sha, err in tqdm(pool.map(one, photos), total=len(photos), desc="hashing photos",
                                unit="photo", leave=False, disable=None):
            if err:
                bad.append({"key": p.key, "error": err})
            elif sha in seen:
                dups.append(p.key)
                log.info("duplicate: %s is the same file as %s", p.key, seen[sha])
            else:
                seen[sha] = p.key
                kept.append((p, sha))
    return kept, bad, dups


def plan_splits(kept: list[tuple[PhotoRef, str]], options: PrepareOptions, splits: Sequence[str]
                 ) -> tuple[dict[str, list[tuple[PhotoRef, str]]], dict[str, int]]:
    """(photo, sha256) per split in ``splits`` (the manifest's split, else the
    content hash), and how many photos of other splits were left out."""
    by_split: dict[str, list[tuple[PhotoRef, str]]] = {s: [] for s in splits}
    left_out: dict[str, int] = {}
    for p, sha in kept:
        split = p.split or _hash_split(sha, options.val_fraction, options.seed)
        if split in by_split:
            by_split[split].append((p, sha))
        else:
            left_out[split] = left_out.get(split, 0) + 1
    for split, n in left_out.items():
        log.info("left out %d %s photos (not in splits=%s)", n, split, tuple(splits))
    if {"train", "val"} <= set(splits) and not by_split["val"] and options.val_fraction > 0 \
            and len(by_split["train"]) >= 2 and not any(p.split for p, _ in kept):
        # Tiny sets: hold out the photo whose hash comes first, so validation is never empty.
        first = min(range(len(by_split["train"])), key=lambda i: by_split["train"][i][1])
        by_split["val"].append(by_split["train"].pop(first))
    return by_split, left_out


def prepare_shards(sources: Sequence[str | Path], out: str | Path, *,
                   options: PrepareOptions = PrepareOptions(),
                   manifest: str | Path | None = None,
                   overwrite: bool = False,
                   extractor: Any = None,
                   splits: Sequence[str] = SPLITS) -> PrepareReport:
    """Turn colour photos into training shards (see the module docstring).

    Parameters
    ----------
    sources:
        Photo files, folders (searched recursively; a ``manifest.json`` in a
        folder is honoured) and .zip/.tar* archives.
    out:
        Shard folder.  A rerun with the same options resumes: finished shards
        are kept, the rest are (re)written; each shard is written under a
        temporary name and renamed into place when complete.
    options:
        :class:`PrepareOptions`.
    manifest:
        An explicit manifest.json (entries with ``file`` and ``split``).
    overwrite:
        Delete an existing shard folder made with other options instead of
        refusing.
    extractor:
        A ready Keras extractor (input (N, S, S, 1) L in [-1, 1] -> (N, E));
        default: ``streamcolor.trainer.extractors.build_extractor(options.extractor,
        options.extractor_weights)``.
    splits:
        The splits to write shards for, from :data:`ALL_SPLITS`.  Photos of
        other splits are left out (counted in ``left_out``): by default the
        manifest's ``holdout`` photos, which must never reach training or
        validation; ``splits=("holdout",)`` shards only them, for evaluation.

    Raises
    ------
    DataError
        No readable photos, every photo near-gray, or ``out`` holds shards
        made with other options or photos.
    """
    splits = tuple(dict.fromkeys(splits))
    if not splits or any(s not in ALL_SPLITS for s in splits):
        raise ValueError(f"splits must be a non-empty subset of {ALL_SPLITS}, got {splits!r}")
    from tqdm.auto import tqdm

    from streamcolor.trainer.extractors import EXTRACTORS, build_extractor

    if options.model not in MODELS:
        raise ValueError(f"unknown model {options.model!r}; choose from {MODELS}")
    multiple = _size_multiple(options.model)
    if options.size % multiple:
        raise ValueError(f"size must be a multiple of {multiple} for the {options.model} model, got {options.size}")
    if options.extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {options.extractor!r}; choose from {sorted(EXTRACTORS)}")
    if options.model == "unet":
        from streamcolor.trainer.unet import ENCODERS
        if options.extractor not in ENCODERS:
            raise ValueError(f"the unet model is built on one of {list(ENCODERS)}, not {options.extractor}")
    if options.model == "unet" and options.flip and options.crops_per_photo <= 0:
        log.info("unet shards of whole photos: no mirroring (feature maps cannot be mirrored after the fact)")
    spec = EXTRACTORS[options.extractor]
    out = Path(out)
    workers = options.workers or os.cpu_count() or 1

    _check_apart(out, sources)
    meta_path = out / META
    if meta_path.is_file():
        old = _shard_meta(meta_path)
        if old.get("options") != options.fingerprint():
            if not overwrite:
                raise DataError(f"{out} holds shards made with other options ({old.get('options')}); "
                                "use another folder or --overwrite")
            log.warning("removing the shards in %s (made with other options)", out)
            _remove_shards(out)
    out.mkdir(parents=True, exist_ok=True)

    photos, problems = list_photos(sources, manifest=manifest, extract_dir=out / "_extracted")
    if not photos:
        why = "; ".join(f"{p['key']}: {p['error']}" for p in problems[:5])  # (a zip cut short says so)
        raise DataError(f"no photos found in {[str(s) for s in sources]} "
                        f"(looked for {', '.join(IMAGE_SUFFIXES)} and archives)" + (f": {why}" if why else ""))
    kept, unreadable, dups = _scan(photos, workers)
    unreadable = problems + unreadable

    # The plan: split by manifest or content hash, then fixed groups of photos per shard.
    by_split, left_out = plan_splits(kept, options, splits)
    per_shard = max(1, options.shard_size // max(1, options.crops_per_photo))
    plan: dict[str, list[dict[str, Any]]] = {}
    for split, items in by_split.items():
        for k in range(0, len(items), per_shard):
            plan[f"{split}-{k // per_shard:05d}"] = [{"key": p.key, "sha256": sha} for p, sha in items[k:k + per_shard]]
    plan_path = out / PLAN
    if plan_path.is_file() and not meta_path.is_file():  # (meta.json is written first: this plan.json is not ours)
        raise DataError(f"{out} is not a shard folder (a plan.json of another program's is there); use another "
                        "folder for the shards")
    if plan_path.is_file() and _read_plan(plan_path) != plan:
        if not overwrite:
            raise DataError(f"{out} was started with another set of photos; use another folder or --overwrite")
        log.warning("the photos changed: rewriting every shard in %s", out)
        _remove_shards(out)
    _write_json(meta_path, {"format": SHARDS_FORMAT, "complete": False, "options": options.fingerprint()})
    _write_json(plan_path, plan)

    refs = {p.key: p for p, _ in kept}
    report = PrepareReport(out=out, counts={}, unreadable=unreadable, duplicates=dups, left_out=left_out)
    todo = [name for name in plan if not (out / name / "info.json").is_file()]
    report.shards_skipped = len(plan) - len(todo)
    if report.shards_skipped:
        log.info("resuming: %d of %d shards already finished", report.shards_skipped, len(plan))
    if todo:
        if options.model == "unet":
            if extractor is None:
                from streamcolor.trainer.unet import UNetConfig, build_unet
                extractor = build_unet(UNetConfig(encoder=options.extractor),
                                       weights=options.extractor_weights).bottom_model()
            embed = _FeatureEncoder(extractor, options.embed_batch)
        else:
            if extractor is None:
                extractor = build_extractor(options.extractor, weights=options.extractor_weights)
            embed = _Embedder(extractor, spec.size, options.embed_batch)
        bar = tqdm(total=sum(len(plan[n]) for n in todo), desc="preparing shards", unit="photo", disable=None)
        with ThreadPoolExecutor(workers) as pool:
            for name in todo:
                _write_shard(out / name, [refs[e["key"]] for e in plan[name]],
                             {e["key"]: e["sha256"] for e in plan[name]}, options, embed, pool, bar)
                report.shards_written += 1
        bar.close()

    # Totals from every shard's info.json (this run's and earlier runs').
    for split in splits:
        report.counts[split] = {"photos": 0, "examples": 0, "shards": 0}
    for name in plan:
        info = json.loads((out / name / "info.json").read_text())
        c = report.counts[name.split("-")[0]]
        c["photos"] += len(info["photos"]) - len(info["gray"]) - len(info["unreadable"])
        c["examples"] += info["examples"]
        c["shards"] += 1 if info["examples"] else 0
        report.shards_unused += 0 if info["examples"] else 1
        report.gray += info["gray"]
        report.unreadable += info["unreadable"]
    for p in report.unreadable:
        log.warning("unreadable, skipped: %s (%s)", p["key"], p["error"])
    storage = {"l": "uint8, L* * 255/100", "ab": "int8, a*b* rounded", "embedding": "float16"}
    if options.model == "unet":
        from streamcolor.trainer.unet import OUTPUT_STRIDE, TRAIN_INPUTS
        storage = {"l": storage["l"], "ab": f"int8, a*b* rounded, area-averaged to size/{OUTPUT_STRIDE}",
                   **{k: "float16, frozen Lite0 feature map" for k in TRAIN_INPUTS}}
    meta = {
        "format": SHARDS_FORMAT, "complete": True, "options": options.fingerprint(), "model": options.model,
        "extractor": options.extractor, "extractor_weights": options.extractor_weights,
        "extractor_size": spec.size, "embed_dim": spec.embed_dim, "size": options.size,
        "storage": storage, **({"inputs": list(TRAIN_INPUTS)} if options.model == "unet" else {}),
        "counts": report.counts,
        "skipped": {"gray": report.gray, "unreadable": report.unreadable, "duplicates": report.duplicates,
                    "left_out": report.left_out},
        "sources": [str(s) for s in sources] + ([str(manifest)] if manifest else []),
    }
    first = "train" if "train" in report.counts else splits[0]  # the split that must not be empty
    if report.counts[first]["examples"] == 0:  # (before meta.json says "complete": fit would take empty shards)
        shutil.rmtree(out / "_extracted", ignore_errors=True)
        raise DataError(
            f"no usable colour photos among {len(kept)} files: {len(report.gray)} near-gray "
            f"(mean chroma < {options.gray_threshold}), {len(report.unreadable)} unreadable; "
            "training needs colour photos")
    _write_json(meta_path, meta)
    shutil.rmtree(out / "_extracted", ignore_errors=True)
    log.info("shards in %s: %s; skipped %d gray, %d unreadable, %d duplicates", out, report.counts,
             len(report.gray), len(report.unreadable), len(report.duplicates))
    return report


def _check_apart(out: Path, sources: Sequence[str | Path]) -> None:
    """DataError when the shard folder is a source folder, inside one or holds one: shards written
    among the photos (and, with --overwrite, removed with them) lose the user's files."""
    o = Path(os.path.realpath(out))
    for src in sources:
        s = Path(os.path.realpath(src))
        if s == o or o.is_relative_to(s) or (s.is_relative_to(o) and s != o):
            raise DataError(f"the shard folder {out} and the photos {src} overlap; choose a folder of its own "
                            "for the shards (-o)")


def _shard_meta(path: Path) -> dict[str, Any]:
    """The shard folder's meta.json, or DataError when the file there is none of prepare's (another
    program's meta.json: the folder is not a shard folder, and nothing in it is removed)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a shard folder's meta.json ({exc}); use another folder for the shards") from exc
    if not isinstance(meta, dict) or meta.get("format") != SHARDS_FORMAT or "options" not in meta:
        raise DataError(f"{path.parent} is not a shard folder (its meta.json is not streamcolor's); use another "
                        "folder for the shards")
    return meta


def _read_plan(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a shard folder's plan.json ({exc}); use another folder for the shards") from exc


def _remove_shards(out: Path) -> None:
    """Remove what ``prepare`` writes in ``out`` (meta.json, plan.json, the shard folders and the
    archive extraction folder), nothing else: --overwrite removed the whole folder, with whatever
    else a user kept there."""
    for d in out.glob("*-[0-9][0-9][0-9][0-9][0-9]"):
        if d.is_dir() and not d.is_symlink() and d.name.split("-")[0] in ALL_SPLITS:
            shutil.rmtree(d)
    shutil.rmtree(out / "_extracted", ignore_errors=True)
    for name in (PLAN, META):
        (out / name).unlink(missing_ok=True)


def _size_multiple(model: str) -> int:
    return 32 if model == "unet" else lab.SIZE_MULTIPLE


class _FeatureEncoder:
    """Runs the U-Net's frozen encoder part in fixed-size batches: (n, S, S) L
    in [-1, 1] -> {"s4": (n, S/4, S/4, 24), ...} float16."""

    def __init__(self, model, batch: int):
        self.model, self.batch = model, batch

    def __call__(self, l_scaled: np.ndarray) -> dict[str, np.ndarray]:
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(l_scaled), self.batch):
            chunk = l_scaled[i:i + self.batch]
            x = np.zeros((self.batch,) + chunk.shape[1:] + (1,), np.float32)
            x[:len(chunk), ..., 0] = chunk
            for k, v in self.model.predict_on_batch(x).items():
                outs.setdefault(k, []).append(np.asarray(v, np.float32)[:len(chunk)].astype(np.float16))
        return {k: np.concatenate(v) for k, v in outs.items()}


class _Embedder:
    """Runs the extractor in fixed-size batches (one compiled shape)."""

    def __init__(self, model, size: int, batch: int):
        self.model, self.size, self.batch = model, size, batch

    def __call__(self, l_scaled: np.ndarray) -> np.ndarray:
        """(n, H, W) L in [-1, 1] -> (n, E) float32."""
        outs = []
        for i in range(0, len(l_scaled), self.batch):
            chunk = l_scaled[i:i + self.batch]
            x = np.zeros((self.batch, self.size, self.size, 1), np.float32)
            for j, l in enumerate(chunk):
                x[j, ..., 0] = l if l.shape == (self.size, self.size) else lab.letterbox(l, self.size)
            outs.append(np.asarray(self.model.predict_on_batch(x), np.float32)[:len(chunk)])
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _write_shard(path: Path, photos: list[PhotoRef], shas: dict[str, str], options: PrepareOptions,
                 embed: "_Embedder | _FeatureEncoder", pool: ThreadPoolExecutor, bar) -> None:
    def one(p: PhotoRef):
        try:
            rgb = decode_photo(p.read_bytes())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, DataError, cv2.error) as exc:
            return p, None, str(exc)
        if mean_chroma(rgb) < options.gray_threshold:
            return p, None, "gray"
        rng = np.random.default_rng([options.seed, int(shas[p.key][:15], 16)])
        return p, photo_examples(rgb, options, rng), None

    examples, info = [], {"photos": [], "examples": 0, "gray": [], "unreadable": []}
    for p, ex, err in pool.map(one, photos):
        bar.update(1)
        info["photos"].append(p.key)
        if err == "gray":
            info["gray"].append(p.key)
        elif err:
            info["unreadable"].append({"key": p.key, "error": err})
        else:
            examples.append(ex)
    s = options.size
    labs = np.concatenate(examples) if examples else np.zeros((0, s, s, 3), np.float32)
    info["examples"] = int(len(labs))
    arrays = {"l": encode_l(labs[..., 0])}
    if options.model == "unet":
        from streamcolor.trainer.unet import OUTPUT_STRIDE, encoder_taps
        g = s // OUTPUT_STRIDE
        arrays["ab"] = encode_ab(np.stack([cv2.resize(np.ascontiguousarray(x[..., 1:]), (g, g),
                                                      interpolation=cv2.INTER_AREA) for x in labs])
                                 if len(labs) else np.zeros((0, g, g, 2), np.float32))
        if len(labs):
            arrays.update(embed(lab.scale_l(labs[..., 0])))
        else:
            arrays.update({k: np.zeros((0, 1, 1, c), np.float16)
                           for k, c in encoder_taps(options.extractor)[1].items()})
    else:
        arrays["ab"] = encode_ab(labs[..., 1:])
        emb = embed(lab.scale_l(labs[..., 0])) if len(labs) else np.zeros((0, 1), np.float32)
        arrays["emb"] = emb.astype(np.float16)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    _write_json(tmp / "info.json", info)
    shutil.rmtree(path, ignore_errors=True)  # a stale, unfinished shard (no info.json)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- reading


class ShardSet:
    """The finished shards of one split, memory-mapped.

    ``len(s)`` examples; ``s.take(indices)`` -> (inputs, ab), all float32, L
    and a*b* in the network's [-1, 1] scaling: for the seed model inputs
    ``{"l": (n, S, S, 1), "embedding": (n, E)}`` and ab (n, S, S, 2); for the
    U-Net inputs ``{"s4", "s8", "s16"}`` (the frozen feature maps) and ab at
    the output grid (n, S/4, S/4, 2).  ``take_l`` gives the L of examples.
    """

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        meta_path = self.root / META
        if not meta_path.is_file():
            raise DataError(f"{self.root}: no shards here (no {META}); run `streamcolor train prepare` first")
        self.meta = json.loads(meta_path.read_text())
        if not self.meta.get("complete"):
            raise DataError(f"{self.root}: shard preparation did not finish; rerun `streamcolor train prepare`")
        if split not in ALL_SPLITS:
            raise ValueError(f"split must be one of {ALL_SPLITS}, got {split!r}")
        self.split = split
        self.size = int(self.meta["size"])
        self.embed_dim = int(self.meta["embed_dim"])
        self.model = self.meta.get("model", MODELS[0])
        self._extra = ("emb",) if self.model == MODELS[0] else tuple(self.meta["inputs"])
        self._l, self._ab = [], []
        self._arrays: dict[str, list[np.ndarray]] = {k: [] for k in self._extra}
        for d in sorted(self.root.glob(f"{split}-*")):
            if not (d / "info.json").is_file():
                continue
            l = np.load(d / "l.npy", mmap_mode="r")
            if len(l) == 0:
                continue
            self._l.append(l)
            self._ab.append(np.load(d / "ab.npy", mmap_mode="r"))
            for k in self._extra:
                self._arrays[k].append(np.load(d / f"{k}.npy", mmap_mode="r"))
        self._emb = self._arrays.get("emb", [])
        self._starts = np.cumsum([0] + [len(x) for x in self._l])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        return idx, shard, idx - self._starts[shard]

    def take_l(self, indices: Iterable[int]) -> np.ndarray:
        """L of the examples at ``indices``: (n, S, S, 1) float32 in [-1, 1]."""
        idx, shard, local = self._locate(indices)
        l_u8 = np.stack([self._l[k][i] for k, i in zip(shard, local)]) if len(idx) else \
            np.zeros((0, self.size, self.size), np.uint8)
        return decode_l(l_u8)[..., None]

    def take(self, indices: Iterable[int], *,
             flip: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Examples at ``indices`` (in that order); ``flip``: bool per example, mirror
        left-right (seed model only: feature maps cannot be mirrored)."""
        if self.model != MODELS[0]:
            return self._take_features(indices, flip)
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        n, s = len(idx), self.size
        l_u8 = np.empty((n, s, s), np.uint8)
        ab_i8 = np.empty((n, s, s, 2), np.int8)
        emb = np.empty((n, self.embed_dim), np.float32)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        for j in np.argsort(idx, kind="stable"):  # read each shard in file order
            k, i = shard[j], idx[j] - self._starts[shard[j]]
            l_u8[j], ab_i8[j], emb[j] = self._l[k][i], self._ab[k][i], self._emb[k][i]
        if flip is not None and flip.any():
            l_u8[flip] = l_u8[flip][:, :, ::-1]
            ab_i8[flip] = ab_i8[flip][:, :, ::-1]
        # decode_l / decode_ab, fused in place (this runs for every batch).
        l = l_u8.astype(np.float32)[..., None]
        l *= 1.0 / (L_U8 * lab.L_SCALE)
        l -= 1.0
        ab = ab_i8.astype(np.float32)
        ab *= 1.0 / lab.AB_SCALE
        return {"l": l, "embedding": emb}, ab

    def _take_features(self, indices, flip) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if flip is not None and np.any(flip):
            raise ValueError("feature shards cannot be mirrored after the fact (mirroring is done at prepare)")
        idx, shard, local = self._locate(indices)
        order = np.argsort(idx, kind="stable")  # read each shard in file order
        out = {}
        for k in self._extra:
            first = self._arrays[k][0]
            arr = np.empty((len(idx),) + first.shape[1:], np.float32)
            for j in order:
                arr[j] = self._arrays[k][shard[j]][local[j]]
            out[k] = arr
        first = self._ab[0]
        ab = np.empty((len(idx),) + first.shape[1:], np.float32)
        for j in order:
            ab[j] = self._ab[shard[j]][local[j]]
        ab *= 1.0 / lab.AB_SCALE
        return out, ab


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled example order of one epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class ShardBatches:
    """Shuffled batches over a :class:`ShardSet`, deterministic per (seed, epoch).

    Batch ``b`` of epoch ``e`` is always the same examples (and the same
    flips), so training resumes at an exact data position: global batch
    ``position`` is batch ``position % len(self)`` of epoch
    ``position // len(self)``.  The last incomplete batch of an epoch is
    dropped (fixed shapes: one compiled step).  A batch is ``(inputs, ab)``
    as :meth:`ShardSet.take` returns it.  :func:`keras_dataset` wraps it as
    a ``keras.utils.PyDataset`` for ``model.fit``.
    """

    def __init__(self, shards: ShardSet, batch_size: int, *, seed: int = 0, flip: bool = True, epoch: int = 0):
        if len(shards) == 0:
            raise DataError(f"{shards.root}: the {shards.split} split has no examples")
        self.shards = shards
        self.batch_size = min(batch_size, len(shards))
        if self.batch_size < batch_size:
            log.warning("only %d %s examples: batch size %d -> %d", len(shards), shards.split,
                        batch_size, self.batch_size)
        self.seed, self.flip = seed, flip and shards.model == MODELS[0]  # feature maps are mirrored at prepare
        self._orders: dict[int, np.ndarray] = {}
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make ``self[b]`` index batches of ``epoch``."""
        self.epoch = epoch

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            order = epoch_order(len(self.shards), self.seed, epoch)
            self._orders = {epoch: order, **{k: v for k, v in list(self._orders.items())[:1]}}
        return order

    def __len__(self) -> int:
        return len(self.shards) // self.batch_size

    def __getitem__(self, b: int):
        if not 0 <= b < len(self):
            raise IndexError(b)
        return self._batch(self.epoch, b)

    def at(self, position: int):
        """The batch at global ``position`` (across epochs); thread-safe."""
        epoch, b = divmod(position, len(self))
        return self._batch(epoch, b)

    def _batch(self, epoch: int, b: int):
        idx = self._order(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
        flips = None
        if self.flip:
            flips = np.random.default_rng([self.seed, epoch, b, 1]).random(len(idx)) < 0.5
        return self.shards.take(idx, flip=flips)


def keras_dataset(batches: ShardBatches, **kwargs):
    """``batches`` as a ``keras.utils.PyDataset`` (kwargs: workers,
    use_multiprocessing, max_queue_size) whose epoch advances at each
    ``on_epoch_end``, for ``model.fit``.  Keras is imported here only, so
    the rest of this module works where only NumPy and OpenCV are installed."""
    return _pydataset_class()(batches, **kwargs)


@functools.lru_cache(maxsize=1)
def _pydataset_class():
    import keras

    class ShardSequence(keras.utils.PyDataset):
        def __init__(self, batches: ShardBatches, **kwargs):
            super().__init__(**kwargs)
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, b: int):
            return self.batches[b]

        def on_epoch_end(self) -> None:
            self.batches.set_epoch(self.batches.epoch + 1)

    return ShardSequence


def batch_stream(batches: ShardBatches, start: int, *, prefetch: int = 4,
                 workers: int = 2) -> Iterator[tuple[int, Any]]:
    """(position, batch) from global ``start`` on, in order, read ahead by
    ``workers`` threads (NumPy copies and conversions release the GIL)."""
    from collections import deque

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="shard-reader")
    pending: deque = deque()
    pos = start
    try:
        while True:
            while len(pending) < max(1, prefetch):
                pending.append((pos, pool.submit(batches.at, pos)))
                pos += 1
            p, fut = pending.popleft()
            yield p, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
