"""Collect free-licensed colour photographs from Debian 12 packages, with provenance.

The colorizer needs real colour photographs whose licences allow training and
redistribution.  ``docs/data-sources.md`` (in the shared docs) surveys which
Debian packages ship such photos; this module turns that survey into a
reproducible data set::

    python -m streamcolor.trainer.collect_photos --out data/photos

It ``apt-get download``s each package into a cache, unpacks it with
``dpkg-deb -x`` (nothing is installed), pulls out the listed pictures (reading
Qt ``.rcc`` resource bundles and jigzo ``.pzl`` puzzles where the pictures are
packed), drops clip art, near-grey pictures, tiny pictures and exact
duplicates, and writes:

* ``<out>/<package>/<name>.{jpg,png}``: every kept photo at full resolution
  (original bytes when the source is an untouched JPEG, lossless PNG otherwise);
* ``<out>/manifest.json``: package, version, path inside the package, licence
  and where the licence was read, size, sha256 and a stable train/val split;
* ``<carry>/``: the same photos downsized to JPEG for shipping to a GPU machine,
  kept under a size budget, with its own manifest.

Tuxpaint stamps are photo cut-outs on a transparent background: they are
cropped to their opaque area and composited onto neutral grey (sRGB 128, which
is a = b = 0 in Lab), so the background teaches "no colour here" instead of
inventing one; the manifest marks them ``"cutout": true`` so a loader can weight
or mask them.  Everything is resumable: downloaded ``.deb`` files, unpacked
trees and written photos are reused.
"""

from __future__ import annotations

import argparse
import bz2
import fnmatch
import hashlib
import json
import logging
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

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


@dataclass(frozen=True)
class Package:
    """An unpacked Debian package."""

    name: str
    version: str
    root: Path

    def copyright(self) -> list[Dep5Stanza]:
        """Stanzas of the package's machine-readable copyright file."""
        path = self.root / "usr/share/doc" / self.name / "copyright"
        return parse_dep5(path.read_text(encoding="utf-8", errors="replace"))


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
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"^GPLv(\d)", r"GPL-\1", text)
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


def _copyright_source(pkg: Package) -> str:
    """Where a licence read from the package's copyright file came from."""
    return f"usr/share/doc/{pkg.name}/copyright"


def _files(pkg: Package, folder: str, pattern: str) -> list[Path]:
    """Files under ``folder`` of the package matching ``pattern``, sorted."""
    return sorted(p for p in (pkg.root / folder).glob(pattern) if p.is_file())


def _from_copyright(pkg: Package, files: Iterable[Path], name: Callable[[Path], str] | None = None,
                    cutout: bool = False, note: Callable[[Path], str | None] | None = None) -> Iterator[Candidate]:
    """Candidates for plain image files, licensed by the package's copyright file."""
    stanzas = pkg.copyright()
    for file in files:
        path = file.relative_to(pkg.root).as_posix()
        credit = dep5_credit(stanzas, path, _copyright_source(pkg))
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
        credit = dep5_credit(stanzas, path, _copyright_source(pkg))
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
    credit = dep5_credit(pkg.copyright(), path, _copyright_source(pkg))
    if credit is not None:
        note = "scipy.misc.face docstring: raccoon-procyon-lotor.jpg at http://www.public-domain-image.com"
        yield Candidate(package=pkg.name, path=path, name="face", credit=replace(credit, note=note),
                        pixels=cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def extract_matplotlib(pkg: Package) -> Iterator[Candidate]:
    """Matplotlib's Grace Hopper portrait, under the matplotlib (PSF-based) licence.

    The copyright file states that licence as free text with no short name.
    """
    path = "usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    credit = Credit(licence="Matplotlib-PSF-based", source=_copyright_source(pkg))
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


#: Packages and how to take their photos, in survey order with the cut-outs
#: last: on an exact duplicate the first copy wins.  stellarium-data (optional
#: in the survey: 246 MB for six panoramas) is left out.
EXTRACTORS: dict[str, Callable[[Package], Iterator[Candidate]]] = {
    "gcompris-qt-data": extract_gcompris,
    "tuxpaint-data": extract_tuxpaint_data,
    "lomiri-wallpapers-16.04": extract_lomiri_16,
    "lomiri-wallpapers-20.04": extract_lomiri_20,
    "mate-backgrounds": extract_mate,
    "plasma-workspace-wallpapers": extract_plasma,
    "palapeli-data": extract_palapeli,
    "jigzo-data": extract_jigzo,
    "python3-skimage": extract_skimage,
    "python3-sklearn": extract_sklearn,
    "python3-scipy": extract_scipy,
    "python-matplotlib-data": extract_matplotlib,
    "cimg-examples": extract_cimg,
    "tuxpaint-stamps-default": extract_stamps,
}
PACKAGES = tuple(EXTRACTORS)


# --------------------------------------------------------------------------
# Pixels: decoding and filters
# --------------------------------------------------------------------------


def decode_image(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode any image file to 8-bit BGR plus its alpha (None when opaque)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("OpenCV cannot decode this image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.shape[2] == 4:
        alpha = image[..., 3].copy()
        return np.ascontiguousarray(image[..., :3]), None if alpha.min() == 255 else alpha
    return image, None


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


def assign_split(package: str, path: str) -> str:
    """``"val"`` for about :data:`VAL_FRACTION` of photos, stable under a hash of package and path."""
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
    if candidate.pixels is not None:
        bgr, alpha = candidate.pixels, None
    else:
        bgr, alpha = decode_image(candidate.data or b"")
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
    untouched_jpeg = candidate.data is not None and candidate.data[:3] == b"\xff\xd8\xff"
    return Prepared(bgr, candidate.data if untouched_jpeg else None)


# --------------------------------------------------------------------------
# Downloading and unpacking
# --------------------------------------------------------------------------


def deb_field(deb: Path, name: str) -> str:
    """A control field of a ``.deb`` (e.g. its exact Version, epoch included)."""
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True,
                          capture_output=True, text=True).stdout.strip()


def fetch_package(name: str, cache: Path) -> Package:
    """Download (once) and unpack (once) a package into the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{name}_*.deb"))
    if not debs:
        log.info("downloading %s", name)
        subprocess.run(["apt-get", "download", name], cwd=cache, check=True, capture_output=True)
        debs = sorted(cache.glob(f"{name}_*.deb"))
    deb = debs[-1]
    version = deb_field(deb, "Version")
    root = cache / "unpacked" / name
    marker = root / ".unpacked-from"
    if not marker.exists() or marker.read_text() != deb.name:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        marker.write_text(deb.name)
    return Package(name=name, version=version, root=root)


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


def manifest_record(candidate: Candidate, version: str, out: Path, file: Path, bgr: np.ndarray) -> dict:
    """One manifest entry: provenance, licence, size, checksum and split."""
    credit = candidate.credit
    record = {
        "file": file.relative_to(out).as_posix(),
        "package": candidate.package,
        "version": version,
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
        "split": assign_split(candidate.package, candidate.path),
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


def collect(out: Path, cache: Path, force: bool) -> tuple[list[dict], Tally]:
    """Extract, filter, deduplicate and write every photo; return manifest records."""
    seen: dict[str, str] = {}
    records: list[dict] = []
    written: set[Path] = set()
    tally = Tally()
    for name in PACKAGES:
        package = fetch_package(name, cache)
        for candidate in tqdm(list(EXTRACTORS[name](package)), desc=name, unit="img"):
            result = prepare(candidate)
            if isinstance(result, str):
                tally.drop(candidate, result)
                continue
            digest = pixel_hash(result.bgr)
            if digest in seen:
                tally.drop(candidate, f"duplicate: of {seen[digest]}")
                continue
            seen[digest] = f"{candidate.package}:{candidate.path}"
            file = write_photo(result, out / name / candidate.name, force)
            if file in written:
                raise RuntimeError(f"two photos map to {file}")
            written.add(file)
            records.append(manifest_record(candidate, package.version, out, file, result.bgr))
            tally.kept[name] += 1
            tally.licences[candidate.credit.licence] += 1
    prune(out, written)
    return records, tally


def report(tally: Tally, records: list[dict], settings: CarrySettings, carry: Path) -> None:
    """Log counts per package, licence, split and drop reason."""
    for name in PACKAGES:
        log.info("%-28s %4d kept", name, tally.kept[name])
    for licence, count in tally.licences.most_common():
        log.info("licence %-24s %4d", licence, count)
    reasons = Counter((d["package"], d["reason"].split(":")[0]) for d in tally.dropped)
    for (package, reason), count in sorted(reasons.items()):
        log.info("dropped %-28s %-10s %4d", package, reason, count)
    splits = Counter(r["split"] for r in records)
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    log.info("kept %d photos (%d train, %d val); carry %.1f MB at %d px, quality %d",
             len(records), splits["train"], splits["val"], size / 1e6, settings.max_side, settings.quality)


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
