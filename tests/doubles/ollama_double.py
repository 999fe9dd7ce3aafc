"""A small double of Ollama's HTTP API for tests where no Ollama is reachable.

It lives in tests/ and is never baked into an image: the suite runs it in a throwaway container
(from the mailer image, for its Python) on the stack's backend network, under the alias `ollama`.
Knobs for fault tests: POST /_control {"delay_s": 25, "status": 500, "garbage": true} changes how
/api/generate answers; GET /_stats counts the calls. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = os.environ.get("DOUBLE_MODEL", "llama3.2:3b")
STATE = {"delay_s": float(os.environ.get("DOUBLE_DELAY_S", "0")), "status": 200, "garbage": False}
STATS = {"generate": 0, "tags": 0}
LOCK = threading.Lock()

# Deliberately different words from the mailer's own rules, so a test can tell who classified.
KEYWORDS = [
    ("prescription", r"rezept|medikament"),
    ("findings", r"befund|labor"),
    ("appointment", r"termin|sprechstunde"),
    ("invoice", r"rechnung|invoice"),
    ("return", r"retoure|rücksendung|return"),
    ("complaint", r"beschwerde|reklamation"),
    ("order", r"bestellung|order"),
]


def categorise(prompt: str) -> str:
    allowed = re.findall(
        r"\b(appointment|prescription|findings|order|invoice|return|complaint|"
        r"other)\b",
        prompt.split("\n", 3)[0] + prompt,
    )
    text = prompt.lower()
    for category, pattern in KEYWORDS:
        if category in allowed and re.search(pattern, text):
            return category
    return "other"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/tags":
            with LOCK:
                STATS["tags"] += 1
            self._json(
                200,
                {
                    "models": [
                        {"name": MODEL, "model": MODEL, "size": 1, "details": {"family": "double"}}
                    ]
                },
            )
        elif self.path == "/api/version":
            self._json(200, {"version": "0.0.0-double"})
        elif self.path == "/_stats":
            with LOCK:
                self._json(200, {**STATS, **STATE})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path == "/_control":
            with LOCK:
                STATE.update(self._body())
                self._json(200, dict(STATE))
            return
        if self.path != "/api/generate":
            self._json(404, {"error": "not found"})
            return
        body = self._body()
        with LOCK:
            STATS["generate"] += 1
            delay, status, garbage = STATE["delay_s"], STATE["status"], STATE["garbage"]
        time.sleep(delay)
        if status != 200:
            self._json(status, {"error": "double configured to fail"})
            return
        prompt = str(body.get("prompt", ""))
        answer = (
            "this is not json"
            if garbage
            else json.dumps(
                {
                    "category": categorise(prompt),
                    "summary": "double: " + " ".join(prompt.split()[-12:])[:200],
                }
            )
        )
        self._json(
            200,
            {
                "model": body.get("model", MODEL),
                "created_at": "2026-01-01T00:00:00Z",
                "response": answer,
                "done": True,
                "done_reason": "stop",
                "total_duration": int(delay * 1e9),
            },
        )


if __name__ == "__main__":
    port = int(os.environ.get("DOUBLE_PORT", "11434"))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
