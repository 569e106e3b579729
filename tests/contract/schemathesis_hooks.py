"""Schemathesis hooks for run_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

- Real data: a path's {event} or purchase {id} that Schemathesis generated valid is swapped,
  most of the time, for one the run made beforehand (CATRACA_ST_DATA), so the operations on
  them answer 200/409 and not only 404. The choice hangs on the generated value, so a seed
  still reproduces a run; a value generated invalid on purpose is never touched; an {event}
  of "." or ".." is always swapped (no URL can carry it, see _pick).
- Long-polls: ?wait=N is cut to 1 second, so a run spends its time on requests, not waits.
- Failures: those the contract cannot express in a schema (INEXPRESSIBLE below) and those
  KNOWN_SERVER_MISMATCHES lists are dropped from the run and written to CATRACA_ST_KNOWN,
  which run_schemathesis.py prints.
"""
import json
import os
import re
import sys
import zlib

import schemathesis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "system"))
from known_mismatches import KNOWN_SERVER_MISMATCHES  # noqa: E402

with open(os.environ["CATRACA_ST_DATA"]) as f:
    DATA = json.load(f)

ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PURCHASE_ID = re.compile(r"p_[0-9A-F][0-9A-HJKMNP-TV-Z]{12}")


def _pick(value, real):
    """One of the real values, or (one time in len+1) the generated one.

    "." and ".." are ids by API.md's pattern, but a URL cannot name them: HTTP clients drop
    dot segments (RFC 3986, 5.2.4), so /v1/events/. is sent as /v1/events/. They always get
    a real value instead.
    """
    choices = list(real)
    if value not in (".", ".."):
        choices.append(value)
    return choices[zlib.crc32(str(value).encode()) % len(choices)]


@schemathesis.hook
def before_call(context, case, kwargs):
    parameters = case.path_parameters
    if parameters:
        event = parameters.get("event")
        if isinstance(event, str) and ID.fullmatch(event):
            parameters["event"] = _pick(event, DATA["events"])
        purchase = parameters.get("id")
        if isinstance(purchase, str) and PURCHASE_ID.fullmatch(purchase):
            parameters["id"] = _pick(purchase, DATA["purchases"].values())
    query = case.query
    if query and isinstance(query.get("wait"), int) and query["wait"] > 1:
        query["wait"] = 1


def _body_text(response):
    try:
        return response.text or ""
    except Exception:  # noqa: BLE001 - a body that is not text matches no message
        return ""


def _rejected(label, status, message):
    """A schema-valid request refused for a rule openapi.yaml states in words."""
    def matches(failure, case, response):
        return (type(failure).__name__ == "RejectedPositiveData"
                and f"{case.method.upper()} {case.operation.path}" == label
                and response.status_code == status
                and message in _body_text(response))
    return matches


def _rejected_query(path, messages):
    """Like _rejected, for a GET and its HEAD (which answers the same status without a body)."""
    def matches(failure, case, response):
        return (type(failure).__name__ == "RejectedPositiveData"
                and case.operation.path == path and response.status_code == 400
                and (case.method.upper() == "HEAD"
                     or any(m in _body_text(response) for m in messages)))
    return matches


def _has_refused_character(value):
    """A C0 control, DEL or a lone UTF-16 surrogate in any string or key of a JSON value."""
    if isinstance(value, str):
        return any(ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, dict):
        return any(_has_refused_character(k) or _has_refused_character(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_refused_character(v) for v in value)
    return False


def _refused_character_in_body(failure, case, response):
    return (type(failure).__name__ == "RejectedPositiveData" and response.status_code == 400
            and _has_refused_character(case.body))


def _unknown_method(failure, case, response):
    """API.md: a method the server does not know (QUERY, ...) is 501, on any path."""
    return (response.status_code == 501 and type(failure).__name__ in ("ServerError",
                                                                        "UnsupportedMethodResponse"))


def _absent_mode_route(failure, case, response):
    """/v1/challenge exists only with --challenge on: without it, 404 whatever the method."""
    return (type(failure).__name__ == "UnsupportedMethodResponse" and response.status_code == 404
            and case.operation.path == "/v1/challenge")


def _absent_demo_route(failure, case, response):
    """/v1/demo/* exists only with --demo (the runs here use a real secret, which a demo
    refuses): without it, 404 before any token is read."""
    return response.status_code == 404 and case.operation.path.startswith("/v1/demo/")


# Rules no JSON schema can hold, each stated in openapi.yaml's words (or API.md's), and
# expectations of Schemathesis the contract answers otherwise. Permanent.
INEXPRESSIBLE = {
    "quantity over the event's per_customer_limit (400)":
        _rejected("POST /v1/events/{event}/purchases", 400, "above the event's per_customer_limit"),
    "category ids not distinct (400)":
        _rejected("POST /v1/events", 400, "category ids must be distinct"),
    "a pre-queue window starting before 1970 (400)":
        _rejected("POST /v1/events", 400, "must start after 1970-01-01T00:00:00Z"),
    "prequeue_seconds without opens_at (400)":
        _rejected("POST /v1/events", 400, "prequeue_seconds needs opens_at"),
    "Idempotency-Key reused with another body (422)":
        _rejected("POST /v1/events/{event}/purchases", 422, "Idempotency-Key was used with another"),
    # The members a schema leaves open (additionalProperties) are still read strictly.
    "a control character or lone surrogate anywhere in a JSON body (400)": _refused_character_in_body,
    "a method the server does not know (501)": _unknown_method,
    "log inclusion: exactly one of seq and leaf, a tree_size covering the entry (400)":
        _rejected_query("/v1/events/{event}/log/inclusion", ["give either seq", "tree_size must"]),
    "log consistency: 1 <= first <= second <= the log's size (400)":
        _rejected_query("/v1/events/{event}/log/consistency", ["need 1 <= first"]),
    "/v1/challenge without --challenge on (404 for every method)": _absent_mode_route,
    "/v1/demo/* without --demo (404 before the token is read)": _absent_demo_route,
}


def _record(kind, key, failure, case, response):
    path = os.environ.get("CATRACA_ST_KNOWN")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"kind": kind, "key": key, "failure": type(failure).__name__,
                            "operation": f"{case.method.upper()} {case.operation.path}",
                            "status": response.status_code}) + "\n")


@schemathesis.hook
def filter_failure(context, failure, case, response):
    for key, matches in INEXPRESSIBLE.items():
        if matches(failure, case, response):
            _record("inexpressible", key, failure, case, response)
            return False
    for key, entry in KNOWN_SERVER_MISMATCHES.items():
        matches = entry.get("schemathesis")
        if matches is not None and matches(failure, case, response):
            _record("known", key, failure, case, response)
            return False
    return True
