"""Tolerant parsing of address headers (From, To, Cc, Delivered-To, ...) into addr-specs.

Why not `email.utils.getaddresses`: since the CVE-2023-27043 fix (in Debian's 3.11.2, the mailer
image's Python, and in CPython 3.11.10+/3.12.6+ as `strict=True`), one malformed entry makes it
return `[("", "")]` for the *whole* list it was given; older versions return other things for the
same input. `To: info@shop.example <info@shop.example>` (a display name that is itself an address,
unquoted, as some shop systems write it) is such an entry, and with it every recipient of the mail
was lost. Here every entry is read on its own, so one bad entry costs only itself.

Per entry (entries are separated by top-level `,` or `;`; quoted strings, comments, `<...>`,
`[...]` and RFC 2047 encoded-words are never split):

* `Name <addr>`: the part inside the last top-level angle brackets, a source route
  (`<@relay:addr>`) dropped; the display name is ignored whatever it holds (an address, commas,
  encoded-words, raw 8-bit text).
* no angle brackets: the entry without its comments, if that is one address; else the first
  thing in it that looks like an address (`John john@example.com`).
* group syntax (`undisclosed-recipients:;`, `Team: a@x, b@y;`): the group name is dropped, its
  members are kept.

An address is `local@domain` without whitespace or specials (a quoted local part and a domain
literal are allowed); it is returned lower-cased. Nothing here raises on any str input, and the
work is linear in the input, which is cut at MAX_CHARS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_CHARS = 65536  # of one header value; a recipient list longer than this is cut
MAX_ADDRESSES = 1000  # per header value

_SPECIALS = r"\s<>()\[\],;:\"\\@"
_ATOMS = rf"[^{_SPECIALS}]+"
_LOCAL = rf"(?:{_ATOMS}|\"(?:[^\"\\\r\n]|\\.)*\")"
_DOMAIN = rf"(?:{_ATOMS}|\[[^\[\]\\\s]*\])"
_ADDRESS = re.compile(rf"{_LOCAL}@{_DOMAIN}")
_SPECIAL_CHARS = frozenset(' \t\r\n\v\f<>()[],;:"\\@')
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,75}\?[bBqQ]\?[^?\s]*\?=")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ufffd]")  # in an address: undecodable or control


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", " ").replace("\n", " ")


def _entries(value: str) -> Iterable[tuple[str, list[str]]]:
    """(text outside quotes/comments/angles, [contents of top-level <...>]) per entry.
    The outside text keeps quoted strings (a quoted local part is part of an address)."""
    outside: list[str] = []
    angles: list[str] = []
    has_at = False  # an "@" in `outside` so far (then a ":" is not a group name's end)
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == '"':  # quoted string, backslash escapes; an unclosed one runs to the end
            j = i + 1
            while j < n and value[j] != '"':
                j += 2 if value[j] == "\\" else 1
            outside.append(value[i : j + 1])
            i = j + 1
        elif c == "(":  # comment, nested, escapes; dropped (it may hold a comma or an address)
            depth, j = 1, i + 1
            while j < n and depth:
                if value[j] == "\\":
                    j += 1
                elif value[j] == "(":
                    depth += 1
                elif value[j] == ")":
                    depth -= 1
                j += 1
            outside.append(" ")
            i = j
        elif c == "<":
            j = value.find(">", i + 1)
            if j < 0:
                j = n
            angles.append(value[i + 1 : j])
            i = j + 1
        elif c == "[":  # domain literal
            j = value.find("]", i + 1)
            if j < 0:
                j = n
            outside.append(value[i : j + 1])
            i = j + 1
        elif c == "=" and value.startswith("=?", i):
            m = _ENCODED_WORD.match(value, i)
            if m:  # an encoded-word in a display name may carry "," or "<" in Q encoding
                outside.append(" ")
                i = m.end()
            else:
                outside.append(c)
                i += 1
        elif c in ",;":
            yield "".join(outside), angles
            outside, angles, has_at = [], [], False
            i += 1
        elif c == ":" and not angles and not has_at:
            outside = []  # "group-name:" (a display name of a group): dropped
            i += 1
        else:
            has_at = has_at or c == "@"
            outside.append(c)
            i += 1
    yield "".join(outside), angles


_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_OBSOLETE_SPACES = re.compile(r"\s*([.@])\s*")


def _one(outside: str, angles: list[str]) -> str | None:
    for inner in reversed(angles):
        for _ in range(3):  # comments inside the brackets: <pete(his account)@silly.test>
            inner = _COMMENT.sub("", inner)
        inner = "".join(inner.split())
        if inner.startswith("@") and ":" in inner:  # source route <@a,@b:user@host>
            inner = inner.rsplit(":", 1)[1]
        inner = inner.removeprefix("mailto:")
        if _ADDRESS.fullmatch(inner):
            return inner
        found = _loose(inner)
        if found:
            return found
    text = outside.strip()
    if _ADDRESS.fullmatch(text):
        return text
    joined = _OBSOLETE_SPACES.sub(r"\1", text)  # obsolete syntax: "jdoe@test   . example"
    if _ADDRESS.fullmatch(joined):
        return joined
    return _loose(text)


def _loose(text: str) -> str | None:
    """The first `local@domain` in text (atoms around an "@"). Linear: a regex search would be
    quadratic on a long run of atom characters."""
    at = text.find("@")
    while at >= 0:
        start = at
        while start > 0 and text[start - 1] not in _SPECIAL_CHARS:
            start -= 1
        end = at + 1
        while end < len(text) and text[end] not in _SPECIAL_CHARS:
            end += 1
        if start < at and end > at + 1:
            return text[start:end]
        at = text.find("@", at + 1)
    return None


def parse_addresses(value: str) -> list[str]:
    """The addresses of one header value, lower-cased, in order, duplicates kept once."""
    if not isinstance(value, str):
        value = str(value)
    value = _SURROGATES.sub("\ufffd", _unfold(value[: MAX_CHARS + 1000])[:MAX_CHARS])
    value = value.replace("\x00", " ")
    out: list[str] = []
    seen: set[str] = set()
    for outside, angles in _entries(value):
        addr = _one(outside, angles)
        if addr and not _BAD_CHARS.search(addr):
            addr = addr.lower()
            if addr not in seen:
                seen.add(addr)
                out.append(addr)
                if len(out) >= MAX_ADDRESSES:
                    break
    return out


def addresses_of(values: Iterable[str]) -> list[str]:
    """The addresses of several header values (each parsed on its own), deduplicated."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for addr in parse_addresses(value):
            if addr not in seen:
                seen.add(addr)
                out.append(addr)
    return out


def header_values(block: bytes, names: Iterable[str]) -> list[str]:
    """The values of the headers `names` (case-insensitive) in a raw header block, unfolded, in
    order; reading stops at the first empty line. Raw 8-bit is decoded as UTF-8 with replacement
    (an address is ASCII or UTF-8; a display name is not looked at)."""
    wanted = {n.lower() for n in names}
    values: list[str] = []
    current: list[bytes] | None = None
    for line in bytes(block).splitlines():
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            values.append(b"".join(current).decode("utf-8", "replace").strip())
            current = None
        name, colon, rest = line.partition(b":")
        if colon and name.strip().decode("latin-1").lower() in wanted:
            current = [rest]
    if current is not None:
        values.append(b"".join(current).decode("utf-8", "replace").strip())
    return values
