"""Header values capped before the email package parses them: shared by the parser
(mailer.parsing) and the large-mail pre-pass (mailer.spill), which read header blocks with the
same policy. A cut is a defect of the mail being parsed (recorded where a sink is set)."""

from __future__ import annotations

import contextvars
import email.policy
import re

_MAX_HEADER_CHARS = 16384  # decoded at most; beyond that a header is cut (with a defect)
_SAFE_LABEL = re.compile(r"[^A-Za-z0-9._:+-]")


def _label(text: object, limit: int = 40) -> str:
    """A sender-controlled token (charset, header name) made safe to put into a defect."""
    return _SAFE_LABEL.sub("?", str(text))[:limit] or "?"


_MAX_SOURCE_HEADER_CHARS = 65536  # any header, as the parser reads it (linear beyond that)
_MAX_PARAM_HEADER_CHARS = _MAX_HEADER_CHARS
_STR_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,75}\?[bBqQ]\?")
_MAX_MIME_PARAMS = 32  # parameters of Content-Type / Content-Disposition kept
_PARAM_HEADERS = frozenset({"content-type", "content-disposition"})
_CUT: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("_CUT", default=None)


def _cap_header(name: str, value: str) -> str:
    """A header value as the email package may see it. Its structured-header parser is
    quadratic in the number of MIME parameters (a Content-Type of 200 KB of "a=b;" took 4 s and
    340 MB, 400 KB 14 s and 1.2 GB, past the worker's memory limit) and slow on any very long
    value; it runs while the mail is parsed (boundaries, nested messages). So: any header at
    most _MAX_SOURCE_HEADER_CHARS, Content-Type and Content-Disposition at most
    _MAX_PARAM_HEADER_CHARS, _MAX_MIME_PARAMS parameters and as many encoded-words; each cut is
    a defect."""
    lname = name.strip().lower()
    limit = _MAX_PARAM_HEADER_CHARS if lname in _PARAM_HEADERS else _MAX_SOURCE_HEADER_CHARS
    cut = value[:limit]
    if lname in _PARAM_HEADERS:
        if cut.count(";") > _MAX_MIME_PARAMS:  # parameters: each costs the parser dearly
            pos = -1
            for _ in range(_MAX_MIME_PARAMS + 1):
                pos = cut.find(";", pos + 1)
            cut = cut[:pos]
        words = _STR_ENCODED_WORD.finditer(cut)  # encoded-words in parameters: as dear
        for i, m in enumerate(words):
            if i == _MAX_MIME_PARAMS:
                cut = cut[: m.start()]
                break
    if len(cut) < len(value):
        sink = _CUT.get()
        if sink is not None:
            sink.append(f"{_label(name)} header of {len(value)} characters cut to {len(cut)}")
        if "\n" in value[-2:]:
            cut = cut.rstrip("\r\n") + "\n"
    return cut


class _CappedPolicy(email.policy.EmailPolicy):
    """policy.default, with every header value capped (_cap_header) as the parser reads it."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return name, _cap_header(name, value)

    def header_fetch_parse(self, name: str, value: str) -> object:
        """As policy.default, with the parsed header objects (immutable) cached: the parser asks
        for each part's Content-Type several times, and each time it was parsed again (a mail
        of 3000 nested messages spent 6 of its 7 s there)."""
        if hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        key = (name, value)
        hit = _HEADER_CACHE.get(key)
        if hit is None:
            hit = super().header_fetch_parse(name, value)
            if len(_HEADER_CACHE) >= 1024:
                _HEADER_CACHE.clear()
            _HEADER_CACHE[key] = hit
        return hit


_HEADER_CACHE: dict[tuple[str, str], object] = {}


_POLICY = _CappedPolicy()
