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
kind "announced": openapi.yaml already says what an announced change will do (issue 13); the
server does not do it yet.

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
    "sse-final-stream-stays-open": {
        "kind": "api.md",
        "request": "GET /v1/purchases/{id}/events on a purchase already confirmed, expired, "
                   "cancelled or rejected",
        "expected": "one `data:` event with the purchase, then the stream ends (API.md: the stream "
                    "ends after a final status)",
        "actual": "the one event, then the stream stays open until its 600 s limit "
                  "(handle_purchase_events parks every stream, final or not)",
    },
    "nul-in-strings": {
        "kind": "api.md",
        "request": "a JSON body whose string holds \\u0000, e.g. POST /v1/events "
                   "{\"id\":\"nul-1\",\"categories\":[{\"id\":\"a\\u0000b\",\"capacity\":1}]}, "
                   "POST /v1/events/{event}/purchases {\"category\":\"cat0\\u0000x\",...}, "
                   "POST /v1/demo/token {\"customer\":\"c\\u0000 x\"}",
        "expected": "400 invalid_request: \"a\\u0000b\" is not an id [A-Za-z0-9._-]; a name is "
                    "kept whole or refused",
        "actual": "201/202/200: cJSON's C strings stop at the NUL, so the id, category, customer "
                  "or name is cut to its first part (\"a\", \"cat0\", \"c\"); the same event id "
                  "with the name \"a\\u0000b\" then \"a\\u0000c\" answers 200, not 409",
        "schemathesis": lambda failure, case, response: _has_nul(case.body)
        and _failure_type(failure) in ("AcceptedNegativeData", "RejectedPositiveData"),
        "prism": lambda method, path, status, violation, body: _has_nul(body)
        and violation.get("code") == "pattern" and status < 400,
    },
    "http-errors-in-html": {
        "kind": "api.md",
        "request": "GET /healthz with a 100 000-byte header (over --max-header-bytes + 8 KiB); a "
                   "header line without a colon; a body in broken chunked encoding",
        "expected": "431 / 400 with {\"error\":{\"code\":\"invalid_request\",...}} (API.md: every "
                    "error is JSON)",
        "actual": "431 / 400 from libmicrohttpd itself with an HTML body (<html><head><title>Request "
                  "too big / Request malformed...); between the limit and the limit + 8 KiB the JSON "
                  "431 is right",
    },
    "path-decoded-before-routing": {
        "kind": "api.md",
        "request": "GET /v1/events/a%2Fstate; GET /v1/events/%00; POST "
                   "/v1/events%00/rir-2026-d1/purchases with an event's body (admin token)",
        "expected": "404 not_found: \"a/state\" and \"\\u0000\" are not event ids, and the last path "
                    "is no path of the API",
        "actual": "405; 200 with the list of events; 201, an event created: the path is routed "
                  "after percent-decoding, so %2F splits a segment and %00 ends the path",
        "schemathesis": lambda failure, case, response: any(
            isinstance(v, str) and ("/" in v or "\x00" in v)
            for v in (case.path_parameters or {}).values()),
        "prism": lambda method, path, status, violation, body: re.search(r"%(00|2f)", path, re.I)
        is not None,
    },
    "demo-admin-page": {
        "kind": "api.md",
        "request": "GET /admin on catraca serve --demo",
        "expected": "200 with the admin page (API.md: --demo serves the buyer and admin pages at / "
                    "and /admin); then openapi.yaml must describe /admin too",
        "actual": "404 not_found \"no such path\" (the web pages have an open issue of their own)",
    },
    "head-wherever-get": {
        "kind": "announced",
        "request": "HEAD on any path that has GET, e.g. HEAD /healthz, HEAD /v1/events",
        "expected": "the GET's status and headers without a body",
        "actual": "404 on /, /healthz, /readyz, /metrics, /v1/challenge; 405 on the /v1 paths",
        "schemathesis": lambda failure, case, response: case.method.upper() == "HEAD"
        and response.status_code in (404, 405),
    },
    "405-allow": {
        "kind": "announced",
        "request": "a method a path does not list, e.g. PUT /v1/events, TRACE /healthz",
        "expected": "405 with `Allow: GET, HEAD, POST` (the methods of openapi.yaml)",
        "actual": "405 without Allow on the /v1 paths; 404 on /, /healthz, /readyz, /metrics, "
                  "/v1/challenge and /v1/demo/token",
        "schemathesis": lambda failure, case, response: _failure_type(failure)
        == "UnsupportedMethodResponse",
    },
    "415-content-type": {
        "kind": "announced",
        "request": "POST /v1/events/{event}/purchases with Content-Type: text/plain (or none) and "
                   "a JSON body",
        "expected": "415 unsupported_media_type",
        "actual": "the body is read as JSON whatever its Content-Type (202)",
        "prism": lambda method, path, status, violation, body: violation.get("code") == 415
        and status < 400,
    },
    "events-max-conflict": {
        "kind": "announced",
        "request": "POST /v1/events with a new id when --max-events events exist",
        "expected": "409 conflict",
        "actual": "503 unavailable \"the maximum number of events is reached\"",
    },
    "names-count-characters": {
        "kind": "announced",
        "request": "POST /v1/events with a name (or a category name) of 128 characters that are "
                   "not ASCII, e.g. \"é\" x 128 (256 bytes)",
        "expected": "201: a name is at most 128 characters",
        "actual": "400 \"name must be a string of at most 128 bytes\"",
        "schemathesis": lambda failure, case, response: _failure_type(failure)
        == "RejectedPositiveData" and _label(case) == "POST /v1/events"
        and re.search(r"name must be a string of at most 128 bytes", _body_text(response))
        is not None,
    },
}


def is_known(key):
    return key in KNOWN_SERVER_MISMATCHES
