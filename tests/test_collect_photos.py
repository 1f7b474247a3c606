"""Pure parts of streamcolor.trainer.collect_photos: container readers, licence lookup, filters, split.

Everything is built in memory; no network, no Debian packages.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from streamcolor.trainer import collect_photos as cp

#: Qt's rcc format: the flag of a directory entry (written here from the format, not read from the reader).
RCC_DIRECTORY = 0x2


# --------------------------------------------------------------------------
# Qt .rcc
# --------------------------------------------------------------------------


def build_rcc(tree: dict, version: int = 3) -> bytes:
    """A Qt resource bundle holding ``tree`` ({name: bytes | (bytes, compress) | subtree})."""
    names, payload, entries = bytearray(), bytearray(), []
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), 0) + encoded)
        return name_offsets[name]

    # Breadth-first, so each directory's children are consecutive entries.
    entries.append(None)  # root placeholder
    queue = [(0, "", tree)]
    while queue:
        index, name, node = queue.pop(0)
        first = len(entries)
        children = sorted(node.items())
        entries.extend([None] * len(children))
        entries[index] = struct.pack(">IHII", name_offset(name) if index else 0, RCC_DIRECTORY,
                                     len(children), first)
        for offset, (child, value) in enumerate(children):
            if isinstance(value, dict):
                queue.append((first + offset, child, value))
                continue
            blob, compress = value if isinstance(value, tuple) else (value, False)
            stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
            entries[first + offset] = struct.pack(">IHHHI", name_offset(child), int(compress), 0, 0,
                                                  len(payload))
            payload.extend(struct.pack(">I", len(stored)) + stored)
    mtime = b"\0" * 8 if version >= 2 else b""
    table = b"".join(e + mtime for e in entries)
    header_size = 24 if version >= 3 else 20
    tree_at = header_size
    data_at = tree_at + len(table)
    names_at = data_at + len(payload)
    header = b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at)
    header += struct.pack(">I", 1) if version >= 3 else b""
    return header + table + bytes(payload) + bytes(names)


@pytest.mark.parametrize("version", [1, 3])
def test_read_rcc_walks_directories_and_inflates(version: int) -> None:
    bundle = build_rcc({"act": {"resource": {"a.webp": b"plain", "README": (b"credits" * 20, True)}},
                        "top.txt": b"t"}, version)
    assert cp.read_rcc(bundle) == {
        "act/resource/a.webp": b"plain",
        "act/resource/README": b"credits" * 20,
        "top.txt": b"t",
    }


def test_read_rcc_rejects_other_files() -> None:
    with pytest.raises(ValueError):
        cp.read_rcc(b"PK\x03\x04" + b"\0" * 32)


# --------------------------------------------------------------------------
# jigzo .pzl
# --------------------------------------------------------------------------


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def build_pzl(atlas: np.ndarray, rect: tuple[int, int, int, int]) -> bytes:
    """A jigzo puzzle: header, map, thumbnail, mask atlas, texture atlas."""
    x, y, w, h = rect
    records = [
        ("p.map", f"#texture map data\ncrop000 0 0 8 8 0 0 0 0 0 0\nimage {x} {y} {w} {h} 1 1   \n".encode()),
        ("p-t.jpg", _jpeg(np.zeros((8, 8, 3), np.uint8))),
        ("p.png", cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()),
        ("p.jpg", _jpeg(atlas)),
    ]
    body = b"".join(f"{name}\n{len(blob)}\n".encode() + blob for name, blob in records)
    return b"PzlF\n0.1\np\nhttp://example.invalid/\n" + body


def test_cut_pzl_picture_takes_the_image_rectangle_from_the_atlas() -> None:
    atlas = np.zeros((256, 256, 3), np.uint8)
    atlas[:, :] = (255, 0, 0)           # pieces area: blue
    atlas[0:96, 0:160] = (0, 0, 255)    # the picture: red
    picture = cp.cut_pzl_picture(build_pzl(atlas, (0, 0, 160, 96)))
    assert picture.shape == (96, 160, 3)
    assert np.abs(picture[8:-8, 8:-8].astype(int) - (0, 0, 255)).max() < 8


def test_read_pzl_lists_embedded_files() -> None:
    puzzle = cp.read_pzl(build_pzl(np.zeros((32, 32, 3), np.uint8), (1, 2, 3, 4)))
    assert list(puzzle.files) == ["p.map", "p-t.jpg", "p.png", "p.jpg"]
    assert puzzle.image_rect == (1, 2, 3, 4)


# --------------------------------------------------------------------------
# GIMP .pat, jar members, TGA, EXIF orientation, KPhotoAlbum angles
# --------------------------------------------------------------------------


def build_pat(pixels: np.ndarray, name: bytes = b"Leaves") -> bytes:
    """A GIMP pattern holding ``pixels`` (H, W) or (H, W, C) in GIMP's channel order (RGB[A])."""
    height, width = pixels.shape[:2]
    depth = 1 if pixels.ndim == 2 else pixels.shape[2]
    header = struct.pack(">5I", 24 + len(name) + 1, 1, width, height, depth) + b"GPAT" + name + b"\0"
    return header + np.ascontiguousarray(pixels).tobytes()


def test_read_pat_decodes_rgb_grey_and_alpha() -> None:
    rgb = _noise((5, 7, 3))
    bgr, alpha = cp.read_pat(build_pat(rgb))
    assert alpha is None and np.array_equal(bgr, rgb[..., ::-1])
    grey, _ = cp.read_pat(build_pat(rgb[..., 0]))
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[..., 0], rgb[..., 0])
    rgba = np.dstack([rgb, np.full((5, 7), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    bgr, alpha = cp.read_pat(build_pat(rgba))
    assert np.array_equal(bgr, rgb[..., ::-1]) and alpha is not None and alpha[0, 0] == 0
    opaque = cp.read_pat(build_pat(np.dstack([rgb, np.full((5, 7), 255, np.uint8)])))[1]
    assert opaque is None


def test_read_pat_rejects_other_and_truncated_files() -> None:
    with pytest.raises(ValueError, match="GPAT"):
        cp.read_pat(b"\0" * 40)
    with pytest.raises(ValueError, match="truncated"):
        cp.read_pat(build_pat(_noise((4, 4, 3)))[:-5])


def test_zip_members_reads_matching_jar_entries() -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as jar:
        jar.writestr("com/x/textures/", b"")
        jar.writestr("com/x/textures/grass.jpg", b"g")
        jar.writestr("com/x/textures/sky.png", b"s")
        jar.writestr("com/x/Main.class", b"c")
    members = cp.zip_members(buffer.getvalue(), "com/x/textures/*.jpg")
    assert members == {"com/x/textures/grass.jpg": b"g"}


def test_decode_image_falls_back_to_pillow_for_tga() -> None:
    import io

    from PIL import Image

    rgb = _noise((6, 9, 3))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="TGA")
    assert cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED) is None
    bgr, alpha = cp.decode_image(buffer.getvalue())
    assert alpha is None and np.array_equal(bgr, rgb[..., ::-1])
    with pytest.raises(ValueError):
        cp.decode_image(b"not an image")


def _jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    import io

    from PIL import Image

    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation: int) -> None:
    import io

    from PIL import Image, ImageOps

    rgb = cv2.resize(_noise((3, 4, 3)), (160, 120), interpolation=cv2.INTER_NEAREST)
    data = _jpeg_with_orientation(rgb, orientation)
    assert cp.exif_orientation(data) == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[..., ::-1]
    upright = cp.apply_orientation(cp.decode_image(data)[0], orientation)
    assert upright.shape == expected.shape
    assert np.abs(upright.astype(int) - expected).mean() < 3


def test_prepare_turns_rotated_jpegs_upright_and_stores_pixels() -> None:
    rgb = cv2.resize(_noise((3, 4, 3)), (400, 300), interpolation=cv2.INTER_NEAREST)
    candidate = cp.Candidate(package="p", path="a.jpg", name="a", credit=cp.Credit("CC0-1.0", "x"),
                             data=_jpeg_with_orientation(rgb, 6))
    kept = cp.prepare(candidate)
    assert isinstance(kept, cp.Prepared) and kept.bgr.shape == (400, 300, 3) and kept.jpeg is None
    upright = cp.Candidate(package="p", path="b.jpg", name="b", credit=cp.Credit("CC0-1.0", "x"),
                           data=_jpeg_with_orientation(rgb, 1))
    kept = cp.prepare(upright)
    assert isinstance(kept, cp.Prepared) and kept.jpeg == upright.data
    assert cp.exif_orientation(b"\x89PNG") == 1


KPHOTOALBUM_INDEX = """<?xml version="1.0" encoding="UTF-8"?>
<KPhotoAlbum version="8" compressed="0">
 <images>
  <image file="upright.jpg" width="800" height="600"/>
  <image file="wayne.jpg" angle="90" width="600" height="800"/>
  <image file="canyon.jpg" angle="180"/>
  <image file="pool.jpg" angle="270"/>
 </images>
</KPhotoAlbum>
"""


def test_kphotoalbum_angles_and_clockwise_rotation() -> None:
    angles = cp.kphotoalbum_angles(KPHOTOALBUM_INDEX)
    assert angles == {"upright.jpg": 0, "wayne.jpg": 90, "canyon.jpg": 180, "pool.jpg": 270}
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 255  # top-left marker
    assert cp.rotate_clockwise(image, 90)[0, -1].all()   # clockwise: top-left -> top-right
    assert cp.rotate_clockwise(image, 90).shape == (3, 2, 3)
    assert cp.rotate_clockwise(image, 180)[-1, -1].all()
    assert cp.rotate_clockwise(image, 270)[-1, 0].all()
    assert cp.rotate_clockwise(image, 0) is image
    with pytest.raises(ValueError):
        cp.rotate_clockwise(image, 45)


GRUB_COPYRIGHT = """Upstream Authors:

    Filename                                Author                                            License
    050817-N-3488C-028.tga                  US Navy photo by Jonathan Chandler                public domain
    Hortensia-1.tga                         Alvesgaspar [[:c:User:Alvesgaspar]]               GNU FDL >= 1.2

Copyright:

    Hortensia-1.tga is copyright (C) 2007 Alvesgaspar
"""


def test_parse_grub_credits_reads_the_per_file_table() -> None:
    assert cp.parse_grub_credits(GRUB_COPYRIGHT) == {
        "050817-N-3488C-028.tga": ("US Navy photo by Jonathan Chandler", "public domain"),
        "Hortensia-1.tga": ("Alvesgaspar [[:c:User:Alvesgaspar]]", "GNU FDL >= 1.2"),
    }


#: Both layouts of a WordPress default theme's readme.txt (Twenty Twenty-Four's, then Twenty Twenty-Five's),
#: cut down from the real files.
WORDPRESS_README = """=== Twenty Twenty-Five ===
License: GPLv2 or later

== Copyright ==

=== Images ===

License: CC0 https://creativecommons.org/publicdomain/zero/1.0/

museum.webp - https://www.rawpixel.com/image/3297419/free-photo-image-interior-hallway-architecture

License: UNICODE LICENSE V3 https://www.unicode.org/license.txt
icon-message.webp

Northern Buttercups.
Free public domain CC0 image.
northern-buttercups-flowers.webp
https://www.rawpixel.com/image/8802603

Hibiscus flower.
Free public domain CC0 image.
grid-flower-1.webp
red-hibiscus-closeup.webp
https://www.rawpixel.com/image/8799471

Book template by Beatriz Fialho, public domain.
Flora of Akaka Falls State Park.
Free public domain CC0 image.
akaka-falls-state-park-flora.webp
https://www.rawpixel.com/image/8802845

Lost photo.
lost.webp

== Changelog ==
ignored.webp - https://example.invalid/x
"""


def test_parse_wordpress_image_credits_reads_both_layouts() -> None:
    credits = cp.parse_wordpress_image_credits(WORDPRESS_README)
    assert set(credits) == {"museum.webp", "northern-buttercups-flowers.webp", "grid-flower-1.webp",
                            "red-hibiscus-closeup.webp", "akaka-falls-state-park-flora.webp"}
    assert {c.licence for c in credits.values()} == {"CC0-1.0"}
    assert credits["museum.webp"].url.startswith("https://www.rawpixel.com/image/3297419/")
    assert credits["red-hibiscus-closeup.webp"].url == "https://www.rawpixel.com/image/8799471"
    assert credits["grid-flower-1.webp"].note == "title in the readme: Hibiscus flower"
    # A title-only entry (the book template) does not name the photo after it.
    assert credits["akaka-falls-state-park-flora.webp"].note == "title in the readme: Flora of Akaka Falls State Park"
    # A file without a source URL, or under a licence line that is not CC0, gets no CC0 credit.
    assert "lost.webp" not in credits and "icon-message.webp" not in credits
    assert cp.parse_wordpress_image_credits("no images section") == {}


def test_landscape_tiles_lists_side_textures_only() -> None:
    ini = "[landscape]\nname = G\nauthor = Fabien Ch\u00e9reau\ntype = old_style\ntex0 = g1.png\ntex1 = g2.png\n" \
          "groundtex = ground.png\nfogtex = fog.png\n"
    assert cp.landscape_tiles(ini) == (["g1.png", "g2.png"], "Fabien Ch\u00e9reau")


# --------------------------------------------------------------------------
# Licences
# --------------------------------------------------------------------------

README = """Copyright: Someone
License: CC-BY-SA 4.0
Files:
drawing.svg

Copyright: Photographer
Source: https://commons.wikimedia.org/wiki/File:X.jpg
License: Public domain
Files: wonders/photo.webp

Copyright: 2000 Bruno
License: CC-BY 4.0
castle_0.webp
castle_background.webp
Comment: based on a photo by
 somebody, source at https://example.invalid/x.jpg
"""


def test_gcompris_credit_reads_nearest_readme_and_loose_file_lists() -> None:
    members = {"act/resource/README": README.encode(), "act/resource/wonders/photo.webp": b"",
               "act/resource/castle_background.webp": b""}
    photo = cp.gcompris_credit(members, "act/resource/wonders/photo.webp", "x.rcc")
    assert photo is not None
    assert (photo.licence, photo.holder) == ("public-domain", "Photographer")
    assert photo.source == "x.rcc:/act/resource/README"
    assert photo.url == "https://commons.wikimedia.org/wiki/File:X.jpg"
    castle = cp.gcompris_credit(members, "act/resource/castle_background.webp", "x.rcc")
    assert castle is not None and castle.licence == "CC-BY-4.0"
    assert cp.gcompris_credit(members, "act/resource/other.webp", "x.rcc") is None


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2014 Upstream
License: GPL-2+

Files: 16.04/Kleiber.jpg
Copyright: 2021, Lukas
License: CC-BY-SA-3.0

Files: debian/*
Copyright: Packager
License: GPL-2+
Comment: the packaging
 has a continuation line

License: GPL-2+
 full text
"""


def test_dep5_credit_matches_source_paths_by_name_and_last_stanza_wins() -> None:
    stanzas = cp.parse_dep5(COPYRIGHT)
    kleiber = cp.dep5_credit(stanzas, "usr/share/backgrounds/Kleiber.jpg", "copyright")
    assert kleiber is not None and (kleiber.licence, kleiber.holder) == ("CC-BY-SA-3.0", "2021, Lukas")
    other = cp.dep5_credit(stanzas, "usr/share/backgrounds/Other.jpg", "copyright")
    assert other is not None and other.licence == "GPL-2+"


def test_package_reads_the_copyright_file_of_the_package_it_links_to(tmp_path) -> None:
    common = tmp_path / "common"
    (common / "usr/share/doc/im-common").mkdir(parents=True)
    (common / "usr/share/doc/im-common/copyright").write_text(COPYRIGHT)
    doc = cp.Package("im-doc", "1", tmp_path / "doc", licence_from=cp.Package("im-common", "2", common))
    assert doc.copyright_path == "usr/share/doc/im-common/copyright"
    credit = cp.dep5_credit(doc.copyright(), "usr/share/x/Kleiber.jpg", cp.copyright_source(doc))
    assert credit is not None and credit.licence == "CC-BY-SA-3.0"
    assert credit.source == "usr/share/doc/im-common/copyright (package im-common 2)"


def test_non_commercial_licences_are_refused() -> None:
    candidate = cp.Candidate(package="p", path="x.pzl", name="x",
                             credit=cp.Credit(licence="CC-BY-NC-SA-1.0", source="copyright"))
    reason = cp.excluded_reason(candidate)
    assert reason is not None and reason.startswith("licence:")


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def _candidate(image: np.ndarray, **kwargs) -> cp.Candidate:
    png = cv2.imencode(".png", image)[1].tobytes()
    return cp.Candidate(package="p", path="a.png", name="a", credit=cp.Credit("CC0-1.0", "x"), data=png, **kwargs)


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_mean_chroma_is_zero_for_grey_and_large_for_colour() -> None:
    grey = np.repeat(_noise((64, 64, 1)), 3, axis=2)
    assert cp.mean_chroma(grey) < 0.05
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 2] = 255
    assert cp.mean_chroma(red) > 80  # sRGB red: C*ab ~ 104


def test_prepare_drops_grey_and_small_and_keeps_colour() -> None:
    grey = np.repeat(_noise((200, 300, 1)), 3, axis=2)
    assert cp.prepare(_candidate(grey)).startswith("grey:")
    assert cp.prepare(_candidate(_noise((100, 300, 3)))).startswith("small:")
    kept = cp.prepare(_candidate(_noise((200, 300, 3))))
    assert isinstance(kept, cp.Prepared) and kept.bgr.shape == (200, 300, 3) and kept.jpeg is None


def test_flat_fraction_separates_clip_art_from_photo_noise() -> None:
    alpha = np.full((64, 64), 255, np.uint8)
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[:, 32:] = (0, 200, 255)
    assert cp.flat_fraction(flat, alpha) > 0.9
    assert cp.flat_fraction(_noise((64, 64, 3)), alpha) < cp.MAX_FLAT_FRACTION


def test_cutout_is_cropped_and_composited_on_neutral_grey() -> None:
    image = np.zeros((200, 200, 4), np.uint8)
    image[20:180, 30:170, :3] = _noise((160, 140, 3))
    image[20:180, 30:170, 3] = 255
    image[20:180, 30, 3] = 128  # a half-transparent edge column
    kept = cp.prepare(_candidate(image, cutout=True))
    assert isinstance(kept, cp.Prepared)
    assert kept.bgr.shape == (160, 140, 3)
    lab = cv2.cvtColor(np.full((1, 1, 3), cp.CUTOUT_BACKGROUND, np.uint8), cv2.COLOR_BGR2Lab)
    assert tuple(lab[0, 0, 1:]) == (128, 128)  # a = b = 0 in OpenCV's 8-bit encoding


def test_pixel_hash_ignores_file_format() -> None:
    image = _noise((32, 48, 3))
    decoded, _ = cp.decode_image(cv2.imencode(".png", image)[1].tobytes())
    assert cp.pixel_hash(decoded) == cp.pixel_hash(image)
    assert cp.pixel_hash(image) != cp.pixel_hash(image.reshape(48, 32, 3))


# --------------------------------------------------------------------------
# Split and carry copy
# --------------------------------------------------------------------------


def test_split_is_stable_and_about_eight_percent_val() -> None:
    paths = [f"usr/share/x/{i}.jpg" for i in range(5000)]
    first = [cp.assign_split("pkg", p) for p in paths]
    assert first == [cp.assign_split("pkg", p) for p in paths]
    assert 0.065 < first.count("val") / len(first) < 0.095
    # Pinned values: changing the hash would silently reshuffle train and val.
    pinned_val = [i for i in range(30) if cp.assign_split("gcompris-qt-data", f"p{i}") == "val"]
    assert pinned_val == [6, 7, 12, 28]


def test_holdout_packages_are_held_out_whole() -> None:
    for package in cp.HOLDOUT_PACKAGES:
        assert {cp.assign_split(package, f"usr/share/x/{i}.jpg") for i in range(50)} == {"holdout"}
    assert set(cp.HOLDOUT_PACKAGES) >= {"kphotoalbum", "lxqt-themes", "budgie-backgrounds",
                                        "qtdeclarative5-examples", "qtbase5-examples", "hugin-data",
                                        "wordpress-theme-twentytwentyfive", "wordpress-theme-twentytwentyfour",
                                        "gnome-recipes-data"}
    assert all(cp.HOLDOUT_PACKAGES.values())  # each says why it is there
    assert {cp.assign_split("scratch", f"usr/share/x/{i}.jpg") for i in range(50)} == {"train", "val"}


def test_manifest_record_splits_a_group_together(tmp_path) -> None:
    file = tmp_path / "p" / "a.png"
    file.parent.mkdir()
    file.write_bytes(b"x")
    package = cp.Package("stellarium-data", "1", tmp_path, suite="bookworm")
    paths = [f"usr/share/stellarium/landscapes/g/t{i}.png" for i in range(40)]
    records = [cp.manifest_record(cp.Candidate(package.name, path, "a", cp.Credit("GPL-2+", "c"),
                                               group="usr/share/stellarium/landscapes/g"),
                                  package, tmp_path, file, np.zeros((4, 4, 3), np.uint8)) for path in paths]
    assert len({r["split"] for r in records}) == 1
    assert records[0]["suite"] == "bookworm" and records[0]["version"] == "1"
    assert "group" not in records[0]


def test_near_duplicates_catch_the_same_picture_at_another_size_only() -> None:
    base = cv2.GaussianBlur(_noise((300, 400, 3), 1), (0, 0), 6)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    other = cv2.normalize(cv2.GaussianBlur(_noise((300, 400, 3), 2), (0, 0), 6), None, 0, 255, cv2.NORM_MINMAX)
    near = cp.NearDuplicates()
    assert near.find(base) is None
    near.add(base, "pkg:base.jpg")
    half = cv2.resize(base, (200, 150), interpolation=cv2.INTER_AREA)
    reencoded = cp.decode_image(cv2.imencode(".jpg", half, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())[0]
    found = near.find(reencoded)
    assert found is not None and found[0] == "pkg:base.jpg" and found[1] < cp.NEAR_DUPLICATE_DISTANCE
    assert near.find(other) is None
    assert near.find(cv2.resize(base, (400, 150))) is None  # another aspect ratio: not compared


def test_encode_carry_limits_the_long_side() -> None:
    data, width, height = cp.encode_carry(_noise((300, 1200, 3)), cp.CarrySettings(512, 90))
    assert (width, height) == (512, 128)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (128, 512, 3)


@pytest.mark.parametrize(("raw", "clean"), [
    ("CC-BY-SA 4.0", "CC-BY-SA-4.0"), ("Public Domain", "public-domain"), ("Public domain", "public-domain"),
    ("GPLv2+", "GPL-2+"), ("BSD-3-clause", "BSD-3-Clause"), ("CC0-1.0", "CC0-1.0"),
    ("GPL-2.0-or-later", "GPL-2+"), ("LGPL-2.1-or-later", "LGPL-2.1+"), ("GPL-3.0-only", "GPL-3"),
    ("GPL-3+ and BSD-2-clause", "GPL-3+ and BSD-2-Clause"),
])
def test_normalise_licence(raw: str, clean: str) -> None:
    assert cp.normalise_licence(raw) == clean


# --------------------------------------------------------------------------
# The trainer's reader: hold-out photos never reach training or validation
# --------------------------------------------------------------------------


def _manifest_folder(tmp_path, splits: list[str]):
    import json

    folder = tmp_path / "photos"
    entries = []
    for i, split in enumerate(splits):
        file = folder / "pkg" / f"p{i}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(cv2.imencode(".png", _noise((8, 8, 3), i))[1].tobytes())
        entries.append({"file": f"pkg/p{i}.png", "split": split})
    (folder / "manifest.json").write_text(json.dumps({"photos": entries}))
    return folder


def test_manifest_holdout_is_its_own_split_and_left_out_of_shards_by_default(tmp_path) -> None:
    from streamcolor.trainer import data

    folder = _manifest_folder(tmp_path, ["train", "val", "holdout", "heldout", "train"])
    photos, problems = data.list_photos([folder])
    assert not problems
    assert [p.split for p in photos] == ["train", "val", "holdout", "holdout", "train"]
    kept = [(p, f"{i:064x}") for i, p in enumerate(photos)]
    by_split, left_out = data.plan_splits(kept, data.PrepareOptions(), data.SPLITS)
    assert set(by_split) == {"train", "val"}
    assert all(p.split != data.HOLDOUT for items in by_split.values() for p, _ in items)
    assert [len(by_split["train"]), len(by_split["val"])] == [2, 1] and left_out == {"holdout": 2}
    only, left_out = data.plan_splits(kept, data.PrepareOptions(), ("holdout",))
    assert [p.key for p, _ in only["holdout"]] == ["photos/pkg/p2.png", "photos/pkg/p3.png"]
    assert left_out == {"train": 2, "val": 1}


def test_prepare_shards_refuses_unknown_splits(tmp_path) -> None:
    from streamcolor.trainer import data

    with pytest.raises(ValueError, match="splits"):
        data.prepare_shards([tmp_path], tmp_path / "out", splits=("test",))


def test_shard_set_reads_a_holdout_split(tmp_path) -> None:
    import json

    from streamcolor.trainer import data

    (tmp_path / data.META).write_text(json.dumps({"complete": True, "size": 8, "embed_dim": 4}))
    shard = tmp_path / "holdout-00000"
    shard.mkdir()
    np.save(shard / "l.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(shard / "ab.npy", np.zeros((3, 8, 8, 2), np.int8))
    np.save(shard / "emb.npy", np.zeros((3, 4), np.float16))
    (shard / "info.json").write_text("{}")
    assert len(data.ShardSet(tmp_path, "holdout")) == 3
    assert len(data.ShardSet(tmp_path, "train")) == 0
    with pytest.raises(ValueError):
        data.ShardSet(tmp_path, "test")


# --------------------------------------------------------------------------
# Debian source packages
# --------------------------------------------------------------------------

PILLOW_PRINT_URIS = """\
Reading package lists...
Selected version '11.1.0-5+deb13u4' (trixie) for pillow
Need to get 36.9 MB of source archives.
'http://deb.debian.org/debian/pool/main/p/pillow/pillow_11.1.0-5%2bdeb13u4.dsc' pillow_11.1.0-5+deb13u4.dsc 2375 \
SHA256:74032aba383e276666898f3b1b3b8ea0f777236fedc191f873e7f3a2391a2e46
'http://deb.debian.org/debian/pool/main/p/pillow/pillow_11.1.0.orig.tar.xz' pillow_11.1.0.orig.tar.xz 36871396 \
SHA256:0fc52818220b9c2208e635d495f6819826607a352c42d0b9524f51f2b8a1a82a
'http://deb.debian.org/debian/pool/main/p/pillow/pillow_11.1.0-5%2bdeb13u4.debian.tar.xz' \
pillow_11.1.0-5+deb13u4.debian.tar.xz 20572 SHA256:999159999b639d23bbf44d65ec9531b9178a1f817960b2eb800d5d4928323f5e
"""


def test_print_uris_gives_the_selected_version_and_the_upstream_tarball():
    version, files = cp.parse_print_uris(PILLOW_PRINT_URIS)
    assert version == "11.1.0-5+deb13u4"
    assert [f.name for f in files] == ["pillow_11.1.0-5+deb13u4.dsc", "pillow_11.1.0.orig.tar.xz",
                                       "pillow_11.1.0-5+deb13u4.debian.tar.xz"]
    tarball = cp.upstream_tarball(files)
    assert (tarball.name, tarball.size) == ("pillow_11.1.0.orig.tar.xz", 36871396)
    assert tarball.uri.endswith("/pool/main/p/pillow/pillow_11.1.0.orig.tar.xz")
    assert tarball.sha256.startswith("0fc52818")


def test_a_native_package_has_one_tarball_and_an_empty_listing_is_unavailable():
    native = [cp.SourceFile("u1", "jigzo_0.6.1-8.dsc", 1, "0" * 64), cp.SourceFile("u2", "jigzo_0.6.1-8.tar.xz", 2,
                                                                                    "1" * 64)]
    assert cp.upstream_tarball(native).name == "jigzo_0.6.1-8.tar.xz"
    with pytest.raises(cp.SourceUnavailable, match="no single upstream tarball"):
        cp.upstream_tarball(native[:1])
    with pytest.raises(cp.SourceUnavailable, match="listed no files"):
        cp.parse_print_uris("E: Unable to find a source package for nothing\n")


def _tarball(path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:xz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_extract_members_writes_only_pinned_bytes_below_root(tmp_path):
    import hashlib

    good, changed = _jpeg(np.full((40, 60, 3), (30, 90, 200), np.uint8)), b"new upstream bytes"
    tarball = tmp_path / "demo_1.0.orig.tar.xz"
    _tarball(tarball, {"demo-1.0/tests/images/good.jpg": good, "demo-1.0/tests/images/changed.jpg": changed,
                       "demo-1.0/../../evil.jpg": good, "demo-1.0/README": b"text"})
    wanted = {"tests/images/good.jpg": hashlib.sha256(good).hexdigest(),
              "tests/images/changed.jpg": hashlib.sha256(b"old bytes").hexdigest(),
              "tests/images/gone.jpg": "0" * 64}
    root = tmp_path / "unpacked"
    root.mkdir()
    missing = cp.extract_members(tarball, wanted, root)
    assert missing == ["tests/images/gone.jpg"]  # (the changed one is said once, as changed)
    assert (root / "tests/images/good.jpg").read_bytes() == good
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["demo_1.0.orig.tar.xz", "unpacked/tests/images/good.jpg"]


def test_source_photos_become_candidates_with_their_credit_and_turned_upright(tmp_path, monkeypatch):
    tall = np.zeros((60, 40, 3), np.uint8)
    tall[:10] = (0, 0, 255)  # red band on top of the stored picture
    (tmp_path / "t").mkdir()
    (tmp_path / "t/side.jpg").write_bytes(_jpeg(tall))
    (tmp_path / "t/plain.jpg").write_bytes(_jpeg(tall))
    photos = (cp.SourcePhoto("demo", "trixie", "t/side.jpg", "0" * 64, "MIT", "upstream LICENSE", "package-wide",
                             rotate=90),
              cp.SourcePhoto("demo", "trixie", "t/plain.jpg", "0" * 64, "MIT", "upstream LICENSE", "package-wide",
                             holder="Demo authors", note="test image"),
              cp.SourcePhoto("other", "trixie", "t/plain.jpg", "0" * 64, "MIT", "x", "package-wide"),
              cp.SourcePhoto("demo", "trixie", "t/absent.jpg", "0" * 64, "MIT", "x", "package-wide"))
    monkeypatch.setattr(cp, "SOURCE_PHOTOS", photos)
    package = cp.Package("demo", "1.0-1", tmp_path, "trixie", tarball="demo_1.0.orig.tar.xz")
    side, plain = cp.extract_source_photos(package)
    assert (side.name, plain.name) == ("side", "plain")
    assert side.data is None and side.pixels.shape == (40, 60, 3)
    assert side.pixels[:, -10:, 2].mean() > 200 and side.pixels[:, :10, 2].mean() < 50  # top band now on the right
    assert plain.data == (tmp_path / "t/plain.jpg").read_bytes()
    assert plain.credit == cp.Credit("MIT", "upstream LICENSE [package-wide]", "Demo authors", note="test image")
    record = cp.manifest_record(plain, package, tmp_path, tmp_path / "t/plain.jpg", tall)
    assert record["tarball"] == "demo_1.0.orig.tar.xz" and record["version"] == "1.0-1"


def test_the_pinned_source_photos_are_consistent_and_kept_apart_from_the_holdout():
    photos = cp.SOURCE_PHOTOS
    assert len(photos) >= 60
    assert len({(p.package, p.name) for p in photos}) == len(photos)
    suites: dict[str, set[str]] = {}
    for photo in photos:
        suites.setdefault(photo.package, set()).add(photo.suite)
        assert len(photo.sha256) == 64 and int(photo.sha256, 16) >= 0
        assert photo.rotate in (0, 90, 180, 270)
        assert not cp.NON_FREE_LICENCE.search(photo.licence)
        assert cp.normalise_licence(photo.licence) == photo.licence  # one spelling, as the .deb photos
        assert not photo.path.startswith("/") and ".." not in photo.path.split("/")
    assert all(len(s) == 1 for s in suites.values())
    debs = {s.package for s in cp.SOURCES if s.kind == "deb"}
    assert not debs & set(suites), "a source package would share a binary package's folder"
    assert not set(suites) & set(cp.HOLDOUT_PACKAGES)
    # Qt's sources are the upstream of two held-out packages (qtbase5-examples, qtdeclarative5-examples).
    assert not [p for p in suites if p.startswith("qt")]


def test_an_unavailable_source_package_is_reported_and_skipped(tmp_path, monkeypatch):
    def unavailable(name, cache, suite):
        raise cp.SourceUnavailable("404  Not Found")

    monkeypatch.setattr(cp, "SOURCES", (cp.Source("demo", cp.extract_source_photos, "trixie", kind="source"),))
    monkeypatch.setattr(cp, "fetch_source_package", unavailable)
    records, tally = cp.collect(tmp_path / "out", tmp_path / "cache", force=False)
    assert records == []
    assert tally.dropped == [{"package": "demo", "path": "*", "reason": "unavailable: 404  Not Found"}]
    # Its photos of an earlier run are kept, with their records (prune removed them, and the manifest too).
    out = tmp_path / "out"
    (out / "demo").mkdir(parents=True)
    (out / "demo" / "a.jpg").write_bytes(b"earlier")
    earlier = {"file": "demo/a.jpg", "package": "demo", "split": "train", "sha256": "x"}
    cp.write_manifest(out, [earlier], {})
    records, _ = cp.collect(out, tmp_path / "cache", force=False)
    assert records == [earlier] and (out / "demo" / "a.jpg").read_bytes() == b"earlier"


def test_a_photo_pinned_later_is_unpacked_from_the_same_tarball(tmp_path, monkeypatch):
    """The unpacked folder's marker names the pins too: a photo added to the table later (the tarball
    the same) used to be passed over without a word, as the folder counted as unpacked."""
    import hashlib

    a, b = _jpeg(np.full((40, 60, 3), 90, np.uint8)), _jpeg(np.full((40, 60, 3), 160, np.uint8))
    cache = tmp_path / "cache"
    tarball = cache / "source" / "trixie" / "demo_1.0.orig.tar.xz"
    tarball.parent.mkdir(parents=True)
    _tarball(tarball, {"demo-1.0/a.jpg": a, "demo-1.0/b.jpg": b})
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    listing = (f"Selected version '1.0-1' (trixie) for demo\n'http://x/demo_1.0.orig.tar.xz' demo_1.0.orig.tar.xz "
               f"{tarball.stat().st_size} SHA256:{digest}\n")
    import subprocess

    # (no mirror in tests: apt's listing is given; the tarball is already in the cache, so nothing downloads)
    monkeypatch.setattr(cp, "source_apt", lambda cache, suite: ["apt-get"])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, listing, ""))
    pin = lambda path, data: cp.SourcePhoto("demo", "trixie", path, hashlib.sha256(data).hexdigest(),  # noqa: E731
                                            "MIT", "x", "package-wide")
    monkeypatch.setattr(cp, "SOURCE_PHOTOS", (pin("a.jpg", a),))
    package = cp.fetch_source_package("demo", cache, "trixie")
    assert [c.name for c in cp.extract_source_photos(package)] == ["a"]
    monkeypatch.setattr(cp, "SOURCE_PHOTOS", (pin("a.jpg", a), pin("b.jpg", b)))
    package = cp.fetch_source_package("demo", cache, "trixie")
    assert [c.name for c in cp.extract_source_photos(package)] == ["a", "b"]
