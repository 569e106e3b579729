"""Where `catraca serve` and the contract disagree today: the checks expected to fail.

Each entry names one disagreement: the request, what API.md or openapi.yaml expects, what the
server answers. Three places read this list:
  - test_contract.py: a test marked @known_mismatch(KEY) is an expected failure while KEY is
    listed; once the server is fixed it passes, unittest reports an "unexpected success" and the
    run fails until the entry is removed here;
  - catraca.Client behind Prism (CATRACA_VIA_PRISM=1): a violation matching an entry's `prism`
    predicate (method, path, status, violation, request body) is counted as known instead of
    failing the test, which then fails on its own assertion;
  - tests/contract/schemathesis_hooks.py: a Schemathesis failure matching an entry's
    `schemathesis` predicate is dropped (and listed as known at the end of the run).

kind "api.md": the server breaks API.md (a bug to fix in src/).
kind "announced": openapi.yaml already says what an announced change will do; the server does
not do it yet.

Remove an entry in the change that fixes the server; add none without a failing check.
"""
import re


def _has_nul(value):
    """True when a request body holds a U+0000 anywhere (keys or strings)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _failure_type(failure):
    return type(failure).__name__


def _label(case):
    return f"{case.method.upper()} {case.operation.path}"


def _body_text(response):
    try:
        return response.text or ""
    except Exception:  # noqa: BLE001 - a body that is not text matches no message
        return ""


KNOWN_SERVER_MISMATCHES = {
    "demo-token-nul": {
        "kind": "api.md",
        "request": "POST /v1/demo/token {\"customer\":\"c\\u0000 x\"} (catraca serve --demo)",
        "expected": "400 invalid_request: \"c\\u0000 x\" is not an id [A-Za-z0-9._-] (and API.md: a "
                    "control character in any string is 400, never truncated)",
        "actual": "200 with a token for the customer \"c\": the demo handler reads its body with "
                  "cJSON directly, not with the strict reader of the other bodies, and the C "
                  "string stops at the NUL",
        "schemathesis": lambda failure, case, response: _has_nul(case.body)
        and _label(case) == "POST /v1/demo/token",
        "prism": lambda method, path, status, violation, body: _has_nul(body)
        and path == "/v1/demo/token" and status < 400,
    },
    "demo-admin-page": {
        "kind": "api.md",
        "request": "GET /admin on catraca serve --demo",
        "expected": "200 with the admin page (API.md: --demo serves the buyer and admin pages at / "
                    "and /admin); then openapi.yaml must describe /admin too",
        "actual": "404 not_found \"no such path\" (the web pages have an open issue of their own)",
    },
}


def is_known(key):
    return key in KNOWN_SERVER_MISMATCHES
