"""Classification and summary of a mail (requirement O1): Ollama when configured and answering in
time, otherwise keyword rules. `classify` never raises: every Ollama failure ends in the rules,
with the reason in Classification.error.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

CATEGORIES = {
    "praxis": ("appointment", "prescription", "findings", "other"),
    "ecom": ("order", "invoice", "return", "complaint", "other"),
}
MAX_SUMMARY = 300
PROMPT_TEXT_CHARS = 4000


@dataclass(frozen=True)
class Classification:
    category: str
    summary: str  # <= 300 characters
    source: str  # "ollama" | "rules"
    latency_s: float | None  # Ollama round trip; None for rules
    error: str | None = None  # why the rules were used ("ollama disabled", "ollama timeout ...")


# --- rules ------------------------------------------------------------------------------------
# Per profile, in priority order (a tie goes to the earlier category). Each pattern must start at
# a word boundary and is matched case-insensitively; a leading \w* lets it also end a compound
# ("Kontrolltermin", "Folgerezept", "Laborbefund").
_RULES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "praxis": (
        (
            "appointment",
            (
                r"\w*termin",
                r"absag",
                r"abzusagen",
                r"verschieb",
                r"verlegen",
                r"sprechstunde",
                r"vereinbar",
                r"appointment",
            ),
        ),
        (
            "prescription",
            (
                r"\w*rezept",
                r"\w*überweisung",
                r"ueberweisung",
                r"medikament",
                r"verordnung",
                r"prescription",
            ),
        ),
        (
            "findings",
            (
                r"\w*befund",
                r"labor",
                r"blutbild",
                r"blutwerte",
                r"röntgen",
                r"roentgen",
                r"mrt\b",
                r"arztbrief",
                r"entlassbrief",
                r"ergebnis",
            ),
        ),
    ),
    "ecom": (
        (
            "complaint",
            (
                r"complaint",
                r"beschwerde",
                r"reklamation",
                r"reklamier",
                r"defekt",
                r"defective",
                r"kaputt",
                r"broken",
                r"damaged",
                r"beschädigt",
                r"mangelhaft",
                r"unzufrieden",
            ),
        ),
        (
            "return",
            (
                r"return",
                r"rücksend",
                r"ruecksend",
                r"retoure",
                r"zurücksend",
                r"zurückschick",
                r"widerruf",
                r"refund",
                r"erstattung",
                r"umtausch",
            ),
        ),
        (
            "invoice",
            (
                r"invoice",
                r"\w*rechnung",
                r"receipt",
                r"quittung",
                r"zahlung",
                r"payment",
                r"mahnung",
            ),
        ),
        (
            "order",
            (
                r"order",
                r"\w*bestell",
                r"auftrag",
                r"lieferung",
                r"delivery",
                r"purchase",
            ),
        ),
    ),
}
_COMPILED = {
    profile: tuple(
        (category, tuple(re.compile(rf"\b{p}", re.IGNORECASE) for p in patterns))
        for category, patterns in rules
    )
    for profile, rules in _RULES.items()
}


def _check_profile(profile: str) -> tuple[str, ...]:
    try:
        return CATEGORIES[profile]
    except KeyError:
        raise ValueError(
            f"unknown profile {profile!r} (expected one of {list(CATEGORIES)})"
        ) from None


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _truncate(text: str, limit: int = MAX_SUMMARY) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def summarize(subject: str, text: str, limit: int = MAX_SUMMARY) -> str:
    """The first sentence(s) of the text, quoted lines and signature dropped, whitespace
    collapsed, at most `limit` characters; the subject when the text has nothing."""
    lines = []
    for line in text.splitlines():
        if line.rstrip() == "--":  # signature separator "-- "
            break
        if line.lstrip().startswith(">"):
            continue
        lines.append(line)
    body = _collapse("\n".join(lines))
    if not body:
        return _truncate(_collapse(subject), limit)
    sentences = re.split(r"(?<=[.!?])\s+", body)
    summary = sentences[0]
    for sentence in sentences[1:]:
        if len(summary) + 1 + len(sentence) > limit:
            break
        summary = f"{summary} {sentence}"
    return _truncate(summary, limit)


def classify_rules(profile: str, subject: str, text: str) -> Classification:
    """Keyword rules: a hit in the subject counts 3, in the text 1; the highest score wins, a
    tie goes to the category listed first; no hit at all is "other"."""
    _check_profile(profile)
    best, best_score = "other", 0
    for category, patterns in _COMPILED[profile]:
        score = sum(3 for p in patterns if p.search(subject)) + sum(
            1 for p in patterns if p.search(text)
        )
        if score > best_score:
            best, best_score = category, score
    return Classification(best, summarize(subject, text), "rules", None)


# --- Ollama -----------------------------------------------------------------------------------
class OllamaUnavailable(Exception):
    """Ollama did not give a usable answer; the message says why."""


_DESCRIPTIONS = {
    "praxis": {
        "appointment": "Termin vereinbaren, verschieben oder absagen",
        "prescription": "Rezept, Folgerezept, Überweisung, Medikamente",
        "findings": "Befunde, Laborwerte, Arztbriefe, Untersuchungsergebnisse",
        "other": "alles andere",
    },
    "ecom": {
        "order": "new order, order status, delivery question",
        "invoice": "invoice, receipt, payment",
        "return": "return, refund, withdrawal, exchange",
        "complaint": "complaint, defective or damaged goods, bad service",
        "other": "anything else",
    },
}


def build_prompt(profile: str, subject: str, text: str) -> str:
    categories = _check_profile(profile)
    desc = _DESCRIPTIONS[profile]
    listing = "\n".join(f"- {c}: {desc[c]}" for c in categories)
    body = text.strip()
    if len(body) > PROMPT_TEXT_CHARS:
        body = body[:PROMPT_TEXT_CHARS] + " […]"
    subject = _collapse(subject)[:300]
    if profile == "praxis":
        return (
            "Du ordnest E-Mails an eine Arztpraxis ein. Erlaubte Kategorien:\n"
            f"{listing}\n"
            'Antworte nur mit JSON: {"category": "<eine der Kategorien>", '
            '"summary": "<Zusammenfassung auf Deutsch, höchstens zwei Sätze>"}\n\n'
            f"Betreff: {subject}\n\nText:\n{body}\n"
        )
    return (
        "You sort e-mails sent to an online shop (German or English). Allowed categories:\n"
        f"{listing}\n"
        'Answer with JSON only: {"category": "<one of the categories>", '
        '"summary": "<summary in the language of the mail, at most two sentences>"}\n\n'
        f"Subject: {subject}\n\nText:\n{body}\n"
    )


def _parse_model_output(output: str) -> dict:
    try:
        value = json.loads(output)
    except ValueError:
        start, end = output.find("{"), output.rfind("}")
        if start < 0 or end <= start:
            raise OllamaUnavailable("ollama: model output is not JSON") from None
        try:
            value = json.loads(output[start : end + 1])
        except ValueError:
            raise OllamaUnavailable("ollama: model output is not JSON") from None
    if not isinstance(value, dict):
        raise OllamaUnavailable("ollama: model output is not a JSON object")
    return value


class OllamaClient:
    def __init__(
        self,
        url: str,
        model: str,
        timeout: float,
        client: httpx.Client | None = None,
        num_ctx: int = 4096,
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        # the context the host is sized for (O2: 4096 on the RX 7800): sent with every request,
        # so a server default that differs cannot grow the memory per request
        self.num_ctx = num_ctx
        self._own_client = client is None
        self.client = client if client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            response = self.client.request(method, f"{self.url}{path}", timeout=self.timeout, **kw)
        except httpx.TimeoutException as exc:
            raise OllamaUnavailable(f"ollama timeout after {self.timeout:.1f} s") from exc
        except httpx.HTTPError as exc:
            raise OllamaUnavailable(f"ollama connection error: {type(exc).__name__}") from exc
        if response.status_code != 200:
            detail = ""
            try:
                error = response.json().get("error")
                if isinstance(error, str):
                    detail = f": {error[:200]}"
            except Exception:
                pass
            raise OllamaUnavailable(f"ollama HTTP {response.status_code}{detail}")
        return response

    def classify(self, profile: str, subject: str, text: str) -> Classification:
        categories = _check_profile(profile)
        payload = {
            "model": self.model,
            "prompt": build_prompt(profile, subject, text),
            "stream": False,
            "format": "json",
            "options": {"temperature": 0, "num_ctx": self.num_ctx},
        }
        start = time.perf_counter()
        response = self._request("POST", "/api/generate", json=payload)
        latency = time.perf_counter() - start
        try:
            data = response.json()
        except ValueError:
            raise OllamaUnavailable("ollama: response is not JSON") from None
        output = data.get("response") if isinstance(data, dict) else None
        if not isinstance(output, str):
            raise OllamaUnavailable("ollama: response has no 'response' text")
        result = _parse_model_output(output)
        category = result.get("category")
        if not isinstance(category, str) or category.strip().lower() not in categories:
            shown = _collapse(str(category))[:40]
            raise OllamaUnavailable(f"ollama: unknown category {shown!r}")
        summary = result.get("summary")
        if isinstance(summary, str) and summary.strip():
            summary = _truncate(_collapse(summary))
        else:  # a category without a summary is still worth having
            summary = summarize(subject, text)
        return Classification(category.strip().lower(), summary, "ollama", latency)

    def tags(self) -> list[str]:
        """Names of the models the server has (GET /api/tags)."""
        response = self._request("GET", "/api/tags")
        try:
            models = response.json().get("models")
        except (ValueError, AttributeError):
            raise OllamaUnavailable("ollama: /api/tags is not a JSON object") from None
        if not isinstance(models, list):
            raise OllamaUnavailable("ollama: /api/tags has no 'models' list")
        return [m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]


def classify(profile: str, subject: str, text: str, client: OllamaClient | None) -> Classification:
    """Ollama if a client is given, else (or when it fails) the rules with `error` set."""
    if client is None:
        fallback = classify_rules(profile, subject, text)
        return Classification(fallback.category, fallback.summary, "rules", None, "ollama disabled")
    try:
        return client.classify(profile, subject, text)
    except OllamaUnavailable as exc:
        error = str(exc)
    except Exception as exc:  # a bug must not lose the mail: fall back, but say so loudly
        log.exception("Ollama client failed unexpectedly")
        error = f"ollama client error: {type(exc).__name__}"
    fallback = classify_rules(profile, subject, text)
    return Classification(fallback.category, fallback.summary, "rules", None, error)
