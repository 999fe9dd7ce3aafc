"""mailer.classify: keyword rules, summaries, and the Ollama client over httpx.MockTransport."""

import json

import httpx
import pytest

from mailer.classify import (
    CATEGORIES,
    MAX_SUMMARY,
    PROMPT_TEXT_CHARS,
    Classification,
    OllamaClient,
    OllamaUnavailable,
    build_prompt,
    classify,
    classify_rules,
    summarize,
)

pytestmark = pytest.mark.unit

URL = "http://ollama.test:11434"


def test_categories():
    assert CATEGORIES == {
        "praxis": ("appointment", "prescription", "findings", "other"),
        "ecom": ("order", "invoice", "return", "complaint", "other"),
    }


# --- rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("subject", "text", "category"),
    [
        ("Terminanfrage", "Ich hätte gern einen Termin nächste Woche.", "appointment"),
        ("Absage", "Ich muss meinen Termin am Montag leider absagen.", "appointment"),
        ("", "Kann ich den Kontrolltermin verschieben?", "appointment"),
        ("Rezept", "Bitte ein Folgerezept für Ramipril.", "prescription"),
        ("Überweisung zum Orthopäden", "Ich brauche eine Überweisung.", "prescription"),
        ("UEBERWEISUNG", "", "prescription"),
        ("Befund", "Anbei der Befund vom Labor.", "findings"),
        ("Laborwerte", "Wie sind meine Blutwerte?", "findings"),
        ("Hallo", "Haben Sie im August Urlaub?", "other"),
        ("", "", "other"),
        # the subject outweighs a passing mention in the text
        ("Rezept", "Beim letzten Termin sagten Sie, ich solle schreiben.", "prescription"),
    ],
)
def test_rules_praxis(subject, text, category):
    result = classify_rules("praxis", subject, text)
    assert result.category == category
    assert result.source == "rules"
    assert result.latency_s is None
    assert result.error is None


@pytest.mark.parametrize(
    ("subject", "text", "category"),
    [
        ("Order 4711", "I would like to order two chairs.", "order"),
        ("Bestellung", "Ich möchte gern bestellen.", "order"),
        ("Invoice", "Please send the invoice for order 4711.", "invoice"),
        ("Rechnung 2024-17", "Anbei die Rechnung zu Ihrer Bestellung.", "invoice"),
        ("Rücksendung", "Ich schicke die Ware zurück.", "return"),
        ("Retoure Bestellung 12", "", "return"),
        ("Return", "I want to return my order and get a refund.", "return"),
        ("Reklamation", "Die Lampe aus Bestellung 5 ist defekt.", "complaint"),
        ("Beschwerde", "", "complaint"),
        ("Problem", "The item arrived broken and damaged.", "complaint"),
        ("Hello", "Do you ship to Austria?", "other"),
    ],
)
def test_rules_ecom(subject, text, category):
    assert classify_rules("ecom", subject, text).category == category


def test_rules_tie_goes_to_the_earlier_category():
    # one hit each for complaint and order, in the text: complaint is listed first
    assert classify_rules("ecom", "", "order arrived defekt").category == "complaint"
    assert classify_rules("praxis", "", "Termin und Rezept").category == "appointment"


def test_rules_are_case_insensitive_and_match_compounds():
    assert classify_rules("praxis", "", "LABORBEFUND anbei").category == "findings"
    assert classify_rules("ecom", "", "SCHLUSSRECHNUNG anbei").category == "invoice"


def test_rules_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        classify_rules("bank", "", "")


def test_rules_categories_always_belong_to_the_profile():
    texts = ["Termin", "Rezept", "Befund", "order", "invoice", "return", "defekt", "", "x"]
    for profile, cats in CATEGORIES.items():
        for t in texts:
            assert classify_rules(profile, t, t).category in cats


# --- summaries --------------------------------------------------------------------------------
def test_summary_first_sentences_whitespace_collapsed():
    text = "Sehr geehrte Damen und Herren,\n\nich   brauche einen Termin.  Am besten Montag!\n"
    assert summarize("", text) == (
        "Sehr geehrte Damen und Herren, ich brauche einen Termin. Am besten Montag!"
    )


def test_summary_stops_before_the_limit_at_a_sentence():
    text = "Erster Satz. " + "Zweiter Satz ist lang. " * 30
    out = summarize("", text)
    assert len(out) <= MAX_SUMMARY
    assert out.startswith("Erster Satz. Zweiter Satz ist lang.")
    assert out.endswith(".")


def test_summary_truncates_one_long_sentence_with_ellipsis():
    out = summarize("", "wort " * 200)
    assert len(out) <= MAX_SUMMARY
    assert out.endswith("…")
    assert "  " not in out


def test_summary_drops_quotes_and_signature():
    text = "Danke für die Info.\n> alte Nachricht\n> mit Zitat\n-- \nDr. Max Muster\nTel 123"
    assert summarize("", text) == "Danke für die Info."


def test_summary_uses_the_subject_when_the_text_is_empty():
    assert summarize("  Termin   absagen ", "\n \n") == "Termin absagen"
    assert classify_rules("praxis", "Termin absagen", "").summary == "Termin absagen"


def test_summary_limit_holds_for_everything():
    for text in ["a" * 1000, "Satz. " * 200, "x" * 299, "x" * 301, "ä" * 5000]:
        assert len(summarize("", text)) <= MAX_SUMMARY


# --- prompt -----------------------------------------------------------------------------------
def test_praxis_prompt_is_german_and_lists_categories():
    prompt = build_prompt("praxis", "Terminanfrage", "Bitte einen Termin.")
    for cat in CATEGORIES["praxis"]:
        assert f"- {cat}:" in prompt
    assert "Antworte nur mit JSON" in prompt
    assert "Betreff: Terminanfrage" in prompt
    assert "Bitte einen Termin." in prompt


def test_ecom_prompt_lists_its_categories():
    prompt = build_prompt("ecom", "Order", "text")
    for cat in CATEGORIES["ecom"]:
        assert f"- {cat}:" in prompt
    assert "appointment" not in prompt
    assert "JSON" in prompt


def test_prompt_truncates_long_text():
    text = "A" * PROMPT_TEXT_CHARS + "TAIL-MARKER"
    prompt = build_prompt("ecom", "s", text)
    assert "TAIL-MARKER" not in prompt
    assert "A" * PROMPT_TEXT_CHARS in prompt
    assert len(prompt) < PROMPT_TEXT_CHARS + 1000


# --- Ollama client ----------------------------------------------------------------------------
def ollama(handler, timeout: float = 20.0) -> OllamaClient:
    return OllamaClient(URL + "/", "llama3.2:3b", timeout, httpx.Client(transport=handler))


def reply(category: str, summary: str = "Kurz.") -> httpx.Response:
    body = json.dumps({"category": category, "summary": summary})
    return httpx.Response(200, json={"model": "llama3.2:3b", "response": body, "done": True})


@pytest.mark.req("O1", "O2")
def test_ollama_request_and_result():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply("appointment", "  Patientin   bittet um einen Termin. ")

    result = ollama(httpx.MockTransport(handler)).classify("praxis", "Termin", "Bitte Termin.")
    assert result.category == "appointment"
    assert result.summary == "Patientin bittet um einen Termin."
    assert result.source == "ollama"
    assert result.error is None
    assert isinstance(result.latency_s, float) and result.latency_s >= 0
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{URL}/api/generate"
    payload = json.loads(request.content)
    assert payload["model"] == "llama3.2:3b"
    assert payload["stream"] is False
    assert payload["format"] == "json"
    assert payload["options"] == {"temperature": 0, "num_ctx": 4096}  # O2: context 4096
    assert "Bitte Termin." in payload["prompt"]


def test_ollama_category_is_normalised():
    client = ollama(httpx.MockTransport(lambda r: reply(" Invoice ")))
    assert client.classify("ecom", "s", "t").category == "invoice"


def test_ollama_long_summary_is_cut():
    client = ollama(httpx.MockTransport(lambda r: reply("order", "lang " * 200)))
    assert len(client.classify("ecom", "s", "t").summary) <= MAX_SUMMARY


def test_ollama_missing_summary_falls_back_to_the_text():
    def handler(request):
        return httpx.Response(200, json={"response": '{"category": "order"}'})

    result = ollama(httpx.MockTransport(handler)).classify("ecom", "s", "Ich bestelle. Danke.")
    assert result == Classification("order", "Ich bestelle. Danke.", "ollama", result.latency_s)


def test_ollama_json_wrapped_in_prose_is_accepted():
    def handler(request):
        return httpx.Response(
            200, json={"response": 'Sure: {"category": "return", "summary": "Retoure."} ok'}
        )

    assert ollama(httpx.MockTransport(handler)).classify("ecom", "s", "t").category == "return"


def _raises(handler, match: str, timeout: float = 20.0) -> None:
    client = ollama(httpx.MockTransport(handler), timeout)
    with pytest.raises(OllamaUnavailable, match=match):
        client.classify("praxis", "s", "t")


def test_ollama_timeout():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    _raises(handler, r"^ollama timeout after 20\.0 s$")


def test_ollama_connection_error():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    _raises(handler, "connection error: ConnectError")


def test_ollama_http_error_with_message():
    def handler(request):
        return httpx.Response(404, json={"error": "model 'llama3.2:3b' not found"})

    _raises(handler, "HTTP 404: model 'llama3.2:3b' not found")


def test_ollama_http_500_without_json():
    _raises(lambda r: httpx.Response(500, text="boom"), r"^ollama HTTP 500$")


def test_ollama_body_not_json():
    _raises(lambda r: httpx.Response(200, text="<html>"), "response is not JSON")


def test_ollama_body_without_response_field():
    _raises(lambda r: httpx.Response(200, json={"done": True}), "no 'response'")


def test_ollama_model_output_not_json():
    _raises(lambda r: httpx.Response(200, json={"response": "I think: appointment"}), "not JSON")


def test_ollama_model_output_not_an_object():
    _raises(lambda r: httpx.Response(200, json={"response": '["appointment"]'}), "not a JSON")


def test_ollama_unknown_category():
    _raises(lambda r: reply("invoice"), "unknown category 'invoice'")  # an ecom one, for praxis


def test_ollama_category_not_a_string():
    def handler(request):
        return httpx.Response(200, json={"response": '{"category": 3, "summary": "x"}'})

    _raises(handler, "unknown category '3'")


def test_ollama_timeout_is_passed_to_httpx():
    seen = {}

    def handler(request):
        seen.update(request.extensions["timeout"])
        return reply("other")

    ollama(httpx.MockTransport(handler), timeout=7.5).classify("praxis", "s", "t")
    assert seen["read"] == 7.5 and seen["connect"] == 7.5


def test_tags():
    def handler(request):
        assert request.method == "GET" and str(request.url) == f"{URL}/api/tags"
        return httpx.Response(
            200, json={"models": [{"name": "llama3.2:3b", "size": 1}, {"name": "qwen2.5:7b"}, {}]}
        )

    assert ollama(httpx.MockTransport(handler)).tags() == ["llama3.2:3b", "qwen2.5:7b"]


def test_tags_errors():
    client = ollama(httpx.MockTransport(lambda r: httpx.Response(200, json={"x": 1})))
    with pytest.raises(OllamaUnavailable, match="no 'models' list"):
        client.tags()
    client = ollama(httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(OllamaUnavailable, match="HTTP 503"):
        client.tags()


def test_client_owns_its_default_httpx_client():
    client = OllamaClient(URL, "m", 1.0)
    assert isinstance(client.client, httpx.Client)
    client.close()
    assert client.client.is_closed
    external = httpx.Client()
    OllamaClient(URL, "m", 1.0, external).close()
    assert not external.is_closed  # not ours to close
    external.close()


# --- classify (with fallback) -----------------------------------------------------------------
def test_classify_without_client_uses_rules():
    result = classify("praxis", "Rezept", "Bitte ein Rezept.", None)
    assert result.source == "rules"
    assert result.category == "prescription"
    assert result.error == "ollama disabled"
    assert result.latency_s is None


def test_classify_uses_ollama_when_it_answers():
    client = ollama(httpx.MockTransport(lambda r: reply("findings", "Befund da.")))
    result = classify("praxis", "Rezept", "Bitte ein Rezept.", client)
    assert (result.source, result.category, result.summary) == ("ollama", "findings", "Befund da.")


def test_classify_falls_back_on_timeout_with_reason():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    client = ollama(httpx.MockTransport(handler), timeout=20.0)
    result = classify("ecom", "Rechnung", "Bitte die Rechnung senden.", client)
    assert result.source == "rules"
    assert result.category == "invoice"
    assert result.error == "ollama timeout after 20.0 s"
    assert result.summary == "Bitte die Rechnung senden."


def test_classify_falls_back_on_unknown_category():
    client = ollama(httpx.MockTransport(lambda r: reply("spam")))
    result = classify("ecom", "Retoure", "", client)
    assert (result.source, result.category) == ("rules", "return")
    assert result.error == "ollama: unknown category 'spam'"


def test_classify_falls_back_on_a_bug_in_the_client(caplog):
    class Broken(OllamaClient):
        def classify(self, profile, subject, text):
            raise KeyError("oops")

    result = classify("praxis", "Termin", "", Broken(URL, "m", 1.0, httpx.Client()))
    assert result.source == "rules" and result.category == "appointment"
    assert result.error == "ollama client error: KeyError"
    assert "Ollama client failed unexpectedly" in caplog.text
