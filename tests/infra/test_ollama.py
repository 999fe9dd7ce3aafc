"""T5: Ollama on the host answers /api/tags with a models list. Ollama is outside the stack; the
operator points $OLLAMA_URL at it (e.g. http://localhost:11434)."""

import os

import httpx
import pytest

pytestmark = pytest.mark.infra


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
