"""Collect free-licensed colour photographs from Debian packages, with provenance.

The colorizer needs real colour photographs whose licences allow training and
redistribution.  ``docs/data-sources.md`` (in the shared docs) surveys which
Debian packages ship such photos (its second half adds Debian 13 packages and
more of Debian 12); this module turns the survey, and the packages found since
(:data:`SOURCES`), into a reproducible data set::

    python -m streamcolor.trainer.collect_photos --out data/photos

It ``apt-get download``s each package into a cache, unpacks it with
``dpkg-deb -x`` (nothing is installed), pulls out the listed pictures, drops
clip art, near-grey pictures, tiny pictures, exact duplicates (same pixels)
and near-duplicates (the same picture at another size or encoding, across
packages too), and writes:

* ``<out>/<package>/<name>.{jpg,png}``: every kept photo at full resolution
  (original bytes when the source is an untouched upright JPEG, lossless PNG
  otherwise);
* ``<out>/manifest.json``: package, suite, version, path inside the package,
  licence and where the licence was read, size, sha256 and a stable split;
* ``<carry>/``: the same photos downsized to JPEG for shipping to a GPU machine,
  kept under a size budget, with its own manifest.

Debian 12 (bookworm) packages come through the machine's own apt; Debian 13
(trixie) ones through a private apt configuration under ``<cache>/apt/trixie``
(its own sources list, lists, cache and status), so the machine's sources are
never touched.  Pictures are read where they are packed: Qt ``.rcc`` resource
bundles (GCompris), jigzo ``.pzl`` puzzles, a Java jar (Sweet Home 3D), GIMP
``.pat`` patterns, TGA files (through Pillow) and a raw ``face.dat``.  JPEG
EXIF orientation is applied, and so are the rotations KPhotoAlbum keeps in its
``index.xml``.

Debian *source* packages add the test and example photos that binary packages
leave out: for each package in ``source_photos.json`` (photos named by path and
pinned by sha256, with the licence a survey read for each), only the upstream
tarball is downloaded, through a private apt configuration with ``deb-src``
lines and ``apt-helper download-file`` (checked against the signed index), and
only the pinned members are read out of it.  A package whose tarball the
mirror lacks is reported and skipped; a photo whose bytes changed upstream is
left out with a warning.

Splits: ``"holdout"`` for every photo of :data:`HOLDOUT_PACKAGES` (whole
packages the model never sees, to measure it on unseen sources), else
``"val"`` for about 8 % of photos by a hash of package and path (of the
panorama, for Stellarium tiles), else ``"train"``.

Tuxpaint stamps and Stellarium horizon tiles are cut-outs on a transparent
background: they are cropped to their opaque area and composited onto neutral
grey (sRGB 128, which is a = b = 0 in Lab), so the background teaches "no
colour here" instead of inventing one; the manifest marks them
``"cutout": true`` so a loader can weight or mask them.  Everything is
resumable: downloaded ``.deb`` files, unpacked trees and written photos are
reused.
"""

from __future__ import annotations

import argparse
import bz2
import fnmatch
import hashlib
import io
import json
import logging
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("streamcolor.trainer.collect_photos")

# --------------------------------------------------------------------------
# Selection rules (from the survey, plus what the contact sheets showed)
# --------------------------------------------------------------------------

#: Smallest accepted short side: smaller pictures hold too little detail to
#: train on (most are thumbnails of other pictures or tiny stamps).
MIN_SHORT_SIDE = 128
#: Mean CIE Lab chroma (sqrt(a^2 + b^2), a/b in standard units) below which a
#: picture counts as grey.  Greyscale pictures score <= 0.03; the contact
#: sheets show colour photos of grey subjects (tools, crows, zebras) at 1-3,
#: which stay so the model also learns when not to add colour.
MIN_MEAN_CHROMA = 1.0
#: Share of "val" photos; the split is a hash of package and path, so adding
#: or removing other photos never moves a photo between splits.
VAL_FRACTION = 0.08
#: Whole packages held out of training *and* validation (manifest split
#: ``"holdout"``), so the model is measured on photos from sources it never
#: saw.  None is among the 14 packages the shipped model was trained on, and
#: together they cover kinds of photo the training set has little of.
HOLDOUT_PACKAGES: dict[str, str] = {
    "kphotoalbum": "personal snapshots (people, pets, a beach, the Grand Canyon): "
                   "no other source has family photos",
    "lxqt-themes": "desktop wallpapers from a desktop whose wallpapers are not trained on",
    "budgie-backgrounds": "4K CC0 wallpapers from Debian 13, the largest and most recent photos",
    "qtdeclarative5-examples": "food and objects shot for example code, small pictures",
    "qtbase5-examples": "objects, a face and landscapes shot for example code",
    "hugin-data": "documentation scenes of a panorama tool (interiors, streets, a river front)",
    "wordpress-theme-twentytwentyfive": "CC0 flowers, a coral reef, a creek, marsh birds (Debian 13)",
    "wordpress-theme-twentytwentyfour": "CC0 architecture: facades, stairs, a museum, a tourist (Debian 13)",
    "gnome-recipes-data": "food photographs of eight cuisines (Debian 13)",
}
#: Near-duplicate test (:class:`NearDuplicates`): photos whose 24 x 24 Lab
#: thumbnails differ by less than this mean absolute L*a*b* distance, with
#: aspect ratios within :data:`NEAR_DUPLICATE_ASPECT` (log ratio), are the same
#: picture: the later one is dropped so one picture cannot be in two splits.
SIGNATURE_SIDE = 24
NEAR_DUPLICATE_DISTANCE = 1.5
NEAR_DUPLICATE_ASPECT = 0.03
#: Neutral grey behind cut-outs: sRGB 128 is exactly a = b = 0 in Lab.
CUTOUT_BACKGROUND = 128
#: Clip-art test for tuxpaint stamps: share of horizontally adjacent opaque
#: pixel pairs with identical colour.  Photos have sensor/JPEG noise (< 0.12 on
#: every photo stamp but the few listed below); clip art has flat fills (most
#: score 0.15-1.0).
MAX_FLAT_FRACTION = 0.12

#: Licences that forbid commercial use are never taken, whatever the survey says.
NON_FREE_LICENCE = re.compile(r"\bNC\b|-NC-|NonCommercial", re.IGNORECASE)

GCOMPRIS_RCC_DIR = "usr/share/gcompris-qt/rcc"
GCOMPRIS_RCC_FILES = (
    "erase", "clickgame", "explore_monuments", "explore_world_animals",
    "explore_farm_animals", "explore_world_music", "categorization", "details",
)
#: Members of the .rcc bundles to keep, relative to ``gcompris/src/activities/``.
#: fnmatch's ``*`` also crosses ``/``, so ``explore_*/resource/*.webp`` covers
#: every sub-folder.
GCOMPRIS_KEEP = (
    "erase/resource/*.webp",
    "clickgame/resource/sea*.webp",
    "explore_*/resource/*.webp",
    "categorization/resource/images/*/*.webp",
    "details/resource/image/*_background.webp",
)
#: Van Gogh paintings among the "details" backgrounds (the survey's exclusions).
GCOMPRIS_PAINTINGS = (
    "*/Eglise_dAuvers-sur-Oise_*", "*/Gogh4_*", "*/PortraitOfPereTanguy_*",
    "*/Van_Gogh_*", "*/VincentVanGogh*",
)

STAMPS_DIR = "usr/share/tuxpaint/stamps"
#: Stamp folders that hold only symbols, signs, flags, cartoons or space
#: imagery (planet renders and false-colour probe pictures are not photos of
#: the world a colorizer will see).
STAMP_SKIP_DIRS = ("symbols", "town/roadsigns", "town/flags", "space/planets", "space/moon")
#: Photo stamps whose saturated, posterised colours fail the flatness test.
STAMP_PHOTOS_DESPITE_FLATNESS = frozenset({
    "animals/birds/albino_peahen.png", "animals/birds/pelican.png",
    "animals/mammals/bears/bear.png", "animals/mammals/rhino_black.png",
    "household/toilet.png", "plants/flowers/flower1.png", "plants/flowers/flower2.png",
    "plants/flowers/flower3.png", "plants/flowers/flower4.png", "plants/flowers/flower6.png",
    "plants/flowers/flower8.png", "plants/flowers/flower10.png",
    "seasonal/halloween/grave-d.png", "seasonal/halloween/grave-j.png",
    "seasonal/newyears/fireworks2.png", "town/monuments/inukshuk-photo.png",
})
#: Drawings that pass the flatness test (soft airbrushed shading).
STAMP_DRAWINGS_DESPITE_FLATNESS = frozenset({
    "clothes/button.png", "seasonal/easter/bunny.png",
})

#: Pictures dropped after looking at the contact sheets, keyed by package and
#: fnmatch pattern on the path inside the package.  Three "categorization"
#: monuments are 320 px copies of "explore_monuments" photos: not byte-equal,
#: but the same picture, which would leak between train and val.
EXCLUDED: dict[str, dict[str, str]] = {
    "gcompris-qt-data": {
        "*/categorization/resource/images/monuments/greatPyramid.webp":
            "smaller copy of explore_monuments/egypt/greatPyramidOfGiza",
        "*/categorization/resource/images/monuments/brandenburgGate.webp":
            "smaller copy of explore_monuments/germany/brandenburgGate",
        "*/categorization/resource/images/monuments/colosseum.webp":
            "smaller copy of explore_monuments/wonders/colosseum",
    },
}

#: Licences the copyright file cannot give (no per-file stanza), from the
#: credit notes the survey names.
SKIMAGE_LICENCES = {
    "astronaut.png": ("public-domain", "NASA Great Images", "docstring of skimage.data.astronaut"),
    "chelsea.png": ("CC0-1.0", "Stefan van der Walt", "docstring of skimage.data.chelsea"),
    "coffee.png": ("CC0-1.0", "Rachel Michetti", "docstring of skimage.data.coffee"),
    "rocket.jpg": ("public-domain", "SpaceX", "docstring of skimage.data.rocket"),
}
SKLEARN_IMAGES = "usr/lib/python3/dist-packages/sklearn/datasets/images"
SKLEARN_CREDITS = {
    "china.jpg": ("danielbuechele", "https://www.flickr.com/photos/danielbuechele/6061409035/"),
    "flower.jpg": ("vultilion", "https://www.flickr.com/photos/vultilion/6056698931/"),
}



# --------------------------------------------------------------------------
# Data records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    """Licence of one picture and where it was read, for attribution."""

    licence: str
    source: str
    holder: str | None = None
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A picture found in a package, before filtering.

    Either ``data`` (an encoded image file as shipped) or ``pixels`` (a
    decoded BGR array, for pictures that are not image files, such as
    ``face.dat`` or a region of a jigzo atlas) is set.
    """

    package: str
    path: str
    name: str
    credit: Credit
    data: bytes | None = None
    pixels: np.ndarray | None = field(default=None, compare=False)
    cutout: bool = False
    #: Pictures of one group (the tiles of one panorama) share their split,
    #: hashed on the group instead of the path.
    group: str | None = None


@dataclass(frozen=True)
class Package:
    """An unpacked Debian package.

    ``licence_from`` is the unpacked package that holds the copyright file
    when this one only links its doc folder there (imagemagick-6-doc ->
    imagemagick-6-common).
    """

    name: str
    version: str
    root: Path
    suite: str = "bookworm"
    licence_from: Package | None = None
    #: For a Debian source package: the upstream tarball its photos were read from.
    tarball: str | None = None

    @property
    def copyright_path(self) -> str:
        """The copyright file, relative to the root of the package that ships it."""
        return f"usr/share/doc/{(self.licence_from or self).name}/copyright"

    def copyright_text(self) -> str:
        """The copyright file as text."""
        root = (self.licence_from or self).root
        return (root / self.copyright_path).read_text(encoding="utf-8", errors="replace")

    def copyright(self) -> list[Dep5Stanza]:
        """Stanzas of the package's machine-readable copyright file."""
        return parse_dep5(self.copyright_text())


# --------------------------------------------------------------------------
# Container formats
# --------------------------------------------------------------------------

_RCC_COMPRESSED, _RCC_DIRECTORY, _RCC_COMPRESSED_ZSTD = 0x1, 0x2, 0x4


def read_rcc(data: bytes) -> dict[str, bytes]:
    """Read a Qt binary resource bundle (``rcc``) into ``{path: contents}``.

    Layout: ``qres``, version, then big-endian offsets of the tree, data and
    name tables.  Tree entries (14 bytes, 22 from version 2 on with a
    modification time) are ``name offset, flags`` then either ``child count,
    first child`` for a directory or ``country, language, data offset``.
    Names are ``length, hash, UTF-16BE``; data blobs are ``length, bytes`` and
    zlib-compressed ones carry Qt's 4-byte uncompressed size first.
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack_from(">IIII", data, 4)
    entry_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6
        return data[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        base = tree + index * entry_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        path = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & _RCC_DIRECTORY:
            count, first = struct.unpack_from(">II", data, base + 6)
            stack.extend((child, path) for child in range(first, first + count))
            continue
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, payload + offset)
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        if flags & _RCC_COMPRESSED_ZSTD:
            raise ValueError(f"{path}: zstd-compressed rcc entries are not supported")
        files[path.lstrip("/")] = zlib.decompress(blob[4:]) if flags & _RCC_COMPRESSED else blob
    return files


@dataclass(frozen=True)
class Puzzle:
    """A jigzo ``.pzl`` file: its embedded files and the picture's rectangle."""

    files: dict[str, bytes]
    image_rect: tuple[int, int, int, int]


def read_pzl(data: bytes) -> Puzzle:
    """Parse a jigzo puzzle.

    The file is four header lines (``PzlF``, format version, name, URL)
    followed by records ``name\\nsize\\n<size bytes>``: a text map (whose
    ``image X Y W H`` line locates the whole picture), a JPEG thumbnail, a PNG
    mask atlas and a JPEG texture atlas that holds the picture and its pieces.
    """
    if not data.startswith(b"PzlF\n"):
        raise ValueError("not a jigzo puzzle (no 'PzlF' magic)")
    pos = 0
    for _ in range(4):
        pos = data.index(b"\n", pos) + 1
    files: dict[str, bytes] = {}
    while pos < len(data):
        name_end = data.index(b"\n", pos)
        size_end = data.index(b"\n", name_end + 1)
        size = int(data[name_end + 1:size_end])
        files[data[pos:name_end].decode()] = data[size_end + 1:size_end + 1 + size]
        pos = size_end + 1 + size
    maps = [blob for name, blob in files.items() if name.endswith(".map")]
    match = re.search(rb"^image (\d+) (\d+) (\d+) (\d+)", maps[0] if maps else b"", re.MULTILINE)
    if match is None:
        raise ValueError("puzzle map has no 'image X Y W H' line")
    x, y, w, h = (int(v) for v in match.groups())
    return Puzzle(files, (x, y, w, h))


def cut_pzl_picture(data: bytes) -> np.ndarray:
    """The whole picture of a jigzo puzzle, cut from its texture atlas (BGR)."""
    puzzle = read_pzl(data)
    atlases = [blob for name, blob in puzzle.files.items()
               if name.endswith(".jpg") and not name.endswith("-t.jpg")]
    if len(atlases) != 1:
        raise ValueError(f"expected one texture atlas, found {len(atlases)}")
    atlas = decode_image(atlases[0])[0]
    x, y, w, h = puzzle.image_rect
    return atlas[y:y + h, x:x + w].copy()


_PAT_MAGIC = b"GPAT"


def read_pat(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a GIMP pattern (``.pat``) to BGR plus alpha (None when opaque).

    Layout (big-endian): header size, version (1), width, height, bytes per
    pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), ``GPAT``, a NUL-terminated
    name up to the header size, then the raw pixels row by row.
    """
    if len(data) < 24 or data[20:24] != _PAT_MAGIC:
        raise ValueError("not a GIMP pattern (no 'GPAT' magic)")
    header, version, width, height, depth = struct.unpack_from(">5I", data)
    if version != 1 or depth not in (1, 2, 3, 4):
        raise ValueError(f"unsupported GIMP pattern: version {version}, {depth} bytes per pixel")
    size = width * height * depth
    if len(data) < header + size:
        raise ValueError("truncated GIMP pattern")
    pixels = np.frombuffer(data, np.uint8, size, header).reshape(height, width, depth)
    colour = pixels[..., :3] if depth >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    bgr = np.ascontiguousarray(colour[..., ::-1])
    alpha = pixels[..., -1].copy() if depth in (2, 4) else None
    return bgr, None if alpha is None or alpha.min() == 255 else alpha


def zip_members(data: bytes, pattern: str) -> dict[str, bytes]:
    """Members of a zip or jar archive whose names match ``pattern`` (fnmatch), sorted."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in sorted(archive.namelist())
                if not name.endswith("/") and fnmatch.fnmatchcase(name, pattern)}


def kphotoalbum_angles(index_xml: str) -> dict[str, int]:
    """Rotation (degrees clockwise) KPhotoAlbum stores per picture in its ``index.xml``.

    The demo photos carry no EXIF orientation; the album applies these
    angles when it shows them, so the upright picture is the file turned by
    ``angle``.
    """
    root = ElementTree.fromstring(index_xml)
    return {image.get("file", ""): int(image.get("angle", "0")) % 360 for image in root.iter("image")}


def rotate_clockwise(bgr: np.ndarray, angle: int) -> np.ndarray:
    """Turn a picture by a multiple of 90 degrees, clockwise."""
    turns = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if angle % 360 not in turns:
        raise ValueError(f"cannot rotate by {angle} degrees")
    code = turns[angle % 360]
    return bgr if code is None else cv2.rotate(bgr, code)


def parse_grub_credits(text: str) -> dict[str, tuple[str, str]]:
    """``{file: (author, licence)}`` from the table in grub2-splashimages' copyright file.

    The table is ``Filename  Author  License`` in columns separated by two
    or more spaces, between the header line and the next blank line.
    """
    credits: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in text.splitlines():
        columns = re.split(r"\s{2,}", line.strip())
        if columns[:3] == ["Filename", "Author", "License"]:
            in_table = True
        elif in_table and not line.strip():
            break
        elif in_table and len(columns) == 3:
            credits[columns[0]] = (columns[1], columns[2])
    return credits


# --------------------------------------------------------------------------
# Licence files
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dep5Stanza:
    """One ``Files:`` stanza of a Debian machine-readable copyright file."""

    files: tuple[str, ...]
    licence: str
    copyright: str


def parse_dep5(text: str) -> list[Dep5Stanza]:
    """Parse the ``Files`` stanzas of a DEP-5 copyright file (others are skipped)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1].isspace() and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()]
        if "files" in fields and "license" in fields:
            stanzas.append(Dep5Stanza(
                files=tuple(" ".join(fields["files"]).split()),
                licence=fields["license"][0],
                copyright="; ".join(v for v in fields.get("copyright", []) if v),
            ))
    return stanzas


def _dep5_matches(pattern: str, path: str) -> bool:
    """Whether a copyright pattern (a source-tree path) names an installed file.

    Source-tree paths rarely equal install paths (``16.04/x.jpg`` is installed
    as ``usr/share/backgrounds/x.jpg``), so a literal file name also matches
    by base name.
    """
    if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, f"*/{pattern}"):
        return True
    base = PurePosixPath(pattern).name
    return not any(c in base for c in "*?[") and base == PurePosixPath(path).name


def dep5_credit(stanzas: list[Dep5Stanza], path: str, source: str) -> Credit | None:
    """Licence of ``path`` per the copyright file: the last matching stanza wins."""
    found = None
    for stanza in stanzas:
        if any(_dep5_matches(p, path) for p in stanza.files):
            found = stanza
    if found is None or not found.licence:
        return None
    return Credit(licence=normalise_licence(found.licence), source=source, holder=found.copyright or None)


_README_KEYS = {"copyright", "license", "source", "files", "comment", "comments"}
_README_KEY_ALIASES = {"comments": "comment"}
#: File names misspelt in the GCompris credit READMEs (as shipped in 3.1).
README_TYPOS = {"aulaPalatina.webp": "audaPalatina.webp", "screwDriver.webp": "screDriver.webp"}


def parse_credit_readme(text: str) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Parse a GCompris credit README into ``[(file patterns, fields)]``.

    The READMEs are DEP-5-like stanzas separated by blank lines, but the file
    list is loose: after ``Files:`` or on bare lines anywhere in the stanza.
    """
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        files: list[str] = []
        key = None
        for line in (raw.strip() for raw in block.splitlines()):
            head, _, value = line.partition(":")
            if head.lower() in _README_KEYS:
                key = _README_KEY_ALIASES.get(head.lower(), head.lower())
                if key == "files":
                    files.extend(value.split())
                else:
                    fields[key] = value.strip()
            elif line and key != "comment" and " " not in line:
                files.append(line)
        if files and "license" in fields:
            stanzas.append((tuple(files), fields))
    return stanzas


def normalise_licence(text: str) -> str:
    """One spelling per licence, SPDX-like (``CC-BY-SA 4.0``, ``GPLv2+`` -> ``CC-BY-SA-4.0``, ``GPL-2+``).

    The sources spell the same licence several ways; counting and checking
    licences needs one.
    """
    parts = re.split(r"\s+(and|or)\s+", text.strip())
    if len(parts) > 1:  # "A and B or C": normalise each licence, keep the words
        return " ".join(part if i % 2 else normalise_licence(part) for i, part in enumerate(parts))
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"^GPLv(\d)", r"GPL-\1", text)
    text = re.sub(r"^((?:L|A)?GPL-\d+)(\.[1-9])?(?:\.0)?-(or-later|only)$",
                  lambda m: m[1] + (m[2] or "") + ("+" if m[3] == "or-later" else ""), text)
    text = re.sub(r"^BSD-(\d)-clause$", r"BSD-\1-Clause", text, flags=re.IGNORECASE)
    return "public-domain" if text.lower() == "public-domain" else text


def gcompris_credit(members: dict[str, bytes], member: str, source: str) -> Credit | None:
    """Credit for an image in a GCompris bundle, from the nearest README above it."""
    path = PurePosixPath(member)
    path = path.with_name(README_TYPOS.get(path.name, path.name))
    for folder in path.parents:
        readme = folder / "README"
        if str(readme) not in members:
            continue
        relative = str(path.relative_to(folder))
        text = members[str(readme)].decode("utf-8", errors="replace")
        for files, fields in parse_credit_readme(text):
            if any(fnmatch.fnmatchcase(relative, f) or fnmatch.fnmatchcase(path.name, f) for f in files):
                return Credit(
                    licence=normalise_licence(fields["license"]),
                    source=f"{source}:/{readme}",
                    holder=fields.get("copyright"),
                    url=fields.get("source"),
                    note=fields.get("comment"),
                )
        return None
    return None


# --------------------------------------------------------------------------
# Per-package extractors
# --------------------------------------------------------------------------


def copyright_source(pkg: Package) -> str:
    """Where a licence read from the package's copyright file came from."""
    if pkg.licence_from is not None:
        return f"{pkg.copyright_path} (package {pkg.licence_from.name} {pkg.licence_from.version})"
    return pkg.copyright_path


def _files(pkg: Package, folder: str, pattern: str) -> list[Path]:
    """Files under ``folder`` of the package matching ``pattern``, sorted."""
    return sorted(p for p in (pkg.root / folder).glob(pattern) if p.is_file())


def _from_copyright(pkg: Package, files: Iterable[Path], name: Callable[[Path], str] | None = None,
                    cutout: bool = False, note: Callable[[Path], str | None] | None = None) -> Iterator[Candidate]:
    """Candidates for plain image files, licensed by the package's copyright file."""
    stanzas = pkg.copyright()
    for file in files:
        path = file.relative_to(pkg.root).as_posix()
        credit = dep5_credit(stanzas, path, copyright_source(pkg))
        if credit is None:
            log.warning("%s: no licence for %s in the copyright file; skipped", pkg.name, path)
            continue
        if note is not None:
            credit = replace(credit, note=note(file))
        yield Candidate(package=pkg.name, path=path, name=name(file) if name else file.stem,
                        credit=credit, data=file.read_bytes(), cutout=cutout)


def extract_gcompris(pkg: Package) -> Iterator[Candidate]:
    """WebP photos inside the GCompris activity bundles, credited by their READMEs."""
    for bundle in GCOMPRIS_RCC_FILES:
        rcc_path = f"{GCOMPRIS_RCC_DIR}/{bundle}.rcc"
        members = read_rcc((pkg.root / rcc_path).read_bytes())
        for member in sorted(members):
            activity_path = member.removeprefix("gcompris/src/activities/")
            if not any(fnmatch.fnmatchcase(activity_path, p) for p in GCOMPRIS_KEEP):
                continue
            if any(fnmatch.fnmatchcase(activity_path, p) for p in GCOMPRIS_PAINTINGS):
                continue
            credit = gcompris_credit(members, member, rcc_path)
            if credit is None:
                log.warning("%s: no credit README entry for %s; skipped", pkg.name, member)
                continue
            parts = [p for p in PurePosixPath(activity_path).with_suffix("").parts if p != "resource"]
            yield Candidate(package=pkg.name, path=f"{rcc_path}:/{member}", name="__".join(parts),
                            credit=credit, data=members[member])


def extract_tuxpaint_data(pkg: Package) -> Iterator[Candidate]:
    """Tux Paint templates (photos) and the reef starter background."""
    files = _files(pkg, "usr/share/tuxpaint/templates", "*.jpg")
    files += _files(pkg, "usr/share/tuxpaint/starters", "reef-back.png")
    yield from _from_copyright(pkg, files)


def extract_lomiri_16(pkg: Package) -> Iterator[Candidate]:
    """Lomiri 16.04 wallpapers minus the two abstract ones."""
    abstract = {"analogpattern_by_Peter_Nerlich.jpg", "umang_by_Abhishek_Mudgal.jpg"}
    files = [f for f in _files(pkg, "usr/share/backgrounds", "*.jpg") if f.name not in abstract]
    yield from _from_copyright(pkg, files)


def extract_lomiri_20(pkg: Package) -> Iterator[Candidate]:
    """The one photo among the Lomiri 20.04 wallpapers (the rest are renders)."""
    yield from _from_copyright(pkg, _files(pkg, "usr/share/backgrounds", "Kleiber_by_Lukas_Baubkus.jpg"))


def extract_mate(pkg: Package) -> Iterator[Candidate]:
    """MATE's nature backgrounds (abstract/ and desktop/ are artwork)."""
    yield from _from_copyright(pkg, _files(pkg, "usr/share/backgrounds/mate/nature", "*.jpg"))


PLASMA_PHOTOS = ("BytheWater", "ColorfulCups", "EveningGlow", "FallenLeaf", "Kite",
                 "OneStandsOut", "Path", "summer_1am")


def _pixel_area(file: Path) -> int:
    """Pixel count from a Plasma wallpaper's ``WIDTHxHEIGHT.jpg`` file name."""
    width, height = file.stem.split("x")
    return int(width) * int(height)


def _plasma_note(file: Path) -> str | None:
    """What the wallpaper's own metadata.json says, next to the copyright file's GPL."""
    meta = json.loads((file.parents[2] / "metadata.json").read_text(encoding="utf-8"))["KPlugin"]
    authors = ", ".join(a.get("Name", "") for a in meta.get("Authors", []))
    return f"metadata.json: License {meta.get('License')}, by {authors}"


def extract_plasma(pkg: Package) -> Iterator[Candidate]:
    """The largest rendition of each Plasma wallpaper that is a photograph."""
    largest = [max(_files(pkg, f"usr/share/wallpapers/{name}/contents/images", "*x*.jpg"), key=_pixel_area)
               for name in PLASMA_PHOTOS]
    yield from _from_copyright(pkg, largest, name=lambda f: f.parents[2].name, note=_plasma_note)


def _palapeli_note(file: Path) -> str | None:
    """Author and licence from the puzzle's .desktop file beside the image."""
    desktop = file.with_suffix(".desktop").read_text(encoding="utf-8", errors="replace")
    fields = dict(re.findall(r"^X-KDE-PluginInfo-(Author|License)=(.*)$", desktop, re.MULTILINE))
    return f"{file.with_suffix('.desktop').name}: License {fields.get('License')}, by {fields.get('Author')}"


def extract_palapeli(pkg: Package) -> Iterator[Candidate]:
    """Palapeli's bundled puzzle photos (backgrounds/ holds textures)."""
    yield from _from_copyright(pkg, _files(pkg, "usr/share/palapeli/collection", "*.jpg"), note=_palapeli_note)


def extract_jigzo(pkg: Package) -> Iterator[Candidate]:
    """Pictures cut out of jigzo puzzles; the non-commercial penguin is dropped by licence."""
    stanzas = pkg.copyright()
    for file in _files(pkg, "usr/share/games/jigzo/puzzles/00_default", "*.pzl"):
        path = file.relative_to(pkg.root).as_posix()
        credit = dep5_credit(stanzas, path, copyright_source(pkg))
        if credit is not None:
            yield Candidate(package=pkg.name, path=path, name=file.stem.rsplit("-", 1)[0],
                            credit=credit, pixels=cut_pzl_picture(file.read_bytes()))


def extract_skimage(pkg: Package) -> Iterator[Candidate]:
    """scikit-image's colour photos (the motorcycle stereo pair has no stated licence)."""
    folder = "usr/lib/python3/dist-packages/skimage/data"
    for file_name, (licence, holder, source) in SKIMAGE_LICENCES.items():
        file = pkg.root / folder / file_name
        yield Candidate(package=pkg.name, path=f"{folder}/{file_name}", name=file.stem,
                        credit=Credit(licence=licence, source=source, holder=holder), data=file.read_bytes())


def extract_sklearn(pkg: Package) -> Iterator[Candidate]:
    """scikit-learn's two sample photos, CC-BY-2.0 per the README beside them."""
    for file_name, (holder, url) in SKLEARN_CREDITS.items():
        file = pkg.root / SKLEARN_IMAGES / file_name
        credit = Credit(licence="CC-BY-2.0", source=f"{SKLEARN_IMAGES}/README.txt", holder=holder, url=url)
        yield Candidate(package=pkg.name, path=f"{SKLEARN_IMAGES}/{file_name}", name=file.stem,
                        credit=credit, data=file.read_bytes())


def extract_scipy(pkg: Package) -> Iterator[Candidate]:
    """The raccoon of ``scipy.misc.face``: bz2-compressed raw 768x1024 RGB."""
    path = "usr/lib/python3/dist-packages/scipy/misc/face.dat"
    rgb = np.frombuffer(bz2.decompress((pkg.root / path).read_bytes()), np.uint8).reshape(768, 1024, 3)
    credit = dep5_credit(pkg.copyright(), path, copyright_source(pkg))
    if credit is not None:
        note = "scipy.misc.face docstring: raccoon-procyon-lotor.jpg at http://www.public-domain-image.com"
        yield Candidate(package=pkg.name, path=path, name="face", credit=replace(credit, note=note),
                        pixels=cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def extract_matplotlib(pkg: Package) -> Iterator[Candidate]:
    """Matplotlib's Grace Hopper portrait, under the matplotlib (PSF-based) licence.

    The copyright file states that licence as free text with no short name.
    """
    path = "usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    credit = Credit(licence="Matplotlib-PSF-based", source=copyright_source(pkg))
    yield Candidate(package=pkg.name, path=path, name="grace_hopper", credit=credit,
                    data=(pkg.root / path).read_bytes())


def extract_cimg(pkg: Package) -> Iterator[Candidate]:
    """CImg's two colour sample photos."""
    folder = "usr/share/doc/cimg-dev/examples/img"
    yield from _from_copyright(pkg, [pkg.root / folder / "parrot.ppm", pkg.root / folder / "milla.bmp"])


def _stamp_name(file: Path, root: Path) -> str:
    """Output name from the stamp's folders, which keep same-named stamps apart."""
    return "__".join(file.relative_to(root).with_suffix("").parts)


def extract_stamps(pkg: Package) -> Iterator[Candidate]:
    """Tux Paint PNG stamps outside the symbol/sign/space folders, as cut-outs.

    ``*_mirror.png`` files are mirrored copies of another stamp and cartoon
    folders hold drawings; clip art elsewhere is caught later by the flatness
    test (:func:`is_clip_art`).
    """
    root = pkg.root / STAMPS_DIR
    files = [f for f in _files(pkg, STAMPS_DIR, "**/*.png")
             if not any(f.relative_to(root).as_posix().startswith(d + "/") for d in STAMP_SKIP_DIRS)
             and not f.stem.endswith("_mirror") and "cartoon" not in f.relative_to(root).parts]
    yield from _from_copyright(pkg, files, name=lambda f: _stamp_name(f, root), cutout=True)


def _credit(pkg: Package, licence: str, holder: str | None = None, note: str | None = None,
            url: str | None = None) -> Credit:
    """A licence read by hand from a copyright file that is not machine-readable (or lumps files)."""
    return Credit(licence=licence, source=copyright_source(pkg), holder=holder, url=url, note=note)


def _named(pkg: Package, folder: str, names: Iterable[str]) -> list[Path]:
    """Files of ``folder`` by name; a name the package does not ship is an error, not a silent gap."""
    files = [pkg.root / folder / name for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{pkg.name} {pkg.version}: no {', '.join(missing)} in {folder}")
    return files


KPHOTOALBUM_DEMO = "usr/share/kphotoalbum/demo"


def extract_kphotoalbum(pkg: Package) -> Iterator[Candidate]:
    """KPhotoAlbum's demo album, turned upright by the angles of its ``index.xml``.

    ``CategoryImages/`` holds crops of the same photos and is not read.
    """
    angles = kphotoalbum_angles((pkg.root / KPHOTOALBUM_DEMO / "index.xml").read_text(encoding="utf-8"))
    note = ("copyright file (not machine-readable): the whole package is GPL-2+; "
            "the demo photos are not listed separately")
    holder = "2003-2014 Jesper K. Pedersen and the KPhotoAlbum authors"
    for file in _files(pkg, KPHOTOALBUM_DEMO, "*.jpg"):
        path = file.relative_to(pkg.root).as_posix()
        angle = angles.get(file.name, 0)
        data = file.read_bytes()
        if angle:
            credit = _credit(pkg, "GPL-2+", holder, f"{note}; turned {angle} degrees clockwise as index.xml says")
            yield Candidate(package=pkg.name, path=path, name=file.stem, credit=credit,
                            pixels=rotate_clockwise(decode_image(data)[0], angle))
        else:
            yield Candidate(package=pkg.name, path=path, name=file.stem,
                            credit=_credit(pkg, "GPL-2+", holder, note), data=data)


#: The photos among the LXQt wallpapers (origami, plasma, triangles and waves are drawn).
LXQT_PHOTOS = ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
               "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
               "this-is-not-windows.jpg")


def extract_lxqt(pkg: Package) -> Iterator[Candidate]:
    """The photographs among LXQt's wallpapers."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/lxqt/wallpapers", LXQT_PHOTOS))


#: Budgie wallpapers left out: near-monochrome (abstract-spiral,
#: piazza-gae-aulenti), space (saturnian-profile), drawn (the two midnights)
#: and a woodblock print of a wave (ocean-waves, artwork).
BUDGIE_NOT_PHOTOS = ("abstract-spiral.jpg", "piazza-gae-aulenti.jpg", "saturnian-profile.jpg",
                     "valley-midnight.jpg", "waves-midnight.jpg", "ocean-waves.jpg")


def extract_budgie(pkg: Package) -> Iterator[Candidate]:
    """Budgie's 4K CC0 wallpapers (Debian 13), minus the drawn and near-monochrome ones."""
    files = [f for f in _files(pkg, "usr/share/backgrounds/budgie", "*.jpg") if f.name not in BUDGIE_NOT_PHOTOS]
    yield from _from_copyright(pkg, files)


QT_EXAMPLES = "usr/lib/x86_64-linux-gnu/qt5/examples"
#: Photos among the Qt Quick examples (lemonade is drawn, the rest are
#: icons, logos, renders and sprites).
QTDECLARATIVE_PHOTOS = (
    "quick/views/listview/content/pics/fruit-salad.jpg", "quick/views/listview/content/pics/hamburger.jpg",
    "quick/views/listview/content/pics/pancakes.jpg", "quick/views/listview/content/pics/vegetable-soup.jpg",
    "quick/particles/images/backgroundLeaves.jpg", "quick/customitems/scrollbar/pics/niagara_falls.jpg",
    "quick/touchinteraction/flickable/content/cork.jpg",
)
#: Photos among the Qt widgets examples (the cube maps are renders).
QTBASE_PHOTOS = (
    "widgets/painting/composition/flower.jpg", "widgets/painting/affine/bg1.jpg",
    "widgets/graphicsview/weatheranchorlayout/images/place.jpg", "widgets/graphicsview/boxes/square.jpg",
)


def extract_qtdeclarative(pkg: Package) -> Iterator[Candidate]:
    """Food, leaves, cork and Niagara Falls from the Qt Quick examples."""
    yield from _from_copyright(pkg, _named(pkg, QT_EXAMPLES, QTDECLARATIVE_PHOTOS),
                               name=lambda f: f"{f.parent.name}__{f.stem}")


def extract_qtbase(pkg: Package) -> Iterator[Candidate]:
    """A flower, a sea stack, a lake and a face from the Qt widgets examples."""
    yield from _from_copyright(pkg, _named(pkg, QT_EXAMPLES, QTBASE_PHOTOS),
                               name=lambda f: f"{f.parent.name}__{f.stem}")


HUGIN_HELP = "usr/share/hugin/xrc/data/help_en_EN"
#: Hugin's help pictures that are plain (rectilinear) photos.  Left out:
#: screenshots, the many fisheye, stereographic, cylindrical and other
#: reprojections of the same scenes, the rectilinear Big Ben (a grid is drawn
#: over it), crops of other pictures (CA_tCA01-03, AliasingPScubic_2x), the
#: same grass with another colour fringe (CA_strange02), re-interpolations
#: (AliasingPTpoly3), the copy with dust spots, side-by-side pairs
#: (SB_Parallax*), a bracket strip above a panorama (2125768589_b), test
#: charts (CA_artifical_*) and the synthetic Interpolate_* squares.
HUGIN_PHOTOS = (
    "600px-Tuebingen_Neckarfront_small15_2006-06-11.jpg", "CA_fringes00.jpg", "CA_fringes01.jpg",
    "CA_strange01.jpg", "CA_tCA00.jpg", "300px-Lamp_enfuse.jpg", "SB_Blended.jpg",
    "800px-C_Marchi-GrandCentral-adj.jpg", "250px-LagardePont-defish.jpg", "250px-TKS-Mmm-obliquev120-recti.png",
    "AliasingPScubic.jpg",
)


def extract_hugin(pkg: Package) -> Iterator[Candidate]:
    """The plain photos among Hugin's help pictures (from the PanoTools wiki)."""
    yield from _from_copyright(pkg, _named(pkg, HUGIN_HELP, HUGIN_PHOTOS))


def extract_digikam(pkg: Package) -> Iterator[Candidate]:
    """digiKam's "about" page background, a 4032x3024 photo."""
    note = ("copyright file (not machine-readable): 'almost all software is GPL' version 2 or later; "
            "about/images is not among the listed exceptions")
    for file in _named(pkg, "usr/share/digikam/about/images", ["body-background.jpg"]):
        yield Candidate(package=pkg.name, path=file.relative_to(pkg.root).as_posix(), name=file.stem,
                        credit=_credit(pkg, "GPL-2+", "digiKam authors", note), data=file.read_bytes())


def extract_plasma_6(pkg: Package) -> Iterator[Candidate]:
    """Mountain, the one new photo among Plasma 6's wallpapers (Nexus and ScarletTree are drawn).

    Only its light version: the dark one is the same photo graded darker.
    """
    files = _named(pkg, "usr/share/wallpapers/Mountain/contents/images", ["5120x2880.png"])
    yield from _from_copyright(pkg, files, name=lambda f: f.parents[2].name, note=_plasma_note)


def extract_darktable(pkg: Package) -> Iterator[Candidate]:
    """The leaves photo behind darktable's style previews."""
    note = "copyright file: 'Files: *' with the GPL version 3 or later text but no short licence name"
    for file in _named(pkg, "usr/share/darktable/style", ["image-1.jpg"]):
        yield Candidate(package=pkg.name, path=file.relative_to(pkg.root).as_posix(), name="style-image-1",
                        credit=_credit(pkg, "GPL-3+", "2009-2010 The Darktable Authors", note),
                        data=file.read_bytes())


def extract_libvips_doc(pkg: Package) -> Iterator[Candidate]:
    """The owl photo of the libvips documentation (tn_owl is its thumbnail)."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/gtk-doc/html/libvips", ["owl.jpg"]))


def extract_imagemagick_doc(pkg: Package) -> Iterator[Candidate]:
    """The bluebells photo of the ImageMagick docs: ``bluebells_clipped`` is the near-original,
    the other three are tone-curve variants of it."""
    files = _named(pkg, "usr/share/doc/imagemagick-6-common/html/images", ["bluebells_clipped.jpg"])
    yield from _from_copyright(pkg, files)


SWEETHOME3D_JAR = "usr/share/sweethome3d/sweethome3d.jar"
SWEETHOME3D_TEXTURES = "com/eteks/sweethome3d/io/resources/textures/*.jpg"
#: Textures with large flat areas (37-76 % identical neighbours against
#: under 13 % for the photographed ones): a drawn brick pattern, a colour
#: gradient sky, and a parquet of about 1,200 colours.
SWEETHOME3D_NOT_PHOTOS = ("smallBricks.jpg", "blueSky.jpg", "woodenFloor.jpg")


def extract_sweethome3d(pkg: Package) -> Iterator[Candidate]:
    """Sweet Home 3D's photographic material textures (floors, walls, sky), inside its jar."""
    credit = dep5_credit(pkg.copyright(), SWEETHOME3D_JAR, copyright_source(pkg))
    if credit is None:
        raise RuntimeError(f"{pkg.name}: no licence for {SWEETHOME3D_JAR}")
    for member, data in zip_members((pkg.root / SWEETHOME3D_JAR).read_bytes(), SWEETHOME3D_TEXTURES).items():
        if PurePosixPath(member).name in SWEETHOME3D_NOT_PHOTOS:
            continue
        yield Candidate(package=pkg.name, path=f"{SWEETHOME3D_JAR}:/{member}", name=PurePosixPath(member).stem,
                        credit=credit, data=data)


#: GIMP patterns that are real photographs of at least 128 px (the other
#: patterns are synthetic, greyscale or smaller).
GIMP_PHOTO_PATTERNS = {
    "gimp-data": ("Stone/stone33.pat", "Stone/pink_marble.pat", "Paper/crinklepaper.pat"),
    "gimp-data-extras": ("leaves4.pat", "leaves6.pat"),
}


def extract_gimp_patterns(pkg: Package) -> Iterator[Candidate]:
    """Photographic GIMP pattern tiles, decoded from the ``.pat`` format."""
    stanzas = pkg.copyright()
    for file in _named(pkg, "usr/share/gimp/2.0/patterns", GIMP_PHOTO_PATTERNS[pkg.name]):
        path = file.relative_to(pkg.root).as_posix()
        credit = dep5_credit(stanzas, path, copyright_source(pkg))
        if credit is None:
            raise RuntimeError(f"{pkg.name}: no licence for {path}")
        bgr, _ = read_pat(file.read_bytes())
        yield Candidate(package=pkg.name, path=path, name=file.stem, credit=credit, pixels=bgr)


SCRATCH_BACKGROUNDS = "usr/share/scratch/Media/Backgrounds"
#: Scratch backgrounds that are not plain photos: drawn rooms and scenes,
#: murals and graffiti (artwork), courts drawn over a photo, a brick wall
#: over flat painted ground.
SCRATCH_NOT_PHOTOS = frozenset({
    "Indoors/party-room.jpg", "Indoors/room1.jpg", "Indoors/room2.jpg", "Indoors/room3.jpg",
    "Indoors/spotlight-stage.jpg", "Nature/woods-and-bench.jpg", "Outdoors/school2.jpg",
    "Outdoors/all-sports-mural.jpg", "Outdoors/berkeley-mural.jpg", "Outdoors/mural-faro.jpg",
    "Outdoors/graffiti.jpg", "Sports/basketball-court1-a.jpg", "Sports/basketball-court1-b.jpg",
    "Outdoors/brick-wall1.jpg",
})


def extract_scratch(pkg: Package) -> Iterator[Candidate]:
    """Scratch 1.4's photo backgrounds (480x360, CC-BY-SA-3.0 like all of ``Media/``).

    The GIFs are drawings and the costumes are cartoons or too small.
    """
    root = pkg.root / SCRATCH_BACKGROUNDS
    files = [f for f in _files(pkg, SCRATCH_BACKGROUNDS, "*/*.jpg")
             if f.relative_to(root).as_posix() not in SCRATCH_NOT_PHOTOS]
    yield from _from_copyright(pkg, files, name=lambda f: f"{f.parent.name}__{f.stem}")


def extract_kalzium(pkg: Package) -> Iterator[Candidate]:
    """Photos of laboratory equipment from Kalzium's tool list."""
    yield from _from_copyright(pkg, _files(pkg, "usr/share/kalzium/data/toolpics", "*.jpg"))


PSYCHTOOLBOX = "usr/share/psychtoolbox-3"
#: Psychtoolbox demo photos: rabbits, apples, a town.  Left out: blurred and
#: grey copies, the painted rabbits of stim6, stimulus charts and textures.
PSYCHTOOLBOX_PHOTOS = (
    "PsychDemos/konijntjes1024x768.jpg", "PsychDemos/OpenGL4MatlabDemos/MorphDemo/TeapotTexture.jpg",
    "PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim2.jpg",
    "PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim3.jpg",
    "PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim4.jpg",
    "PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim5.jpg",
    "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg",
)


def extract_psychtoolbox(pkg: Package) -> Iterator[Candidate]:
    """Psychtoolbox's demo photos (Expat like the whole package)."""
    yield from _from_copyright(pkg, _named(pkg, PSYCHTOOLBOX, PSYCHTOOLBOX_PHOTOS))


def extract_sddm_maldives(pkg: Package) -> Iterator[Candidate]:
    """The Maldives photo behind SDDM's "maldives" login theme (``maldives.jpg`` is a screenshot)."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/sddm/themes/maldives", ["background.jpg"]),
                               name=lambda f: "maldives")


GRUB_SPLASH = "usr/share/images/grub"
#: Not a photograph: Gilles Tran's ray-traced "Glasses".
GRUB_NOT_PHOTOS = ("Glasses_800_edit.tga",)


def extract_grub_splash(pkg: Package) -> Iterator[Candidate]:
    """GRUB splash images (Wikimedia Commons featured pictures, 640x480 TGA), credited per file."""
    credits = parse_grub_credits(pkg.copyright_text())
    for file in _files(pkg, GRUB_SPLASH, "*.tga"):
        if file.name in GRUB_NOT_PHOTOS:
            continue
        if file.name not in credits:
            log.warning("%s: no credit for %s in the copyright file; skipped", pkg.name, file.name)
            continue
        author, licence = credits[file.name]
        licence = "GFDL-1.2+" if re.fullmatch(r"GNU FDL >= ?1\.2", licence) else normalise_licence(licence)
        credit = Credit(licence=licence, source=copyright_source(pkg), holder=author,
                        url=f"https://commons.wikimedia.org/wiki/File:{file.stem}",
                        note="downloaded from Commons featured desktop backgrounds and scaled to 640x480")
        yield Candidate(package=pkg.name, path=file.relative_to(pkg.root).as_posix(), name=file.stem,
                        credit=credit, data=file.read_bytes())


#: Photos of the hardware in the ExpEYES-17 help (the rest are plots and
#: screenshots; RCsteadystate-photo and eyes-box have wires drawn on).
EYES17_PHOTOS = ("accessory.jpg", "driven-pendulum-photo.jpg", "eyes17-nb.jpg", "eyes17-panel.jpg",
                 "induction-photo.jpg", "rod-pend-LB.jpg", "sr04-photo.jpg", "MPU6050.png")


def extract_eyes17(pkg: Package) -> Iterator[Candidate]:
    """Photos of the ExpEYES-17 kit and its experiments."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/eyes17/helpFiles/pics", EYES17_PHOTOS))


#: The unprocessed photos of the Wand (ImageMagick for Python) documentation;
#: the other pictures are filter results made from them, a stylised portrait
#: and a soft-drink logo.
WAND_PHOTOS = ("hummingbird.jpg", "inca_tern.jpg", "enhancement.jpg")


def extract_wand_doc(pkg: Package) -> Iterator[Candidate]:
    """A hummingbird, a tern and a street of towers from the Wand documentation."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/doc/wand-doc/html/_images", WAND_PHOTOS))


STELLARIUM = "usr/share/stellarium"
#: Stellarium horizon panoramas of places on Earth: a rapeseed field, meadows
#: and a snowy forest.  Grossmugl (a spherical map that is mostly ground)
#: and the planets are left out, and so are the ground (nadir) and fog
#: textures: only the side tiles a landscape.ini lists as ``texN``.
STELLARIUM_LANDSCAPES = ("garching", "guereins", "hurricane")
STELLARIUM_PHOTOS = ("scenery3d/Sterngarten/Sterngarten_20100320.png",)


def landscape_tiles(ini: str) -> tuple[list[str], str | None]:
    """The side tiles (``texN = file``) and the author named in a Stellarium ``landscape.ini``."""
    tiles = re.findall(r"^tex\d+\s*=\s*(\S+)", ini, re.MULTILINE)
    author = re.search(r"^author\s*=\s*(.+?)\s*$", ini, re.MULTILINE)
    return tiles, author[1] if author else None


def extract_stellarium(pkg: Package) -> Iterator[Candidate]:
    """Tiles of Stellarium's Earth horizon panoramas, the sky cut away (cropped to the opaque
    area and set on neutral grey like the stamps), and the Sterngarten site photo.

    The tiles of one panorama share a split (``group``), so neighbouring
    pieces of one scene never end up on both sides.
    """
    stanzas = pkg.copyright()
    for landscape in STELLARIUM_LANDSCAPES:
        folder = pkg.root / STELLARIUM / "landscapes" / landscape
        tiles, author = landscape_tiles((folder / "landscape.ini").read_text(encoding="utf-8"))
        for tile in _named(pkg, folder.relative_to(pkg.root).as_posix(), tiles):
            path = tile.relative_to(pkg.root).as_posix()
            credit = dep5_credit(stanzas, path, copyright_source(pkg))
            if credit is None:
                raise RuntimeError(f"{pkg.name}: no licence for {path}")
            data = tile.read_bytes()
            yield Candidate(package=pkg.name, path=path, name=f"{landscape}__{tile.stem}",
                            credit=replace(credit, note=f"landscape.ini: author {author}"), data=data,
                            cutout=decode_image(data)[1] is not None, group=f"{STELLARIUM}/landscapes/{landscape}")
    yield from _from_copyright(pkg, _named(pkg, STELLARIUM, STELLARIUM_PHOTOS))


WORDPRESS_THEMES = "usr/share/wordpress/wp-content/themes"
#: Twenty Twenty-Five's colour photographs, one file per picture.  The theme
#: also ships crops of the same pictures (flower-meadow-square,
#: services-subscriber-photo, red-hibiscus-closeup, botany-flowers-closeup),
#: toned prints of the 1860s-1930s (sepia or platinum: parthenon-square,
#: vash-gon-square, nurse, typewriter and a dozen more, whose colour is the
#: print's, not the scene's), botanical drawings, a map and a book mock-up.
WORDPRESS_2025_PHOTOS = (
    "akaka-falls-state-park-flora.webp", "botany-flowers.webp", "category-anthuriums.webp",
    "category-sunflowers.webp", "coming-soon-bg-image.webp", "coral-square.webp", "dallas-creek-square.webp",
    "grid-flower-1.webp", "malibu-plantlife.webp", "marshland-birds-square.webp",
    "northern-buttercups-flowers.webp",
)
#: Twenty Twenty-Four's architecture photographs (icon-message is an icon).
WORDPRESS_2024_PHOTOS = (
    "abstract-geometric-art.webp", "angular-roof.webp", "art-gallery.webp", "building-exterior.webp",
    "green-staircase.webp", "hotel-facade.webp", "museum.webp", "tourist-and-building.webp", "windows.webp",
)


def parse_wordpress_image_credits(text: str) -> dict[str, Credit]:
    """``{file: Credit}`` from the ``=== Images ===`` section of a WordPress theme's ``readme.txt``.

    Two layouts occur.  Twenty Twenty-Four: a ``License:`` line, then
    ``name.webp - URL`` lines.  Twenty Twenty-Five: entries of a title line,
    ``Free public domain CC0 image.``, one or more file names and the source
    URL, with ``License:`` lines and title-only entries (a book template) in
    between.  A file gets the licence its entry states, else the last
    ``License:`` line above it; a file with neither gets no credit (the
    caller refuses it).
    """
    _, found, section = text.partition("=== Images ===")
    credits: dict[str, Credit] = {}
    if not found:
        return credits
    licence: str | None = None
    title: str | None = None
    entry_cc0 = False
    files: list[str] = []
    source = "readme.txt of the theme (=== Images ===)"
    for line in (raw.strip() for raw in section.split("\n== ")[0].splitlines()):
        if not line:  # entries are separated by blank lines: a file listed without its URL gets nothing
            files, title, entry_cc0 = [], None, False
        elif match := re.fullmatch(r"License:\s*(.+?)\s+(https?://\S+)", line):
            licence = "CC0-1.0" if re.fullmatch(r"CC0(?:[- ]1\.0)?", match[1]) else normalise_licence(match[1])
        elif match := re.fullmatch(r"([\w.-]+\.(?:webp|jpe?g|png))\s+-\s+(https?://\S+)", line):
            if licence:
                credits[match[1]] = Credit(licence=licence, source=source, url=match[2])
        elif re.fullmatch(r"https?://\S+", line):
            for name in files:
                if entry_cc0 or licence:
                    credits[name] = Credit(licence="CC0-1.0" if entry_cc0 else str(licence), source=source,
                                           url=line, note=f"title in the readme: {title}" if title else None)
            files, title, entry_cc0 = [], None, False
        elif re.fullmatch(r"[\w.-]+\.(?:webp|jpe?g|png)", line):
            files.append(line)
        elif re.search(r"public domain CC0 image", line, re.IGNORECASE):
            entry_cc0 = True
        elif not files and not entry_cc0:  # an entry's title; a title-only entry is replaced by the next
            title = line.rstrip(".")
    return credits


def _extract_wordpress_theme(pkg: Package, theme: str, names: Iterable[str]) -> Iterator[Candidate]:
    """The listed photos of one WordPress default theme, credited by its readme.txt (CC0, rawpixel)."""
    folder = f"{WORDPRESS_THEMES}/{theme}"
    credits = parse_wordpress_image_credits((pkg.root / folder / "readme.txt").read_text(encoding="utf-8"))
    for file in _named(pkg, f"{folder}/assets/images", names):
        credit = credits.get(file.name)
        if credit is None:
            raise RuntimeError(f"{pkg.name}: no licence for {file.name} in {folder}/readme.txt")
        credit = replace(credit, source=f"{folder}/readme.txt (=== Images ===)")
        yield Candidate(package=pkg.name, path=file.relative_to(pkg.root).as_posix(), name=file.stem,
                        credit=credit, data=file.read_bytes())


def extract_wordpress_2025(pkg: Package) -> Iterator[Candidate]:
    """Flowers, a coral reef, a creek and marsh birds from Twenty Twenty-Five (Debian 13)."""
    yield from _extract_wordpress_theme(pkg, "twentytwentyfive", WORDPRESS_2025_PHOTOS)


def extract_wordpress_2024(pkg: Package) -> Iterator[Candidate]:
    """Buildings, stairs and a museum from Twenty Twenty-Four (Debian 13)."""
    yield from _extract_wordpress_theme(pkg, "twentytwentyfour", WORDPRESS_2024_PHOTOS)


#: GNOME Recipes' cuisine banners, food photographs; the small ones
#: (french.jpg, ...) are the same pictures smaller, the rest are icons and
#: help screenshots.
RECIPES_PHOTOS = ("big-american.png", "big-chinese.png", "big-french.jpg", "big-indian.jpg", "big-italian.png",
                  "big-mediterranean.png", "big-nordic.jpg", "big-turkish.png")


def extract_gnome_recipes(pkg: Package) -> Iterator[Candidate]:
    """Eight food photographs from GNOME Recipes (Debian 13)."""
    yield from _from_copyright(pkg, _named(pkg, "usr/share/gnome-recipes/images", RECIPES_PHOTOS))


# --------------------------------------------------------------------------
# Photos in Debian source packages
# --------------------------------------------------------------------------

#: The photos :func:`fetch_source_package` takes from upstream tarballs, pinned by path and checksum.
SOURCE_PHOTOS_FILE = Path(__file__).with_name("source_photos.json")


@dataclass(frozen=True)
class SourcePhoto:
    """A photo inside a source package's upstream tarball, and its licence.

    Upstream tarballs hold test and example images that binary packages leave out, but thousands
    of other files too, so each photo is named here (a survey picked them by eye) rather than
    found by a rule.  ``sha256`` pins the bytes: a new upstream release that changes or drops the
    file drops the photo, with a warning, instead of slipping other pixels into the data.
    """

    package: str
    suite: str
    path: str  # below the tarball's top folder
    sha256: str
    licence: str
    licence_source: str
    licence_scope: str
    holder: str | None = None
    note: str | None = None
    rotate: int = 0  # clockwise degrees, for a photo stored sideways with no EXIF tag

    @property
    def name(self) -> str:
        """The photo's file name in the collection, without suffix."""
        return PurePosixPath(self.path).stem


def load_source_photos(file: Path = SOURCE_PHOTOS_FILE) -> tuple[SourcePhoto, ...]:
    """The pinned source-package photos, in the file's order."""
    return tuple(SourcePhoto(**entry) for entry in json.loads(file.read_text(encoding="utf-8"))["photos"])


SOURCE_PHOTOS = load_source_photos()


def extract_source_photos(pkg: Package) -> Iterator[Candidate]:
    """The pinned photos :func:`fetch_source_package` found in this package's tarball."""
    for photo in SOURCE_PHOTOS:
        file = pkg.root / photo.path
        if photo.package != pkg.name:
            continue
        if not file.is_file():  # (missing or changed in this tarball: said when it was unpacked)
            log.debug("%s: pinned %s not unpacked; left out", pkg.name, photo.path)
            continue
        credit = Credit(photo.licence, f"{photo.licence_source} [{photo.licence_scope}]", photo.holder,
                        note=photo.note)
        data = file.read_bytes()
        if photo.rotate:
            bgr, _ = decode_image(data)
            yield Candidate(pkg.name, photo.path, photo.name, credit,
                            pixels=rotate_clockwise(apply_orientation(bgr, exif_orientation(data)), photo.rotate))
        else:
            yield Candidate(pkg.name, photo.path, photo.name, credit, data=data)


@dataclass(frozen=True)
class Source:
    """A package to take photos from: its suite, its extractor, and where its licence lives."""

    package: str
    extract: Callable[[Package], Iterator[Candidate]]
    suite: str = "bookworm"
    licence_from: str | None = None  # package holding the copyright file, if not this one
    #: ``"deb"``: a binary package (:func:`fetch_package`); ``"source"``: a source package's upstream
    #: tarball (:func:`fetch_source_package`).
    kind: str = "deb"


#: Packages and how to take their photos: the 14 of the first survey (as
#: before), then the second survey's, then packages found since; the
#: tuxpaint cut-outs last, so on an exact duplicate the first copy wins.
#: blender-data is left out: its EXR panoramas (CC0) need OpenEXR, which
#: this OpenCV build lacks.
SOURCES: tuple[Source, ...] = (
    Source("gcompris-qt-data", extract_gcompris),
    Source("tuxpaint-data", extract_tuxpaint_data),
    Source("lomiri-wallpapers-16.04", extract_lomiri_16),
    Source("lomiri-wallpapers-20.04", extract_lomiri_20),
    Source("mate-backgrounds", extract_mate),
    Source("plasma-workspace-wallpapers", extract_plasma),
    Source("palapeli-data", extract_palapeli),
    Source("jigzo-data", extract_jigzo),
    Source("python3-skimage", extract_skimage),
    Source("python3-sklearn", extract_sklearn),
    Source("python3-scipy", extract_scipy),
    Source("python-matplotlib-data", extract_matplotlib),
    Source("cimg-examples", extract_cimg),
    # Second survey.
    Source("budgie-backgrounds", extract_budgie, suite="trixie"),
    Source("kphotoalbum", extract_kphotoalbum),
    Source("lxqt-themes", extract_lxqt),
    Source("qtdeclarative5-examples", extract_qtdeclarative),
    Source("qtbase5-examples", extract_qtbase),
    Source("hugin-data", extract_hugin),
    Source("digikam-data", extract_digikam),
    Source("plasma-workspace-wallpapers", extract_plasma_6, suite="trixie"),
    Source("darktable", extract_darktable),
    Source("libvips-doc", extract_libvips_doc),
    Source("imagemagick-6-doc", extract_imagemagick_doc, licence_from="imagemagick-6-common"),
    Source("sweethome3d", extract_sweethome3d),
    Source("gimp-data", extract_gimp_patterns),
    Source("gimp-data-extras", extract_gimp_patterns),
    # Found beyond the surveys.
    Source("scratch", extract_scratch),
    Source("grub2-splashimages", extract_grub_splash, suite="trixie"),
    Source("kalzium-data", extract_kalzium),
    Source("psychtoolbox-3-common", extract_psychtoolbox),
    Source("sddm-theme-maldives", extract_sddm_maldives),
    Source("eyes17", extract_eyes17),
    Source("wand-doc", extract_wand_doc),
    Source("stellarium-data", extract_stellarium),
    # Debian 13 packages found in its Contents index (2026-12-02), held out.
    Source("wordpress-theme-twentytwentyfive", extract_wordpress_2025, suite="trixie"),
    Source("wordpress-theme-twentytwentyfour", extract_wordpress_2024, suite="trixie"),
    Source("gnome-recipes-data", extract_gnome_recipes, suite="trixie"),
    # Upstream tarballs of Debian source packages (surveyed 2026-12-03): photos pinned by checksum.
    *(Source(package, extract_source_photos, suite=suite, kind="source")
      for package, suite in dict.fromkeys((photo.package, photo.suite) for photo in SOURCE_PHOTOS)),
    Source("tuxpaint-stamps-default", extract_stamps),
)
PACKAGES = tuple(dict.fromkeys(source.package for source in SOURCES))


# --------------------------------------------------------------------------
# Pixels: decoding and filters
# --------------------------------------------------------------------------


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    """Decode formats OpenCV lacks (TGA) with Pillow, as OpenCV would: BGR or BGRA."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            rgb = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except (UnidentifiedImageError, OSError):
        return None
    return cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if has_alpha else cv2.COLOR_RGB2BGR)


def decode_image(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode any image file to 8-bit BGR plus its alpha (None when opaque).

    EXIF orientation is not applied here (see :func:`exif_orientation`).
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        image = _decode_with_pillow(data)
    if image is None:
        raise ValueError("neither OpenCV nor Pillow can decode this image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.shape[2] == 4:
        alpha = image[..., 3].copy()
        return np.ascontiguousarray(image[..., :3]), None if alpha.min() == 255 else alpha
    return image, None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of a JPEG: 1 (upright) when absent or unreadable."""
    if data[:3] != b"\xff\xd8\xff":
        return 1
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF orientation value (1-8), as viewers do."""
    if orientation in (5, 7):  # transpose, transverse: mirror along a diagonal
        image = np.swapaxes(image, 0, 1)
        return np.ascontiguousarray(image if orientation == 5 else image[::-1, ::-1])
    flips = {1: np.s_[:, :], 2: np.s_[:, ::-1], 3: np.s_[::-1, ::-1], 4: np.s_[::-1, :]}
    if orientation in flips:
        return np.ascontiguousarray(image[flips[orientation]])
    return np.ascontiguousarray(np.rot90(image, -1 if orientation == 6 else 1))


def mean_chroma(bgr: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean CIE Lab chroma sqrt(a^2 + b^2) over the (masked) pixels.

    Float input makes OpenCV return Lab in standard units (a, b about
    -128..127) instead of the 8-bit +128 offset encoding.
    """
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    return float(chroma[mask].mean() if mask is not None and mask.any() else chroma.mean())


def flat_fraction(bgr: np.ndarray, alpha: np.ndarray) -> float:
    """Share of horizontally adjacent opaque pixel pairs with identical colour.

    The opaque area is eroded first so anti-aliased outlines don't count.
    """
    opaque = cv2.erode((alpha >= 250).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    pairs = opaque[:, 1:] & opaque[:, :-1]
    if not pairs.any():
        return 1.0
    same = (bgr[:, 1:] == bgr[:, :-1]).all(axis=2)
    return float(same[pairs].mean())


def is_clip_art(stamp_path: str, flatness: float) -> bool:
    """Whether a tuxpaint stamp is a drawing: flatness test plus hand-checked exceptions."""
    if stamp_path in STAMP_PHOTOS_DESPITE_FLATNESS:
        return False
    if stamp_path in STAMP_DRAWINGS_DESPITE_FLATNESS:
        return True
    return flatness > MAX_FLAT_FRACTION


def crop_to_alpha(bgr: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop an image and its alpha to the bounding box of the visible pixels."""
    ys, xs = np.nonzero(alpha)
    if ys.size == 0:
        return bgr[:0, :0], alpha[:0, :0]
    box = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return bgr[box], alpha[box]


def composite_on_grey(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend a cut-out over neutral grey (a = b = 0), rounding to 8 bits."""
    weight = alpha.astype(np.float32)[..., None] / 255.0
    blended = bgr.astype(np.float32) * weight + CUTOUT_BACKGROUND * (1.0 - weight)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def pixel_hash(bgr: np.ndarray) -> str:
    """Hash of decoded pixels and shape: equal for the same picture in any file format."""
    digest = hashlib.sha256(str(bgr.shape).encode())
    digest.update(np.ascontiguousarray(bgr).tobytes())
    return digest.hexdigest()


def near_duplicate_signature(bgr: np.ndarray) -> np.ndarray:
    """A small Lab thumbnail (:data:`SIGNATURE_SIDE` square, L*a*b* units) for the near-duplicate test.

    The same picture at another size, re-encoded or slightly re-graded gives
    almost the same thumbnail; the aspect ratio is compared separately.
    """
    small = cv2.resize(bgr, (SIGNATURE_SIDE, SIGNATURE_SIDE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


class NearDuplicates:
    """Signatures of the photos kept so far, to catch the same picture kept twice."""

    def __init__(self) -> None:
        self._signatures: list[np.ndarray] = []
        self._aspects: list[float] = []
        self._names: list[str] = []

    def nearest(self, bgr: np.ndarray) -> tuple[str, float] | None:
        """The most similar kept photo of about the same aspect ratio, and its distance."""
        if not self._signatures:
            return None
        aspect = bgr.shape[1] / bgr.shape[0]
        distances = np.abs(np.stack(self._signatures) - near_duplicate_signature(bgr)).mean(axis=(1, 2, 3))
        distances[np.abs(np.log(np.asarray(self._aspects) / aspect)) > NEAR_DUPLICATE_ASPECT] = np.inf
        best = int(np.argmin(distances))
        return None if np.isinf(distances[best]) else (self._names[best], float(distances[best]))

    def find(self, bgr: np.ndarray) -> tuple[str, float] | None:
        """The kept photo this one nearly duplicates and their distance, else None."""
        nearest = self.nearest(bgr)
        return nearest if nearest is not None and nearest[1] < NEAR_DUPLICATE_DISTANCE else None

    def add(self, bgr: np.ndarray, name: str) -> None:
        self._signatures.append(near_duplicate_signature(bgr))
        self._aspects.append(bgr.shape[1] / bgr.shape[0])
        self._names.append(name)


def assign_split(package: str, path: str) -> str:
    """``"holdout"`` for every photo of :data:`HOLDOUT_PACKAGES`; otherwise ``"val"`` for about
    :data:`VAL_FRACTION` of photos, stable under a hash of package and path."""
    if package in HOLDOUT_PACKAGES:
        return "holdout"
    bucket = int.from_bytes(hashlib.sha256(f"{package}\0{path}".encode()).digest()[:8], "big") % 10_000
    return "val" if bucket < VAL_FRACTION * 10_000 else "train"


def excluded_reason(candidate: Candidate) -> str | None:
    """Reason from :data:`EXCLUDED` or a non-commercial licence, else None."""
    if NON_FREE_LICENCE.search(candidate.credit.licence):
        return f"licence: non-commercial {candidate.credit.licence}"
    for pattern, reason in EXCLUDED.get(candidate.package, {}).items():
        if fnmatch.fnmatchcase(candidate.path, pattern):
            return f"excluded: {reason}"
    return None


@dataclass(frozen=True)
class Prepared:
    """A candidate's final pixels, and its original JPEG bytes if they can be kept as is."""

    bgr: np.ndarray
    jpeg: bytes | None


def prepare(candidate: Candidate) -> Prepared | str:
    """Decode and filter one candidate: its final pixels, or why it was dropped.

    Reasons read ``"<category>: <detail>"`` so the report can count categories.
    """
    reason = excluded_reason(candidate)
    if reason:
        return reason
    orientation = 1
    if candidate.pixels is not None:
        bgr, alpha = candidate.pixels, None
    else:
        bgr, alpha = decode_image(candidate.data or b"")
        orientation = exif_orientation(candidate.data or b"")
        if orientation != 1:
            bgr = apply_orientation(bgr, orientation)
            alpha = None if alpha is None else apply_orientation(alpha, orientation)
    mask = None
    if candidate.cutout and alpha is not None:
        flatness = flat_fraction(bgr, alpha)
        if is_clip_art(candidate.path.removeprefix(STAMPS_DIR + "/"), flatness):
            return f"clip art: {flatness:.2f} of neighbours identical"
        bgr, alpha = crop_to_alpha(bgr, alpha)
        mask = alpha >= 128
    if min(bgr.shape[:2]) < MIN_SHORT_SIDE:
        return f"small: short side {min(bgr.shape[:2])} px < {MIN_SHORT_SIDE}"
    chroma = mean_chroma(bgr, mask)
    if chroma < MIN_MEAN_CHROMA:
        return f"grey: mean chroma {chroma:.1f} < {MIN_MEAN_CHROMA}"
    if alpha is not None:
        return Prepared(composite_on_grey(bgr, alpha), None)
    untouched_jpeg = candidate.data is not None and candidate.data[:3] == b"\xff\xd8\xff" and orientation == 1
    return Prepared(bgr, candidate.data if untouched_jpeg else None)


# --------------------------------------------------------------------------
# Downloading and unpacking
# --------------------------------------------------------------------------


def deb_field(deb: Path, name: str) -> str:
    """A control field of a ``.deb`` (e.g. its exact Version, epoch included)."""
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True,
                          capture_output=True, text=True).stdout.strip()


#: The machine's own apt sources give bookworm (Debian 12); other suites are
#: fetched from this archive through a private apt configuration, so the
#: machine's sources stay untouched.
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def apt_options(suite_dir: Path) -> list[str]:
    """``apt-get -o`` options for an apt of its own under ``suite_dir`` (sources, lists, cache, status)."""
    return ["-o", f"Dir::Etc::SourceList={suite_dir / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={suite_dir / 'lists'}", "-o", f"Dir::Cache={suite_dir / 'cache'}",
            "-o", f"Dir::State::status={suite_dir / 'status'}"]


def suite_apt(cache: Path, suite: str) -> list[str]:
    """The ``apt-get`` command line for ``suite``, its index fetched once per cache."""
    if suite == "bookworm":
        return ["apt-get"]
    return private_apt(cache / "apt" / suite, f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_ARCHIVE} {suite} main")


def private_apt(suite_dir: Path, source_line: str) -> list[str]:
    """The ``apt-get`` command line of an apt of its own under ``suite_dir`` whose one source is
    ``source_line``; its index is fetched on first use (``apt-get update``), then reused."""
    suite_dir = suite_dir.resolve()
    command = ["apt-get", *apt_options(suite_dir)]
    if not (suite_dir / "updated").exists():
        for folder in ("lists/partial", "cache/archives/partial"):
            (suite_dir / folder).mkdir(parents=True, exist_ok=True)
        (suite_dir / "status").touch()
        (suite_dir / "sources.list").write_text(source_line + "\n")
        log.info("apt-get update for %s", source_line)
        subprocess.run([*command, "update"], check=True, capture_output=True)
        (suite_dir / "updated").touch()
    return command


def fetch_package(name: str, cache: Path, suite: str = "bookworm") -> Package:
    """Download (once) and unpack (once) a package of ``suite`` into the cache.

    bookworm packages live in ``cache/`` itself (as before suites were
    added), others in ``cache/<suite>/``.
    """
    folder = cache if suite == "bookworm" else cache / suite
    folder.mkdir(parents=True, exist_ok=True)
    debs = sorted(folder.glob(f"{name}_*.deb"))
    if not debs:
        log.info("downloading %s (%s)", name, suite)
        subprocess.run([*suite_apt(cache, suite), "download", name], cwd=folder, check=True, capture_output=True)
        debs = sorted(folder.glob(f"{name}_*.deb"))
    deb = debs[-1]
    version = deb_field(deb, "Version")
    root = folder / "unpacked" / name
    marker = root / ".unpacked-from"
    if not marker.exists() or marker.read_text() != deb.name:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        marker.write_text(deb.name)
    return Package(name=name, version=version, root=root, suite=suite)


class SourceUnavailable(RuntimeError):
    """The archive lacks a source package's upstream tarball (its mirror answers 404 for some)."""


def source_apt(cache: Path, suite: str) -> list[str]:
    """The ``apt-get`` command line whose sources are ``suite``'s ``deb-src`` (index fetched once per cache)."""
    return private_apt(cache / "apt" / f"{suite}-src",
                       f"deb-src [signed-by={DEBIAN_KEYRING}] {DEBIAN_ARCHIVE} {suite} main")


@dataclass(frozen=True)
class SourceFile:
    """One file of a source package, as ``apt-get source --print-uris`` lists it."""

    uri: str
    name: str
    size: int
    sha256: str


def parse_print_uris(text: str) -> tuple[str, list[SourceFile]]:
    """The version apt selected and the files of ``apt-get source --print-uris``'s output."""
    version = re.search(r"Selected version '([^']+)'", text)
    files = [SourceFile(uri, name, int(size), digest)
             for uri, name, size, digest in re.findall(r"^'([^']+)' (\S+) (\d+) SHA256:([0-9a-f]{64})$", text, re.M)]
    if not files:
        raise SourceUnavailable("apt-get source --print-uris listed no files")
    if version is None:
        dsc = next((f.name for f in files if f.name.endswith(".dsc")), "")
        version = re.match(r"[^_]+_(.+)\.dsc$", dsc)
    return (version.group(1) if version else "unknown"), files


def upstream_tarball(files: list[SourceFile]) -> SourceFile:
    """The upstream tarball of a source package: ``*.orig.tar.*``, or the one tarball of a native package."""
    tarballs = [f for f in files if re.search(r"\.tar\.(gz|xz|bz2|lzma)$", f.name) and ".debian." not in f.name]
    main = [f for f in tarballs if ".orig.tar." in f.name] or tarballs
    if len(main) != 1:
        raise SourceUnavailable(f"no single upstream tarball among {[f.name for f in files]}")
    return main[0]


def extract_members(tarball: Path, wanted: dict[str, str], root: Path) -> list[str]:
    """Write the ``wanted`` members (path below the top folder -> sha256) of a tarball under ``root``.

    Streams the tarball once, reads only the wanted members, and writes a member only when its
    bytes match its checksum; the paths come from the table, never from the tarball, so a hostile
    member name cannot write outside ``root``.  Returns the wanted paths the tarball does not hold
    (a changed one was reported here already), for the caller to report.
    """
    found: set[str] = set()
    seen: set[str] = set()
    with tarfile.open(tarball, mode="r:*") as archive:
        for member in archive:
            parts = PurePosixPath(member.name).parts
            path = PurePosixPath(*parts[1:]).as_posix() if len(parts) > 1 else ""
            if path not in wanted or path in found or not member.isfile():
                continue
            seen.add(path)
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            if hashlib.sha256(data).hexdigest() != wanted[path]:
                log.warning("%s: %s changed upstream (checksum differs); left out", tarball.name, path)
                continue
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            found.add(path)
    return sorted(set(wanted) - seen)


def fetch_source_package(name: str, cache: Path, suite: str) -> Package:
    """Download (once) a source package's upstream tarball and take its pinned photos out (once).

    Only the upstream tarball is fetched, through ``apt-helper download-file`` with the checksum
    of the archive's signed Sources index, so apt verifies it as it would a whole
    ``apt-get source``.  Files live under ``cache/source/<suite>/``.
    """
    folder = cache / "source" / suite
    folder.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run([*source_apt(cache, suite), "source", "--print-uris", f"{name}/{suite}"],
                             capture_output=True, text=True)
    if listing.returncode != 0:
        raise SourceUnavailable(listing.stderr.strip().splitlines()[-1] if listing.stderr.strip() else "apt-get failed")
    version, files = parse_print_uris(listing.stdout + listing.stderr)
    tarball = upstream_tarball(files)
    target = folder / tarball.name
    if not target.exists() or sha256_file(target) != tarball.sha256:
        log.info("downloading %s (%s, %.0f MB)", tarball.name, suite, tarball.size / 1e6)
        download = subprocess.run(["/usr/lib/apt/apt-helper", "download-file", tarball.uri, str(target),
                                   f"SHA256:{tarball.sha256}"], capture_output=True, text=True)
        if download.returncode != 0:
            target.unlink(missing_ok=True)
            raise SourceUnavailable(f"{tarball.uri}: {download.stderr.strip() or download.stdout.strip()}")
    root = folder / "unpacked" / name
    marker = root / ".unpacked-from"
    wanted = {photo.path: photo.sha256 for photo in SOURCE_PHOTOS if photo.package == name}
    # (the pins are part of what was unpacked: a photo added to the table, or a pin changed, unpacks again)
    stamp = f"{tarball.name} {hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]}"
    if not marker.exists() or marker.read_text() != stamp:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for path in extract_members(target, wanted, root):
            log.warning("%s: %s not found in %s; left out", name, path, tarball.name)
        marker.write_text(stamp)
    return Package(name=name, version=version, root=root, suite=suite, tarball=tarball.name)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Checksum recorded in the manifest, so a copy can be verified after shipping."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_photo(prepared: Prepared, target_stem: Path, force: bool) -> Path:
    """Write the photo unless it is already there: JPEG bytes as shipped, else PNG."""
    target = target_stem.with_suffix(".jpg" if prepared.jpeg else ".png")
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if prepared.jpeg:
        target.write_bytes(prepared.jpeg)
    else:
        ok, png = cv2.imencode(".png", prepared.bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        if not ok:
            raise RuntimeError(f"cannot encode {target}")
        target.write_bytes(png.tobytes())
    return target


def manifest_record(candidate: Candidate, package: Package, out: Path, file: Path, bgr: np.ndarray) -> dict:
    """One manifest entry: provenance, licence, size, checksum and split."""
    credit = candidate.credit
    record = {
        "file": file.relative_to(out).as_posix(),
        "package": candidate.package,
        "version": package.version,
        "suite": package.suite,
        "path": candidate.path,
        "licence": credit.licence,
        "licence_source": credit.source,
        "copyright": credit.holder,
        "source_url": credit.url,
        "licence_note": credit.note,
        "cutout": candidate.cutout,
        "width": int(bgr.shape[1]),
        "height": int(bgr.shape[0]),
        "sha256": sha256_file(file),
        "split": assign_split(candidate.package, candidate.group or candidate.path),
        "tarball": package.tarball,
    }
    return {k: v for k, v in record.items() if v is not None}


def write_manifest(folder: Path, photos: list[dict], extra: dict) -> None:
    """Write ``manifest.json`` with sorted entries, so reruns give identical bytes."""
    body = {"generator": "python -m streamcolor.trainer.collect_photos", "count": len(photos),
            "photos": sorted(photos, key=lambda r: r["file"]), **extra}
    (folder / "manifest.json").write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def prune(folder: Path, keep: set[Path]) -> None:
    """Delete photos of this collector that are no longer selected (stale runs)."""
    for package in PACKAGES:
        for file in sorted((folder / package).glob("*")):
            if file.is_file() and file not in keep:
                log.info("removing stale %s", file)
                file.unlink()


# --------------------------------------------------------------------------
# Compact copy for the GPU machine
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CarrySettings:
    """Downsizing for the shipped copy."""

    max_side: int
    quality: int


def encode_carry(image: np.ndarray, settings: CarrySettings) -> tuple[bytes, int, int]:
    """Downscale with INTER_AREA so the long side is at most ``max_side``; JPEG-encode."""
    height, width = image.shape[:2]
    scale = settings.max_side / max(height, width)
    if scale < 1:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, settings.quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), width, height


def carry_ladder(max_side: int, quality: int) -> Iterator[CarrySettings]:
    """Settings to try in order: lower quality down to 80, then shrink the long side."""
    side = max_side
    while side >= 256:
        for q in range(quality, 79, -5):
            yield CarrySettings(side, q)
        side -= 64


def build_carry(photos: list[dict], out: Path, carry: Path, max_side: int, quality: int,
                budget_bytes: int) -> CarrySettings:
    """Write ``carry/`` within the byte budget, trying ever smaller settings."""
    for settings in carry_ladder(max_side, quality):
        encoded: dict[str, tuple[bytes, int, int]] = {}
        for record in tqdm(photos, desc=f"carry {settings.max_side}px q{settings.quality}", unit="img"):
            image = cv2.imread(str(out / record["file"]), cv2.IMREAD_COLOR)
            if image is None:
                raise RuntimeError(f"cannot read {out / record['file']}")
            encoded[record["file"]] = encode_carry(image, settings)
        total = sum(len(data) for data, _, _ in encoded.values())
        log.info("carry at %d px, quality %d: %.1f MB", settings.max_side, settings.quality, total / 1e6)
        if total + 200_000 <= budget_bytes:  # headroom for the manifest
            break
    else:
        raise RuntimeError("cannot fit the carry copy into its budget")
    records, keep = [], set()
    for record in photos:
        data, width, height = encoded[record["file"]]
        target = carry / PurePosixPath(record["file"]).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
        keep.add(target)
        records.append({**record, "file": target.relative_to(carry).as_posix(), "width": width,
                        "height": height, "sha256": hashlib.sha256(data).hexdigest()})
    prune(carry, keep)
    write_manifest(carry, records, {"derived_from": out.as_posix(), "max_side": settings.max_side,
                                    "jpeg_quality": settings.quality, "resize": "INTER_AREA"})
    return settings


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


@dataclass
class Tally:
    """What was kept and dropped, for the report and the manifest."""

    kept: Counter[str] = field(default_factory=Counter)
    licences: Counter[str] = field(default_factory=Counter)
    dropped: list[dict[str, str]] = field(default_factory=list)

    def drop(self, candidate: Candidate, reason: str) -> None:
        log.debug("drop %s:%s: %s", candidate.package, candidate.path, reason)
        self.dropped.append({"package": candidate.package, "path": candidate.path, "reason": reason})


def _earlier_records(out: Path) -> list[dict]:
    """The photo records of the manifest an earlier run wrote in ``out`` (none when there is none)."""
    try:
        return list(json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("photos", []))
    except (OSError, ValueError, AttributeError):
        return []


def collect(out: Path, cache: Path, force: bool) -> tuple[list[dict], Tally]:
    """Extract, filter, deduplicate and write every photo; return manifest records."""
    seen: dict[str, str] = {}
    near = NearDuplicates()
    records: list[dict] = []
    written: set[Path] = set()
    tally = Tally()
    before = _earlier_records(out)
    for source in SOURCES:
        try:
            fetch = fetch_source_package if source.kind == "source" else fetch_package
            package = fetch(source.package, cache, source.suite)
        except SourceUnavailable as error:
            # its photos of an earlier run stay, with their records: a mirror's bad day removes nothing
            kept = [r for r in before if r.get("package") == source.package and (out / r["file"]).is_file()]
            log.warning("skipping %s (%s): %s%s", source.package, source.suite, error,
                        f"; its {len(kept)} photos of an earlier run are kept" if kept else "")
            tally.dropped.append({"package": source.package, "path": "*", "reason": f"unavailable: {error}"})
            records += kept
            written.update(out / r["file"] for r in kept)
            continue
        if source.licence_from:
            package = replace(package, licence_from=fetch_package(source.licence_from, cache, source.suite))
        name = source.package
        for candidate in tqdm(list(source.extract(package)), desc=f"{name} ({source.suite})", unit="img"):
            result = prepare(candidate)
            if isinstance(result, str):
                tally.drop(candidate, result)
                continue
            digest = pixel_hash(result.bgr)
            if digest in seen:
                tally.drop(candidate, f"duplicate: of {seen[digest]}")
                continue
            nearest = near.nearest(result.bgr)
            if nearest is not None and nearest[1] < 2 * NEAR_DUPLICATE_DISTANCE:
                log.debug("nearest to %s:%s is %s at %.2f", name, candidate.path, *nearest)
            if nearest is not None and nearest[1] < NEAR_DUPLICATE_DISTANCE:
                tally.drop(candidate, f"near-duplicate: of {nearest[0]} (distance {nearest[1]:.2f})")
                continue
            seen[digest] = f"{candidate.package}:{candidate.path}"
            near.add(result.bgr, seen[digest])
            file = write_photo(result, out / name / candidate.name, force)
            if file in written:
                raise RuntimeError(f"two photos map to {file}")
            written.add(file)
            records.append(manifest_record(candidate, package, out, file, result.bgr))
            tally.kept[name] += 1
            tally.licences[candidate.credit.licence] += 1
    prune(out, written)
    return records, tally


def report(tally: Tally, records: list[dict], settings: CarrySettings, carry: Path) -> None:
    """Log counts per package, licence, split and drop reason."""
    for name in PACKAGES:
        log.info("%-28s %4d kept%s", name, tally.kept[name], " (holdout)" if name in HOLDOUT_PACKAGES else "")
    for licence, count in tally.licences.most_common():
        log.info("licence %-24s %4d", licence, count)
    reasons = Counter((d["package"], d["reason"].split(":")[0]) for d in tally.dropped)
    for (package, reason), count in sorted(reasons.items()):
        log.info("dropped %-28s %-14s %4d", package, reason, count)
    splits = Counter(r["split"] for r in records)
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    log.info("kept %d photos (%d train, %d val, %d holdout); carry %.1f MB at %d px, quality %d",
             len(records), splits["train"], splits["val"], splits["holdout"], size / 1e6,
             settings.max_side, settings.quality)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults give the layout the trainer expects."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/photos"), help="full-resolution photos")
    parser.add_argument("--cache", type=Path, default=Path("data/debs"), help="downloaded and unpacked .debs")
    parser.add_argument("--carry", type=Path, default=Path("data/carry"), help="compact copy for the GPU machine")
    parser.add_argument("--carry-max-side", type=int, default=512)
    parser.add_argument("--carry-quality", type=int, default=90)
    parser.add_argument("--carry-budget-mb", type=float, default=28.0, help="total size cap of --carry")
    parser.add_argument("--force", action="store_true", help="rewrite photos that already exist")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every dropped picture")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Collect, write both copies with their manifests, and report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s")
    with logging_redirect_tqdm():
        records, tally = collect(args.out, args.cache, args.force)
        write_manifest(args.out, records, {"dropped": tally.dropped})
        settings = build_carry(records, args.out, args.carry, args.carry_max_side, args.carry_quality,
                               int(args.carry_budget_mb * 1e6))
        report(tally, records, settings, args.carry)


if __name__ == "__main__":
    main()
