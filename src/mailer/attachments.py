"""Attachment policy (requirements A1-A3, A5): safe file names, type detection by content, the
accept/refuse decision, and where accepted and quarantined files go on disk. Accepted kinds: PDF,
PNG, JPEG, DOCX, XLSX (without macros), and calendar invites (iCalendar, .ics: text, no macros,
what every meeting request carries).

Pure functions, no I/O besides reading what they are given: bytes, or the path of a file too
large to hold in memory (a spilled attachment of a large mail, read in small pieces).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ALLOWED_KINDS = ("pdf", "png", "jpg", "docx", "xlsx", "calendar")

# Extensions that promise one of the allowed kinds: a name with one of these must match the content.
EXTENSION_KINDS = {
    ".pdf": "pdf",
    ".png": "png",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".docx": "docx",
    ".xlsx": "xlsx",
    ".ics": "calendar",
}
# The extension a nameless part of a known type gets (parsing uses it for fallback names).
KIND_EXTENSIONS = {
    "pdf": ".pdf",
    "png": ".png",
    "jpg": ".jpg",
    "docx": ".docx",
    "xlsx": ".xlsx",
    "calendar": ".ics",
}

MAX_NAME_BYTES = 200
_MAX_EXT_BYTES = 16  # a longer "extension" is treated as part of the name
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_FORBIDDEN = str.maketrans({c: "_" for c in '<>:"|?*'})
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_MAX_CONTENT_TYPES_XML = 1 << 20


# --- file names ------------------------------------------------------------------------------
def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _split_ext(name: str) -> tuple[str, str]:
    """(root, ext): ext starts with '.', is short, and root is not empty; else (name, '')."""
    idx = name.rfind(".")
    if idx <= 0:
        return name, ""
    ext = name[idx:]
    if len(ext) < 2 or len(ext.encode("utf-8")) > _MAX_EXT_BYTES or " " in ext:
        return name, ""
    return name[:idx], ext


def _clean_component(name: str | None, *, basename: bool, max_bytes: int) -> str:
    """One safe path component, or '' when nothing usable is left."""
    if not name:
        return ""
    text = "".join(ch for ch in str(name) if not 0xD800 <= ord(ch) <= 0xDFFF)
    text = unicodedata.normalize("NFC", text)
    if basename:
        # what the sender meant is the last component: "../../etc/passwd" -> "passwd"
        parts = [p for p in re.split(r"[/\\]", text) if p.strip(" .")]
        text = parts[-1] if parts else ""
    else:
        text = re.sub(r"[/\\]", "_", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            continue
        out.append(" " if cat == "Zs" else ch)
    text = "".join(out).translate(_WINDOWS_FORBIDDEN)
    text = re.sub(r" {2,}", " ", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = text.strip(" .")
    if text.split(".", 1)[0].strip().upper() in _WINDOWS_RESERVED:
        text = "_" + text
    if len(text.encode("utf-8")) > max_bytes:
        root, ext = _split_ext(text)
        budget = max_bytes - len(ext.encode("utf-8"))
        text = _truncate_utf8(root, budget).rstrip(" .") + ext
        text = text.strip(" .")
    if text in ("", ".", ".."):
        return ""
    return text


def sanitize_filename(name: str | None, fallback: str = "attachment") -> str:
    """A file name safe to create inside a directory: the last path component of `name`, without
    control/format characters, Windows-forbidden characters (replaced by '_'), '..' runs, leading
    or trailing dots and spaces; NFC-normalised; at most 200 bytes UTF-8 keeping the extension.
    Never empty, never '.' or '..': falls back to `fallback` (itself sanitised) or "attachment".
    Idempotent: sanitising a sanitised name returns it unchanged.
    """
    cleaned = _clean_component(name, basename=True, max_bytes=MAX_NAME_BYTES)
    if cleaned:
        return cleaned
    return _clean_component(fallback, basename=True, max_bytes=MAX_NAME_BYTES) or "attachment"


def sanitize_key(key: str) -> str:
    """A directory name for a message key (usually the Message-ID). Unchanged when already safe;
    otherwise cleaned (separators become '_') and suffixed with a short hash of the original, so two
    different keys never share a directory."""
    if not key:
        raise ValueError("empty message key")
    cleaned = _clean_component(key, basename=False, max_bytes=MAX_NAME_BYTES)
    if cleaned == key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    base = _clean_component(key, basename=False, max_bytes=MAX_NAME_BYTES - 13)
    return f"{base}-{digest}" if base else f"key-{digest}"


# --- content type ---------------------------------------------------------------------------
Content = bytes | Path  # an attachment in memory, or spilled to a file


def _head(data: Content, n: int = 16) -> bytes:
    if isinstance(data, Path):
        with open(data, "rb") as fh:
            return fh.read(n)
    return bytes(data[:n])


def size_of(data: Content) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _sniff_zip(data: Content) -> str:
    try:
        with zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data)) as zf:
            names = zf.namelist()
            if "[Content_Types].xml" not in names:
                return "zip"
            word = any(n.startswith("word/") for n in names)
            excel = any(n.startswith("xl/") for n in names)
            if word == excel:
                return "ooxml"
            info = zf.getinfo("[Content_Types].xml")
            if info.file_size > _MAX_CONTENT_TYPES_XML:
                return "ooxml"
            with zf.open(info) as fh:
                types = fh.read(_MAX_CONTENT_TYPES_XML + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError):
        return "zip"
    except Exception:  # zipfile raises a few odd ones on crafted archives (NotImplementedError...)
        return "zip"
    macros = b"macroenabled" in types.lower() or any(
        n.lower().endswith("vbaproject.bin") for n in names
    )
    if word:
        return "docm" if macros else "docx"
    return "xlsm" if macros else "xlsx"


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"MZ", "exe"),
    (b"\x7fELF", "elf"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),  # legacy .doc/.xls/.msg
    (b"Rar!\x1a\x07", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x1f\x8b", "gzip"),
)


def _is_calendar(data: Content) -> bool:
    """An iCalendar object (RFC 5545: invites, cancellations, replies): text starting with
    BEGIN:VCALENDAR, after an optional byte order mark and blank lines."""
    head = _head(data, 256).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return head[:15].upper() == b"BEGIN:VCALENDAR" and head[15:16] in (b"\r", b"\n", b"")


def sniff(data: Content) -> str:
    """A label for the content: one of ALLOWED_KINDS, or what it is instead ("zip", "exe", "docm",
    "ooxml", "empty", "unknown", ...). Used for refusal reasons."""
    head = _head(data)
    if not head:
        return "empty"
    if _is_calendar(data):
        return "calendar"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    for magic, label in _MAGIC:
        if head.startswith(magic):
            return label
    return "unknown"


def detect_kind(data: Content) -> str | None:
    """The allowed kind the content is (by its bytes, never by a name), or None.

    OOXML counts as docx/xlsx only with [Content_Types].xml and word/ (docx) or xl/ (xlsx) and no
    macros (a macro-enabled .docm/.xlsm is refused even when named .docx). A plain zip is None.
    """
    label = sniff(data)
    return label if label in ALLOWED_KINDS else None


@dataclass(frozen=True)
class Decision:
    accepted: bool
    kind: str | None
    reason: str | None


def extension(filename: str) -> str:
    """The lower-cased extension with its dot ('.pdf'), or '' when the name has none."""
    return _split_ext(filename)[1].lower()


def decide(filename: str, data: Content, max_bytes: int) -> Decision:
    """Accept or refuse one attachment (A2, A3).

    Refused: larger than max_bytes; content not one of ALLOWED_KINDS; a name whose extension
    promises an allowed kind (.pdf .png .jpg .jpeg .docx .xlsx .ics) that the content is not.
    Accepted with the kind of the content when the name has another or no extension.
    """
    size = size_of(data)
    label = sniff(data)
    kind = label if label in ALLOWED_KINDS else None
    if size > max_bytes:
        return Decision(False, kind, f"too large: {size} bytes > {max_bytes}")
    if kind is None:
        return Decision(False, None, f"type not allowed: {label}")
    ext = extension(filename)
    promised = EXTENSION_KINDS.get(ext)
    if promised is not None and promised != kind:
        return Decision(False, kind, f"name says {ext} but content is {kind}")
    return Decision(True, kind, None)


# --- paths ----------------------------------------------------------------------------------
def _inside(root: Path, path: Path) -> Path:
    """`path`, after checking lexically that it stays below `root` (ValueError if not)."""
    root_abs = Path(os.path.normpath(os.path.abspath(root)))
    path_abs = Path(os.path.normpath(os.path.abspath(path)))
    if path_abs == root_abs or not path_abs.is_relative_to(root_abs):
        raise ValueError(f"path escapes the data directory: {path_abs}")
    return path


def storage_path(root: Path, received: datetime, message_key: str, filename: str) -> Path:
    """root/attachments/{YYYY}/{MM}/{message key}/{filename} (A1). Year and month are UTC when
    `received` is aware. Key and name are sanitised again (a no-op for names from parsing).
    Raises ValueError if the result would not be inside root."""
    if received.tzinfo is not None:
        received = received.astimezone(UTC)
    path = (
        Path(root)
        / "attachments"
        / f"{received.year:04d}"
        / f"{received.month:02d}"
        / sanitize_key(message_key)
        / sanitize_filename(filename)
    )
    return _inside(Path(root), path)


def quarantine_path(root: Path, message_key: str, filename: str) -> Path:
    """root/quarantine/{message key}/{filename} (A5); same sanitising and check as storage_path."""
    path = Path(root) / "quarantine" / sanitize_key(message_key) / sanitize_filename(filename)
    return _inside(Path(root), path)
