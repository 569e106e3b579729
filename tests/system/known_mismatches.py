"""Where `catraca serve` and the contract disagree today: the checks expected to fail.

Each entry names one disagreement: the request, what API.md or openapi.yaml expects, what the
server answers. Three places read this list:
  - test_contract.py: a test marked @known_mismatch(KEY) is an expected failure while KEY is
    listed; once the server is fixed it passes, unittest reports an "unexpected success" and the
    run fails until the entry is removed here;
  - catraca.Client behind Prism (CATRACA_VIA_PRISM=1): a violation matching an entry's
    optional `prism` predicate, f(method, path, status, violation, request_body), is counted as
    known instead of failing the test, which then fails on its own assertion;
  - tests/contract/schemathesis_hooks.py: a Schemathesis failure matching an entry's optional
    `schemathesis` predicate, f(failure, case, response), is dropped (and listed as known at the
    end of the run).

kind "api.md": the server breaks API.md (a bug to fix in src/).
kind "announced": openapi.yaml already says what an announced change will do; the server does
not do it yet.

Remove an entry in the change that fixes the server; add none without a failing check.
"""
KNOWN_SERVER_MISMATCHES = {
}


def is_known(key):
    return key in KNOWN_SERVER_MISMATCHES
