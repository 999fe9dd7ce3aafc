"""T5: Ollama on the host answers /api/tags with a models list. Ollama is outside the stack; the
operator points $OLLAMA_URL at it (e.g. http://localhost:11434)."""

import os

import httpx
import pytest

pytestmark = [pytest.mark.infra, pytest.mark.reads]


@pytest.mark.req("T5")
def test_host_ollama_lists_models(sla):
    url = os.environ.get("OLLAMA_URL")
    if not url:
        pytest.skip("needs service ollama on the host: set OLLAMA_URL to test it")
    res = httpx.get(f"{url.rstrip('/')}/api/tags", timeout=10)
    assert res.status_code == 200, res.text[:300]
    models = res.json()["models"]
    assert isinstance(models, list)
    sla.record("T5", len(models), unit="models", how=f"GET {url}/api/tags")


@pytest.mark.req("O2", "SLA-P2")
def test_host_ollama_serves_the_mailers_model_with_context_4096(sla):
    """What Ollama's API shows of docs/ollama-host.md: the mailers' model is pulled and answers a
    classification-sized request with num_ctx 4096 inside the mailers' 20 s timeout. (Its
    environment, NUM_PARALLEL and the like, is not visible through the API.)"""
    url = os.environ.get("OLLAMA_URL")
    if not url:
        pytest.skip("needs service ollama on the host: set OLLAMA_URL to test it")
    url = url.rstrip("/")
    model = os.environ.get("MAILER_OLLAMA_MODEL", "llama3.2:3b")
    names = {m["name"] for m in httpx.get(f"{url}/api/tags", timeout=10).json()["models"]}
    assert model in names or f"{model}:latest" in names, f"{model} not pulled: {sorted(names)}"
    res = httpx.post(
        f"{url}/api/generate",
        json={
            "model": model,
            "prompt": "Classify as appointment, prescription, findings or other: "
            "'Ich brauche einen Termin.' Answer with one word.",
            "stream": False,
            "options": {"temperature": 0, "num_ctx": 4096},
        },
        timeout=60,
    )
    assert res.status_code == 200, res.text[:300]
    took = res.json()["total_duration"] / 1e9
    assert took < 20, f"{took:.1f} s: over the mailers' Ollama timeout"
    version = httpx.get(f"{url}/api/version", timeout=10).json().get("version")
    sla.record(
        "O2",
        took,
        unit="s",
        how=f"Ollama {version}, {model}, one request with num_ctx 4096 (total_duration)",
    )
