"""Small ICC (v2) profiles made by the tests, for LittleCMS (through Pillow's ImageCms) to read.

Why here: Pillow creates only sRGB, Lab and XYZ profiles, and the profiles users' files carry
(a scan's "Gray Gamma 2.2" or "Dot Gain 20%", "Adobe RGB (1998)", a phone's "Display P3") are
not on a fresh machine.  A monitor-class matrix/TRC profile is a header and a few tags
(ICC.1:2001-04: header 7.2, tag table 7.3, curveType 6.5.3, XYZType 6.5.26,
textDescriptionType 6.5.17).
"""

from __future__ import annotations

import struct

#: D50, the profile connection space's white.
D50 = (0.9642, 1.0, 0.8249)
#: Adobe RGB (1998)'s colorants, adapted to D50 (Bradford), as Adobe's own profile has them.
ADOBE_RGB = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(values) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _curve(gamma: float | None = None, table=None) -> bytes:
    if table is not None:
        return b"curv\0\0\0\0" + struct.pack(">I", len(table)) + b"".join(struct.pack(">H", v) for v in table)
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _profile(space: bytes, tags: dict[bytes, bytes]) -> bytes:
    table, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, body in tags.items():
        table.append(struct.pack(">4sII", sig, offset + len(data), len(body)))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr" + space + b"XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + b"".join(_s15(v) for v in D50)
              + b"\0" * 4)
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


def gray_profile(name: str = "Gray Gamma 1.8", gamma: float | None = 1.8, table=None) -> bytes:
    """A gray profile whose tone curve is ``gamma`` (a power law), or a ``table`` of 16-bit values."""
    return _profile(b"GRAY", {b"desc": _desc(name), b"wtpt": _xyz(D50), b"kTRC": _curve(gamma, table)})


def rgb_profile(name: str = "Adobe RGB (1998) like", colorants=ADOBE_RGB, gamma: float = 563 / 256) -> bytes:
    """A matrix/TRC RGB profile: three colorants (D50 XYZ) and one power-law curve for each channel."""
    curve = _curve(gamma)
    return _profile(b"RGB ", {b"desc": _desc(name), b"wtpt": _xyz(D50), b"rXYZ": _xyz(colorants[0]),
                              b"gXYZ": _xyz(colorants[1]), b"bXYZ": _xyz(colorants[2]),
                              b"rTRC": curve, b"gTRC": curve, b"bTRC": curve})
