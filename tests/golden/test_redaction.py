"""Secrets in a run's args: the call gets the real value; the golden file and the API's step view do not
hold it, and a replay of the redacted recording is still identical, hash by hash."""

from __future__ import annotations

import base64
import json

from aos.services import golden
from tests.golden.helpers import PUB, run_plan
from tests.support.http_server import Reply, serve_http
from tests.web.api_helpers import auth

TOKEN, API_KEY, PASSWORD, QUERY_KEY = "tok-9f8e7d6c5b4a", "xk-1234567890", "pw-hunter2", "qk-abcdef123"


def _plan(base: str) -> dict:
    host = base.removeprefix("http://")
    return {
        "name": "with-secrets",
        "inputs": {"token": TOKEN, "city": "Paris"},
        "steps": [
            {"id": "fetch", "skill": "http.request",
             "args": {"url": f"http://{host}/weather?api_key={QUERY_KEY}&city=${{inputs.city}}",
                      "headers": {"Authorization": "Bearer ${inputs.token}", "X-Api-Key": API_KEY,
                                  "Accept": "application/json"}}},
            {"id": "login", "skill": "http.request", "args": {"url": f"http://ada:{PASSWORD}@{host}/weather"}},
            {"id": "temp", "skill": "json.transform",
             "args": {"input": {"$ref": "steps.fetch.output.json"}, "expr": "temp"}},
        ],
    }


def test_secrets_reach_the_call_but_not_the_golden_file_nor_the_api_and_replay_is_identical(
        client, tenant, worker, golden_key):
    ctx, key = tenant
    with serve_http({"/weather": Reply(json={"temp": 21})}) as srv:
        run_id = run_plan(ctx, _plan(srv.base_url))
        sent, login = srv.requests[0], srv.requests[1]
    # the calls themselves got the real values
    assert sent.headers["authorization"] == f"Bearer {TOKEN}" and sent.headers["x-api-key"] == API_KEY
    assert sent.query["api_key"] == [QUERY_KEY]
    assert base64.b64decode(login.headers["authorization"].removeprefix("Basic ")) == f"ada:{PASSWORD}".encode()

    doc = golden.record_run(ctx, run_id)
    text = json.dumps(doc)
    for secret in (TOKEN, API_KEY, PASSWORD, QUERY_KEY):
        assert secret not in text, secret
    args = doc["body"]["steps"][0]["attempts"][0]["call"]["args"]
    assert args["headers"] == {"Authorization": "***", "X-Api-Key": "***", "Accept": "application/json"}
    assert args["url"].endswith("/weather?api_key=***&city=Paris")
    assert doc["body"]["steps"][1]["attempts"][0]["call"]["args"]["url"].startswith("http://***@127.0.0.1:")
    assert doc["body"]["inputs"] == {"token": "***", "city": "Paris"}
    golden.verify(ctx, doc)

    step = client.get(f"/api/v1/runs/{run_id}/steps/fetch", headers=auth(key))
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth(key))
    assert step.status_code == 200 and run.status_code == 200
    for secret in (TOKEN, API_KEY, PASSWORD, QUERY_KEY):
        assert secret not in step.get_data(as_text=True) and secret not in run.get_data(as_text=True)
    assert step.json["attempts"][0]["args"]["headers"]["Authorization"] == "***"

    # the stub is gone: replay answers the HTTP call from the recording, and every hash matches
    report = golden.replay(ctx, doc, PUB, timeout_s=60)
    assert report["identical"] is True and report["divergence"] is None, report

