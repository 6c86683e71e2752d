"""The one guarded outbound transport, client by client, against local servers.

Each outbound client of AOS (http.request, the Anthropic and OpenAI SDK clients, webhook deliveries)
connects through aos.skills.egress. The tests show, for each, that a redirect is vetted (or not followed),
that the address connected to is the one the guard vetted (DNS rebinding: the name answers an allowed
address first, a forbidden one afterwards), and that a forbidden address is never reached.

DNS is simulated by replacing ``socket.getaddrinfo`` for one test name (``*.rebind.test``); every
other name and every address literal resolves as usual. A "victim" server listens on 127.0.0.2, on the
same port as the legitimate one on 127.0.0.1: only 127.0.0.1 is allow-listed, so reaching the victim
means a second lookup was trusted.
"""

from __future__ import annotations

import socket

import httpx
import httpx2
import pytest

from aos.config import load_settings
from aos.runtime.invoke import invoke_skill
from aos.services.webhooks import WebhookRequest, deliver
from aos.skills.base import SkillContext, SkillError
from aos.skills.egress import EgressPolicy, guarded_transport, guarded_transport2
from aos.skills.http import HttpRequest
from aos.skills.llm import LlmComplete
from aos.skills.ssrf import AllowList
from tests.support.http_server import Reply, serve_http
from tests.support.llm_server import FakeLlmServer, ScriptedResponse

ONLY_127_0_0_1 = {"AOS_HTTP_ALLOW_HOSTS": "127.0.0.1"}
REAL_GETADDRINFO = socket.getaddrinfo


class RebindingDns:
    """``<anything>.rebind.test`` answers ``first`` to the first lookup and ``then`` to every later one."""

    def __init__(self, first: str, then: str) -> None:
        self.first, self.then, self.lookups = first, then, 0

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002, ANN001, ANN204
        if isinstance(host, str) and host.endswith(".rebind.test"):
            self.lookups += 1
            addr = self.first if self.lookups == 1 else self.then
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (addr, port))]
        return REAL_GETADDRINFO(host, port, family, type, proto, flags)


@pytest.fixture
def rebinding_dns(monkeypatch):
    dns = RebindingDns("127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


def ctx(env: dict[str, str], **kw) -> SkillContext:  # noqa: ANN003
    return SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1", settings=load_settings(env),
                        idempotency_key="r1:s1:1", timeout_s=3.0, **kw)


def victim_on(port: int):  # noqa: ANN201
    """A server on the forbidden 127.0.0.2, same port as the legitimate one."""
    return serve_http({"/": Reply(json={"secret": "from the private network"})}, host="127.0.0.2", port=port)


# --- the transport itself (httpx and httpx2, a client that follows redirects) -----------------------------

@pytest.mark.parametrize(("hx", "transport"), [(httpx, guarded_transport), (httpx2, guarded_transport2)])
def test_a_client_that_follows_redirects_has_every_hop_vetted(hx, transport):
    policy = EgressPolicy(AllowList.parse(["127.0.0.1"]))
    with serve_http({"/": Reply(json={"secret": 1})}, host="127.0.0.2") as internal:
        with serve_http({"/go": Reply(307, headers={"Location": internal.url("/")})}) as srv:
            with hx.Client(transport=transport(policy), follow_redirects=True) as client, \
                    pytest.raises(SkillError) as refused:
                client.get(srv.url("/go"))
    assert refused.value.code == "HTTP_SSRF_BLOCKED" and refused.value.details["address"] == "127.0.0.2"
    assert len(srv.requests) == 1 and internal.requests == []


@pytest.mark.parametrize(("hx", "transport"), [(httpx, guarded_transport), (httpx2, guarded_transport2)])
def test_the_transport_connects_once_to_the_address_it_vetted(hx, transport, rebinding_dns):
    policy = EgressPolicy(AllowList.parse(["127.0.0.1"]))
    with serve_http({"/": Reply(json={"ok": True})}) as legit, victim_on(legit.port) as victim:
        with hx.Client(transport=transport(policy)) as client:
            answer = client.get(f"http://svc.rebind.test:{legit.port}/")
    assert answer.json() == {"ok": True} and len(legit.requests) == 1 and victim.requests == []
    assert rebinding_dns.lookups == 1  # one lookup, vetted and used: no second answer is ever trusted
    assert legit.requests[0].headers["host"] == f"svc.rebind.test:{legit.port}"  # the name, not the address


def test_a_proxy_from_the_environment_is_not_used(monkeypatch):
    with serve_http({"/": Reply(json={"direct": True})}) as srv:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.9:9")  # nothing listens there
        monkeypatch.setenv("ALL_PROXY", "http://127.0.0.9:9")
        with httpx.Client(transport=guarded_transport(EgressPolicy(AllowList.parse(["127.0.0.1"])))) as client:
            assert client.get(srv.url("/")).json() == {"direct": True}


# --- http.request -----------------------------------------------------------------------------------

def test_http_request_connects_to_the_vetted_address_of_a_rebinding_name(rebinding_dns):
    with serve_http({"/": Reply(json={"ok": True})}) as legit, victim_on(legit.port) as victim:
        outcome, _ = invoke_skill(HttpRequest(), {"url": f"http://api.rebind.test:{legit.port}/"}, ctx(ONLY_127_0_0_1))
    assert outcome.status == "ok" and outcome.output["json"] == {"ok": True}
    assert victim.requests == [] and rebinding_dns.lookups == 1


def test_http_request_refuses_a_rebinding_name_that_answers_a_forbidden_address_first(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", RebindingDns("127.0.0.2", "127.0.0.1"))
    with serve_http({"/": Reply(json={"ok": True})}) as legit, victim_on(legit.port) as victim:
        outcome, _ = invoke_skill(HttpRequest(), {"url": f"http://api.rebind.test:{legit.port}/"}, ctx(ONLY_127_0_0_1))
    assert outcome.error.code == "HTTP_SSRF_BLOCKED"
    assert victim.requests == [] and legit.requests == []


# --- llm.complete: a plan-chosen openai_compatible server, and the configured providers -------------------

LLM = LlmComplete()


@pytest.mark.parametrize("status", [307, 303, 302, 301, 308])
def test_openai_compatible_does_not_follow_a_redirect(status):
    with serve_http({"/": Reply(json={"choices": [{"message": {"content": "from elsewhere"}}]})},
                    host="127.0.0.1") as elsewhere, FakeLlmServer() as llm:
        target = elsewhere.url("/latest/meta-data/iam") if status == 303 else elsewhere.url("/")
        llm.push(ScriptedResponse(status, b"", headers={"Location": target}))
        outcome, _ = invoke_skill(LLM, {"prompt": "hi", "provider": "openai_compatible", "base_url": llm.openai_url},
                                  ctx(ONLY_127_0_0_1))
    assert outcome.status == "error" and outcome.error.code == "LLM_PROVIDER_ERROR"
    assert "redirect" in outcome.error.message
    assert len(llm.requests) == 1 and elsewhere.requests == []  # nothing was sent to the Location


def test_openai_compatible_connects_to_the_vetted_address_of_a_rebinding_name(rebinding_dns):
    with FakeLlmServer() as llm:
        port = int(llm.url.rsplit(":", 1)[1])
        with victim_on(port) as victim:
            outcome, _ = invoke_skill(LLM, {"prompt": "hi", "provider": "openai_compatible",
                                            "base_url": f"http://llm.rebind.test:{port}/v1"}, ctx(ONLY_127_0_0_1))
    assert outcome.status == "ok", outcome.error
    assert len(llm.requests) == 1 and victim.requests == [] and rebinding_dns.lookups == 1


def test_openai_compatible_is_refused_by_the_guard_and_by_the_agents_hosts():
    with FakeLlmServer() as llm:
        blocked, _ = invoke_skill(LLM, {"prompt": "hi", "provider": "openai_compatible", "base_url": llm.openai_url},
                                  ctx({"AOS_HTTP_ALLOW_HOSTS": "example.org"}))
        denied, _ = invoke_skill(LLM, {"prompt": "hi", "provider": "openai_compatible", "base_url": llm.openai_url},
                                 ctx(ONLY_127_0_0_1, capabilities={"http_hosts": ["llm.example.com"]}))
        sent = len(llm.requests)
    assert blocked.error.code == "HTTP_SSRF_BLOCKED" and denied.error.code == "CAPABILITY_DENIED" and sent == 0


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_configured_provider_does_not_follow_a_redirect(provider):
    with serve_http({"/": Reply(json={})}) as elsewhere, FakeLlmServer() as llm:
        llm.push(ScriptedResponse(307, b"", headers={"Location": elsewhere.url("/")}))
        env = {"AOS_ANTHROPIC_API_KEY": "sk-ant-test-key-0000", "AOS_ANTHROPIC_BASE_URL": llm.url,
               "AOS_OPENAI_API_KEY": "sk-test-key-0000", "AOS_OPENAI_BASE_URL": llm.openai_url}
        outcome, _ = invoke_skill(LLM, {"prompt": "hi", "provider": provider}, ctx(env))
    assert outcome.error.code == "LLM_PROVIDER_ERROR" and "redirect" in outcome.error.message
    assert len(llm.requests) == 1 and elsewhere.requests == []


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_configured_provider_whose_name_resolves_to_the_metadata_service_is_refused(provider, monkeypatch):
    """The operator's endpoint is trusted by name (a local model server is fine), never to reach metadata."""
    monkeypatch.setattr(socket, "getaddrinfo", RebindingDns("169.254.169.254", "169.254.169.254"))
    env = {"AOS_ANTHROPIC_API_KEY": "sk-ant-test-key-0000", "AOS_ANTHROPIC_BASE_URL": "http://llm.rebind.test",
           "AOS_OPENAI_API_KEY": "sk-test-key-0000", "AOS_OPENAI_BASE_URL": "http://llm.rebind.test/v1"}
    outcome, _ = invoke_skill(LLM, {"prompt": "hi", "provider": provider}, ctx(env))
    assert outcome.error.code == "HTTP_SSRF_BLOCKED" and outcome.error.details["reason"] == "cloud metadata"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_configured_provider_on_a_private_address_is_trusted(provider):
    """AOS_ANTHROPIC_BASE_URL / AOS_OPENAI_BASE_URL are the operator's: no allow-list entry is needed."""
    with FakeLlmServer() as llm:
        env = {"AOS_ANTHROPIC_API_KEY": "sk-ant-test-key-0000", "AOS_ANTHROPIC_BASE_URL": llm.url,
               "AOS_OPENAI_API_KEY": "sk-test-key-0000", "AOS_OPENAI_BASE_URL": llm.openai_url}
        outcome, _ = invoke_skill(LLM, {"prompt": "hi", "provider": provider}, ctx(env))
    assert outcome.status == "ok", outcome.error


# --- webhooks ---------------------------------------------------------------------------------------------

def _webhook(url: str) -> WebhookRequest:
    return WebhookRequest(url=url, secret="whsec_test", outbox_id=1, topic="run.failed", body=b"{}", attempt=1)


def test_a_webhook_goes_to_the_vetted_address_of_a_rebinding_name(aos_env, settings_env, rebinding_dns):
    settings_env(**ONLY_127_0_0_1)
    with serve_http({"POST /hook": Reply(200)}) as legit, \
            serve_http({"POST /hook": Reply(200)}, host="127.0.0.2", port=legit.port) as victim:
        result = deliver(_webhook(f"http://hooks.rebind.test:{legit.port}/hook"), timeout_s=3)
    assert result.ok and len(legit.requests) == 1 and victim.requests == []


def test_a_webhook_to_a_name_that_rebinds_to_a_forbidden_address_is_refused(aos_env, settings_env, monkeypatch):
    settings_env(**ONLY_127_0_0_1)
    monkeypatch.setattr(socket, "getaddrinfo", RebindingDns("127.0.0.2", "127.0.0.1"))
    with serve_http({"POST /hook": Reply(200)}) as legit, \
            serve_http({"POST /hook": Reply(200)}, host="127.0.0.2", port=legit.port) as victim:
        result = deliver(_webhook(f"http://hooks.rebind.test:{legit.port}/hook"), timeout_s=3)
    assert not result.ok and result.code == "HTTP_SSRF_BLOCKED" and result.final
    assert legit.requests == [] and victim.requests == []


def test_every_client_module_builds_its_connections_on_the_guarded_transport():
    """No outbound client of AOS builds a bare httpx/httpx2 client (or lets an SDK build one)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "aos"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "egress.py" or "sdk" in path.parts or "cli" in path.parts or path.name == "devstack.py":
            continue  # the SDK and CLI talk to AOS's own API; the dev stack to its own children
        text = path.read_text()
        if re.search(r"httpx2?\.(Client|AsyncClient|HTTPTransport|get|post|request|stream)\(", text) or \
                re.search(r"(anthropic\.Anthropic|openai\.OpenAI)\((?![^)]*http_client=)", text, re.S):
            offenders.append(str(path.relative_to(root)))
    assert offenders == [], offenders
