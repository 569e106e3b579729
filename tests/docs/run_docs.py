"""Docs that run: every shell block of README.md and docs/DEPLOY.md marked runnable is run as
written, so a copy-paste that fails fails `make test`.

The marker is the fence's info string: "```sh runnable", optionally followed by the servers
the block expects on their default loopback ports, as an operator would have them:
"postgres" (PostgreSQL 15 on 127.0.0.1:5432, superuser `postgres` without a password, no
`catraca` database yet) and "redis" (redis-server on 127.0.0.1:6379, AOF on); or "continued":
the block goes on from the one before it (same servers, same shell: the chain runs as one
script, named by its first block's line), as a document's later section builds on an
earlier one. A block reads
like what an operator types on a fresh host: `catraca` is on the PATH, `build/catraca` and
`deploy/` are where they are in a checkout.

Each block runs in a temporary directory with `bash -euo pipefail`, inside a network
namespace of its own (unshare -n), so "127.0.0.1:8080" in one block is never another test's
port and whatever it started in the background dies with it. A block fails on a non-zero
exit or after BLOCK_TIMEOUT_S. Usage: run_docs.py [FILE...]; CATRACA_BIN names the binary.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
DOCS = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "docs", "DEPLOY.md")]
FENCE = re.compile(r"^```sh runnable((?: [a-z]+)*)\s*$")
FIXTURES = {"postgres", "redis", "continued"}
BLOCK_TIMEOUT_S = 600


def blocks(path):
    """(line number, fixtures, text) of each runnable block of a Markdown file."""
    found, current = [], None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if current is None:
                m = FENCE.match(line)
                if m:
                    fixtures = set(m.group(1).split())
                    unknown = fixtures - FIXTURES
                    if unknown:
                        raise SystemExit(f"{path}:{number}: unknown fixtures {unknown}")
                    current = (number, fixtures, [])
            elif line.startswith("```"):
                if "continued" in current[1]:
                    if not found:
                        raise SystemExit(f"{path}:{current[0]}: continues no earlier block")
                    first, fixtures, text = found.pop()
                    found.append((first, fixtures, text + f"\n# --- line {current[0]}\n"
                                  + "".join(current[2])))
                else:
                    found.append((current[0], current[1], "".join(current[2])))
                current = None
            else:
                current[2].append(line)
    if current is not None:
        raise SystemExit(f"{path}:{current[0]}: unterminated block")
    return found


def workspace(binary):
    """A temporary directory that looks like a checkout with catraca installed."""
    directory = tempfile.mkdtemp(prefix="catraca-docs-")
    os.makedirs(os.path.join(directory, "build"))
    os.makedirs(os.path.join(directory, "bin"))
    os.symlink(binary, os.path.join(directory, "build", "catraca"))
    os.symlink(binary, os.path.join(directory, "bin", "catraca"))
    os.symlink(os.path.join(ROOT, "deploy"), os.path.join(directory, "deploy"))
    os.chmod(directory, 0o755)  # PostgreSQL tools run as `postgres` may need to read it
    return directory


def run_inner(path, line, fixture_words, binary):
    """In the new network namespace: loopback up, fixtures, the block; the block's status."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from servers import Postgres, Redis  # noqa: E402 (only inside the namespace)
    fixtures = set(fixture_words.split(",")) - {""}
    text = dict((n, t) for n, _, t in blocks(path))[line]
    started = []
    try:
        if "redis" in fixtures:
            started.append(Redis(port=6379))
        if "postgres" in fixtures:
            pg = Postgres(port=5432)
            started.append(pg)
            subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d",
                            "postgres", "-c", "DROP DATABASE catraca"], check=True)
        directory = workspace(binary)
        env = dict(os.environ, PATH=os.path.join(directory, "bin") + os.pathsep + os.environ["PATH"],
                   HOME=directory, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        with open(os.path.join(directory, "block.sh"), "w") as f:
            f.write(text)
        started_at = time.monotonic()
        # -x: each command is echoed to stderr, so a failure shows which line failed.
        proc = subprocess.Popen(["bash", "-x", "-euo", "pipefail", "block.sh"], cwd=directory,
                                env=env, start_new_session=True)
        try:
            status = proc.wait(BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"{path}:{line}: still running after {BLOCK_TIMEOUT_S} s", flush=True)
            status = 124
        # What the block left running in the background (servers it started) stops now.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
        print(f"{os.path.relpath(path, ROOT)}:{line}: exit {status} in "
              f"{time.monotonic() - started_at:.1f} s", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
        return status
    finally:
        for server in reversed(started):
            server.close()


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--inner":
        return run_inner(sys.argv[2], int(sys.argv[3]), sys.argv[4], os.environ["CATRACA_BIN"])
    binary = os.path.abspath(os.environ.get("CATRACA_BIN", os.path.join(ROOT, "build", "catraca")))
    os.environ["CATRACA_BIN"] = binary
    paths = [os.path.abspath(p) for p in sys.argv[1:]] or DOCS
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    failures, count = [], 0
    for path in paths:
        for line, fixtures, _ in blocks(path):
            count += 1
            print(f"== {os.path.relpath(path, ROOT)}:{line} ({' '.join(sorted(fixtures)) or 'no servers'})",
                  flush=True)
            run = subprocess.run(unshare + [sys.executable, os.path.abspath(__file__), "--inner",
                                            path, str(line), ",".join(sorted(fixtures))])
            if run.returncode != 0:
                failures.append(f"{os.path.relpath(path, ROOT)}:{line}")
    if count == 0:
        print("no runnable block found", flush=True)
        return 1
    print(f"{count - len(failures)} of {count} runnable blocks passed"
          + (": failed " + ", ".join(failures) if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
