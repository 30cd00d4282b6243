"""The Teams app package: teams/manifest.json with its placeholders filled, and two icons, zipped.

A Teams admin uploads the zip (Teams admin centre, Manage apps, Upload). The icons are drawn
here, so the repository needs no image tools: a 192x192 colour icon and a 32x32 white outline
on transparency, as Teams asks. Standard library only.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

COLOUR = (0x1F, 0x4E, 0x79)  # the manifest's accentColor
WHITE = (0xFF, 0xFF, 0xFF)
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
FILES = ("manifest.json", "color.png", "outline.png")

Pixel = tuple[int, int, int, int]


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An RGBA PNG drawn pixel by pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _steps(x: float, y: float) -> bool:
    """Three rising steps (escalation), in a unit square."""
    for i in range(3):
        left, right = 0.18 + i * 0.22, 0.18 + (i + 1) * 0.22
        top = 0.62 - i * 0.2
        if left <= x < right - 0.03 and top <= y < 0.82:
            return True
    return False


def color_icon(size: int = 192) -> bytes:
    """The full-colour icon: white steps on the accent colour."""

    def pixel(x: int, y: int) -> Pixel:
        inside = _steps((x + 0.5) / size, (y + 0.5) / size)
        return (*(WHITE if inside else COLOUR), 255)

    return png(size, size, pixel)


def outline_icon(size: int = 32) -> bytes:
    """The outline icon: white steps on transparency."""

    def pixel(x: int, y: int) -> Pixel:
        inside = _steps((x + 0.5) / size, (y + 0.5) / size)
        return (*WHITE, 255) if inside else (0, 0, 0, 0)

    return png(size, size, pixel)


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def fill(template: str, values: dict[str, str]) -> dict[str, Any]:
    """The manifest with `{{NAME}}` placeholders replaced (as JSON strings); every one must be."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ValueError(f"no value for {', '.join(missing)}")

    def value(match: re.Match[str]) -> str:
        return json.dumps(values[match.group(1)])[1:-1]

    filled: dict[str, Any] = json.loads(PLACEHOLDER.sub(value, template))
    return filled


def build_package(
    manifest: Path,
    out: Path,
    *,
    app_id: str,
    website: str,
    developer: str,
    privacy_url: str | None = None,
    terms_url: str | None = None,
    version: str = "1.0.0",
) -> Path:
    """Write the zip a Teams admin uploads; raise ValueError naming what is wrong."""
    if not GUID.match(app_id or ""):
        raise ValueError(
            f"the app id '{app_id}' is not a GUID: use the bot's Microsoft App ID "
            "(MICROSOFT_APP_ID) from its Azure Bot registration"
        )
    urls = {
        "website": website,
        "privacy": privacy_url or website.rstrip("/") + "/privacy",
        "terms": terms_url or website.rstrip("/") + "/terms",
    }
    for what, url in urls.items():
        if not url.startswith("https://"):
            raise ValueError(f"the {what} address must start with https:// (Teams requires it)")
    values = {
        "MICROSOFT_APP_ID": app_id.lower(),
        "WEBSITE_URL": urls["website"],
        "PRIVACY_URL": urls["privacy"],
        "TERMS_URL": urls["terms"],
        "DEVELOPER_NAME": developer[:32],
        "VERSION": version,
    }
    filled = fill(manifest.read_text(encoding="utf-8"), values)
    icons = {}
    for name, draw in (("color.png", color_icon), ("outline.png", outline_icon)):
        path = manifest.parent / name
        icons[name] = path.read_bytes() if path.exists() else draw()
    if png_size(icons["color.png"]) != (192, 192) or png_size(icons["outline.png"]) != (32, 32):
        raise ValueError("Teams needs a 192x192 color.png and a 32x32 outline.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(filled, indent=2, ensure_ascii=False))
        for name, data in icons.items():
            archive.writestr(name, data)
    return out
