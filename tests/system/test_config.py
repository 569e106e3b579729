"""The operator's side of the command line (issue 15): secrets refused when weak, demo mode kept
to its own secret and to loopback, `catraca token`, per-command options and --help, --config
files and their precedence, --cors-origin. Real processes on loopback; standard library only
(Chromium, when installed, for one cross-origin call from a real browser)."""
import base64
import glob
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from catraca import BIN, SECRET, Client, Server, buy, create_event, token

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
for name in list(ENV):
    if name.startswith("CATRACA_") and name not in ("CATRACA_BIN", "CATRACA_SEED"):
        del ENV[name]  # the tests set what they mean
COMMANDS = ("serve", "gateway", "worker", "migrate", "audit", "token")
ADVICE = "openssl rand -base64 48"


def run(*args, env=None, timeout=30):
    done = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(ENV, **(env or {})))
    return done.returncode, done.stdout, done.stderr


def help_options(command):
    code, out, _ = run(command, "--help")
    assert code == 0, (command, code)
    return set(re.findall(r"^\s+--([a-z0-9-]+)", out, re.M))


def claims_of(jwt, secret):
    """The claims of an HS256 token after checking its signature with secret."""
    head, body, signature = jwt.split(".")
    want = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    got = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert hmac.compare_digest(want, got), "signature does not match the secret"
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


class Started:
    """A `catraca serve` started with exactly the given arguments and environment."""

    def __init__(self, *args, env=None, address=r"127\.0\.0\.1"):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN, "serve", *args], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, env=dict(ENV, **(env or {})))
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"listening on http://" + address + r":(\d+)", self.log())
            if m:
                self.port = int(m[1])
                return
            if self.proc.poll() is not None:
                raise AssertionError("catraca exited at start:\n" + self.log())
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError("catraca did not start in 30 s:\n" + self.log())

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.stderr.close()
        return code


class SecretTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="catraca-config-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_refused(self, result, *wanted):
        code, out, err = result
        self.assertEqual(code, 2, (out, err))
        for text in wanted:
            self.assertIn(text, err)

    def test_short_secrets_are_refused_with_advice(self):
        data = os.path.join(self.dir, "data")
        for secret in ("x", "change-me", "a" * 31):
            with self.subTest(secret=secret):
                for args, env in ((["serve", "--data", data, "--jwt-secret", secret], {}),
                                  (["serve", "--data", data], {"CATRACA_JWT_SECRET": secret}),
                                  (["gateway", "--redis", "redis://127.0.0.1:1", "--postgres",
                                    "host=/nonexistent", "--jwt-secret", secret], {}),
                                  (["token", "--subject", "ops"], {"CATRACA_JWT_SECRET": secret})):
                    self.assert_refused(run(*args, env=env), "shorter than 32 bytes", ADVICE)

    def test_a_secret_that_repeats_a_few_bytes_is_refused(self):
        self.assert_refused(run("token", "--subject", "a", "--jwt-secret", "ab" * 20),
                            "fewer than 8 distinct bytes", ADVICE)

    def test_the_secret_is_never_echoed(self):
        for secret_given in ("my-own-short-secret", "q" * 40):
            code, out, err = run("token", "--subject", "a", env={"CATRACA_JWT_SECRET": secret_given})
            self.assertEqual(code, 2)
            self.assertNotIn(secret_given, out + err)

    def test_every_example_secret_in_the_repository_is_refused(self):
        """README, docs/, deploy/ and scripts/ print secrets as examples; copied unchanged,
        each would be a secret anyone can read. Every literal value given to --jwt-secret,
        CATRACA_JWT_SECRET or a SECRET= line there must be refused."""
        files = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md"))
        for folder in ("deploy", "scripts"):
            files += [path for path in glob.glob(os.path.join(ROOT, folder, "**"), recursive=True)
                      if os.path.isfile(path)]
        pattern = re.compile(r"(?:--jwt-secret[ =]|CATRACA_JWT_SECRET=|\bSECRET=)"
                             r"(\"[^\"]*\"|'[^']*'|[^\s\"'`]+)")
        examples = set()
        for path in files:
            with open(path, errors="replace") as f:
                for value in pattern.findall(f.read()):
                    value = value.strip("\"'")
                    if value and not value.startswith(("$", "<", "`")):
                        examples.add(value)
        self.assertIn("replace-with-the-output-of-openssl-rand-base64-48", examples)
        for example in sorted(examples):
            with self.subTest(example=example):
                self.assert_refused(run("token", "--subject", "ops",
                                        env={"CATRACA_JWT_SECRET": example}), ADVICE)

    def test_secret_file(self):
        """One trailing newline is not part of the secret; a missing, empty or weak file is a
        usage error."""
        path = self.write("secret", SECRET + "\n")
        code, out, err = run("token", "--subject", "ops", "--role", "admin",
                             "--jwt-secret-file", path)
        self.assertEqual(code, 0, err)
        self.assertEqual(claims_of(out.strip(), SECRET)["role"], "admin")
        code, out, err = run("token", "--subject", "ops", env={"CATRACA_JWT_SECRET_FILE": path})
        self.assertEqual(code, 0, err)
        claims_of(out.strip(), SECRET)
        self.assert_refused(run("token", "--subject", "o", "--jwt-secret-file", self.dir + "/no"),
                            "cannot read the JWT secret file")
        self.assert_refused(run("token", "--subject", "o", "--jwt-secret-file",
                                self.write("empty", "\n")), "is empty")
        self.assert_refused(run("token", "--subject", "o", "--jwt-secret-file",
                                self.write("weak", "change-me\n")), "shorter than 32", ADVICE)
        self.assert_refused(run("token", "--subject", "o", "--jwt-secret-file", path,
                                "--jwt-secret", SECRET), "not both")

    def test_demo_refuses_a_supplied_secret(self):
        data = os.path.join(self.dir, "data")
        path = self.write("secret", SECRET)
        for args, env in ((["--jwt-secret", SECRET], {}), ([], {"CATRACA_JWT_SECRET": SECRET}),
                          (["--jwt-secret-file", path], {}),
                          (["--config", self.write("conf", f"CATRACA_JWT_SECRET={SECRET}\n")], {})):
            with self.subTest(args=args, env=list(env)):
                self.assert_refused(run("serve", "--demo", "--data", data, *args, env=env),
                                    "demo mode makes its own random JWT secret")

    def test_demo_stays_on_loopback_unless_told(self):
        data = os.path.join(self.dir, "data")
        for listen in ("0.0.0.0:0", "[::]:0", "10.1.2.3:8080"):
            with self.subTest(listen=listen):
                self.assert_refused(run("serve", "--demo", "--data", data, "--listen", listen),
                                    "--demo-public")
        self.assert_refused(run("serve", "--demo-public", "--data", data,
                                "--jwt-secret", SECRET), "only applies with --demo")

    def test_a_public_demo_warns_at_start_and_on_its_page(self):
        server = Started("--demo", "--demo-public", "--listen", "0.0.0.0:0", "--data",
                         os.path.join(self.dir, "data"), address=r"0\.0\.0\.0")
        try:
            self.assertRegex(server.log(), r'level=warn component=main msg="demo mode on a '
                             r'non-loopback address \(--demo-public\): anyone who reaches it can '
                             r'mint admin tokens[^"]*" listen=0\.0\.0\.0:0')
            status, page, headers = Client(server.port).request("GET", "/")
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("x-catraca-demo-public"), "true")
            self.assertIn("public-demo-warning", page)
            self.assertIn("anyone can mint admin tokens", page)
        finally:
            self.assertEqual(server.close(), 0)
        server = Started("--demo", "--listen", "127.0.0.1:0", "--data",
                         os.path.join(self.dir, "data2"))  # never the shared default port
        try:
            status, page, headers = Client(server.port).request("GET", "/")
            self.assertNotIn("x-catraca-demo-public", headers)
            self.assertNotIn("public-demo-warning", page)
        finally:
            self.assertEqual(server.close(), 0)

    def test_workers_ignore_the_secret_in_a_shared_environment(self):
        """Gateways and workers read one common.env: a worker takes no secret and says nothing
        of it, but refuses it as a flag."""
        code, out, err = run("worker", env={"CATRACA_JWT_SECRET": "short"})
        self.assertEqual(code, 2)
        self.assertIn("--redis is required", err)
        self.assertNotIn("secret", err.lower())
        self.assert_refused(run("worker", "--jwt-secret", SECRET), "not an option of this command")


class TokenTest(unittest.TestCase):
    def test_token_is_accepted_by_the_server(self):
        before = int(time.time())
        code, out, err = run("token", "--subject", "ops", "--role", "admin", "--lifetime", "15m",
                             env={"CATRACA_JWT_SECRET": SECRET})
        self.assertEqual(code, 0, err)
        admin = out.strip()
        claims = claims_of(admin, SECRET)
        self.assertEqual((claims["sub"], claims["role"]), ("ops", "admin"))
        self.assertTrue(before + 900 <= claims["exp"] <= int(time.time()) + 900, claims)
        code, out, _ = run("token", "--subject", "b1", env={"CATRACA_JWT_SECRET": SECRET})
        self.assertEqual(claims_of(out.strip(), SECRET)["role"], "buyer")  # the default
        server = Server()
        try:
            c = server.client()
            status, answer, _ = c.request("POST", "/v1/events", {
                "id": "ev-token", "categories": [{"id": "a", "capacity": 1}]}, admin)
            self.assertEqual(status, 201, answer)
            status, answer, _ = c.request("POST", "/v1/events", {
                "id": "ev-token2", "categories": [{"id": "a", "capacity": 1}]}, out.strip())
            self.assertEqual(status, 403, answer)  # a buyer's token
        finally:
            server.close()

    def test_lifetimes(self):
        for lifetime, seconds in (("3600", 3600), ("90s", 90), ("2h", 7200), ("30d", 2592000)):
            code, out, err = run("token", "--subject", "a", "--lifetime", lifetime,
                                 env={"CATRACA_JWT_SECRET": SECRET})
            self.assertEqual(code, 0, err)
            self.assertAlmostEqual(claims_of(out.strip(), SECRET)["exp"] - time.time(), seconds,
                                   delta=5)

    def test_usage_errors(self):
        env = {"CATRACA_JWT_SECRET": SECRET}
        for args in ([], ["--subject", "bad id"], ["--subject", "a" * 65],
                     ["--subject", "a", "--role", "root"], ["--subject", "a", "--lifetime", "0"],
                     ["--subject", "a", "--lifetime", "367d"], ["--subject", "a", "--lifetime", "1w"],
                     ["--subject", "a", "--lifetime", "-5"], ["--subject", "a", "--data", "x"],
                     ["--subject"]):
            with self.subTest(args=args):
                code, out, err = run("token", *args, env=env)
                self.assertEqual(code, 2, (out, err))
                self.assertEqual(out, "")
                self.assertIn("catraca token", err)


class HelpTest(unittest.TestCase):
    def test_each_command_lists_only_what_it_reads(self):
        options = {command: help_options(command) for command in COMMANDS}
        logging = {"log-format", "sentry-dsn", "sentry-environment", "sentry-spool"}
        self.assertEqual(options["migrate"], {"config", "postgres"} | logging)
        for command in ("serve", "gateway", "worker"):  # the HTTP listeners log each request too
            self.assertLessEqual(logging | {"access-log"}, options[command], command)
        self.assertEqual(options["token"], {"config", "jwt-secret", "jwt-secret-file", "subject",
                                            "role", "lifetime"})
        distributed_log = {"redis", "kafka", "kafka-topic-prefix", "log-timeout-ms"}
        self.assertEqual(options["audit"], {"config", "data", "max-purchases-per-event",
                                            "max-customers-per-event", "receipt-key",
                                            "receipt", "head", "postgres"} | distributed_log)
        for command in ("gateway", "worker"):
            self.assertLessEqual(distributed_log | {"kafka-replication-factor",
                                                    "kafka-min-insync-replicas"},
                                 options[command], command)
        self.assertIn("limits-redis", options["gateway"])
        self.assertNotIn("limits-redis", options["worker"])
        for absent in ("data", "sync", "worker-id", "lease-ms", "snapshot-every"):
            self.assertNotIn(absent, options["gateway"])
        for absent in ("jwt-secret", "jwt-secret-file", "challenge", "demo", "data",
                       "rate-customer", "cors-origin", "queue-max"):
            self.assertNotIn(absent, options["worker"])
        for absent in ("redis", "postgres", "lease-ms", "worker-id", "wait-replicas"):
            self.assertNotIn(absent, options["serve"])
        for present in ("jwt-secret-file", "cors-origin", "demo-public", "config"):
            self.assertIn(present, options["serve"])
            self.assertIn(present, options["gateway"])

    def test_an_option_is_accepted_exactly_by_the_commands_that_list_it(self):
        """A flag a command would ignore is refused, naming the command; a listed flag is read.
        A trailing unknown option makes every run stop before it starts anything. A command's
        own flags outside the option table (token's --subject, audit's --receipt and --head) are
        unknown to the others."""
        options = {command: help_options(command) for command in COMMANDS if command != "token"}
        every = set().union(*options.values()) - {"config", "receipt", "head"}
        for command, listed in options.items():
            for option in sorted(every):
                code, _, err = run(command, f"--{option}", "1", "--no-such-option=x")
                self.assertEqual(code, 2, (command, option, err))
                refused = "is not an option of this command" in err
                with self.subTest(command=command, option=option):
                    self.assertEqual(refused, option not in listed, err)

    def test_top_level_help_names_token(self):
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        self.assertIn("catraca token", out)


class LogChoiceTest(unittest.TestCase):
    """Issue 17: the distributed commands take exactly one log, --redis URL or --kafka
    BOOTSTRAP; --redis-timeout-ms and CATRACA_REDIS_TIMEOUT_MS still set --log-timeout-ms."""

    ENV = {"CATRACA_JWT_SECRET": SECRET}
    POSTGRES = ("--postgres", "host=127.0.0.1 port=1")

    def assert_refused(self, result, *wanted):
        code, out, err = result
        self.assertEqual(code, 2, (out, err))
        for text in wanted:
            self.assertIn(text, err)

    def test_both_logs_are_refused(self):
        for command in ("gateway", "worker", "audit"):
            with self.subTest(command=command):
                self.assert_refused(run(command, "--redis", "redis://127.0.0.1:1", "--kafka",
                                        "127.0.0.1:2", *self.POSTGRES, env=self.ENV),
                                    "--redis URL or --kafka BOOTSTRAP, not both")
        self.assert_refused(run("gateway", *self.POSTGRES,
                                env=dict(self.ENV, CATRACA_REDIS="redis://127.0.0.1:1",
                                         CATRACA_KAFKA="127.0.0.1:2")), "not both")

    def test_no_log_is_refused(self):
        for command in ("gateway", "worker"):
            with self.subTest(command=command):
                self.assert_refused(run(command, *self.POSTGRES, env=self.ENV),
                                    "--redis is required", "--kafka BOOTSTRAP")
        # audit without a log is the embedded audit of --data; with only --postgres, a mistake
        self.assert_refused(run("audit", *self.POSTGRES), "--redis is required")

    def test_bad_log_addresses_are_refused(self):
        self.assert_refused(run("gateway", "--redis", "redis://u:p@h:1", *self.POSTGRES,
                                env=self.ENV), "--redis must be")
        # Kafka's own settings: a Kafka build checks them, a build without Kafka refuses --kafka.
        code, out, err = run("worker", "--kafka", "127.0.0.1:9092", "--kafka-replication-factor",
                             "1", "--kafka-min-insync-replicas", "2", *self.POSTGRES)
        self.assertEqual(code, 2, (out, err))
        self.assertTrue("--kafka-min-insync-replicas must be" in err or
                        "this binary was built without Kafka" in err, err)

    def test_the_old_time_out_name_is_still_read(self):
        """The old flag and variable reach --log-timeout-ms: its bounds, its place in a file."""
        for args, env, where in ((["--redis-timeout-ms", "5"], {}, "--redis-timeout-ms"),
                                 ([], {"CATRACA_REDIS_TIMEOUT_MS": "5"},
                                  "CATRACA_REDIS_TIMEOUT_MS"),
                                 (["--log-timeout-ms", "5"], {}, "--log-timeout-ms")):
            for command in ("gateway", "worker"):
                with self.subTest(command=command, where=where):
                    self.assert_refused(run(command, "--redis", "redis://127.0.0.1:1", *args,
                                            *self.POSTGRES, env=dict(self.ENV, **env)),
                                        f"{where} must be an integer from 10 to 60000")
        # Accepted where valid: the run goes on to the next check (two logs here).
        self.assert_refused(run("worker", "--redis-timeout-ms", "500", "--redis", "r:1",
                                "--kafka", "k:2", env={"CATRACA_REDIS_TIMEOUT_MS": "700"}),
                            "not both")
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "c.env")
            with open(path, "w") as f:
                f.write("CATRACA_REDIS_TIMEOUT_MS=500\nCATRACA_LOG_TIMEOUT_MS=600\n")
            self.assert_refused(run("worker", "--config", path, "--redis", "r:1"),
                                "CATRACA_LOG_TIMEOUT_MS is given twice")

    def test_a_flag_of_another_command_is_refused(self):
        for command, flag in (("serve", "--kafka"), ("serve", "--redis"), ("serve", "--limits-redis"),
                              ("migrate", "--kafka"), ("worker", "--limits-redis"),
                              ("worker", "--wait-replicas"), ("audit", "--limits-redis"),
                              ("audit", "--kafka-replication-factor"), ("token", "--kafka"),
                              ("serve", "--log-timeout-ms"), ("serve", "--redis-timeout-ms")):
            with self.subTest(command=command, flag=flag):
                self.assert_refused(run(command, flag, "1", env=self.ENV),
                                    f"{flag} is not an option of this command")


class ConfigFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="catraca-config-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, text, name="catraca.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def minted_with(self, *args, env=None):
        """The secret `catraca token` signed with, among three candidates."""
        code, out, err = run("token", "--subject", "p", *args, env=env)
        self.assertEqual(code, 0, err)
        for name, secret in (("file", FILE_SECRET), ("env", ENV_SECRET), ("flag", FLAG_SECRET)):
            try:
                claims_of(out.strip(), secret)
                return name
            except AssertionError:
                continue
        raise AssertionError("signed with none of the three")

    def test_flags_override_the_environment_which_overrides_the_file(self):
        conf = self.write(f"# the file\n\nCATRACA_JWT_SECRET={FILE_SECRET}\n")
        env = {"CATRACA_JWT_SECRET": ENV_SECRET}
        self.assertEqual(self.minted_with("--config", conf), "file")
        self.assertEqual(self.minted_with("--config", conf, env=env), "env")
        self.assertEqual(self.minted_with("--config", conf, "--jwt-secret", FLAG_SECRET, env=env),
                         "flag")
        self.assertEqual(self.minted_with("--jwt-secret", FLAG_SECRET, "--config", conf), "flag")
        # Across the two ways to give the secret, the higher source wins as well.
        path = self.write(FLAG_SECRET + "\n", "secret")
        self.assertEqual(self.minted_with("--config", conf, "--jwt-secret-file", path, env=env),
                         "flag")
        conf_file = self.write(f"CATRACA_JWT_SECRET_FILE={path}\n", "file.conf")
        self.assertEqual(self.minted_with("--config", conf_file, env=env), "env")

    def test_quotes_comments_and_other_commands_keys(self):
        """systemd EnvironmentFile= syntax: quotes around a value are dropped; a key of another
        command is ignored (one file serves gateways and workers)."""
        conf = self.write(f'  # indented comment\nCATRACA_JWT_SECRET="{FILE_SECRET}"\r\n'
                          "CATRACA_WORKER_ID=w1\nCATRACA_LEASE_MS=not-a-number-but-not-read\n")
        self.assertEqual(self.minted_with("--config", conf), "file")

    def test_a_config_file_starts_a_server(self):
        data = os.path.join(self.dir, "data")
        conf = self.write(f"CATRACA_LISTEN=127.0.0.1:0\nCATRACA_DATA={data}\n"
                          f"CATRACA_JWT_SECRET={FILE_SECRET}\nCATRACA_MAX_EVENTS=1\n"
                          "CATRACA_RATE_CUSTOMER=0\n")
        server = Started("--config", conf)
        try:
            c = Client(server.port)
            for n, want in ((1, 201), (2, 409)):  # --max-events 1 came from the file
                status, answer, _ = c.request("POST", "/v1/events", {
                    "id": f"ev-file{n}", "categories": [{"id": "a", "capacity": 1}]},
                    token("ops", "admin", secret=FILE_SECRET))
                self.assertEqual(status, want, answer)
            self.assertTrue(os.path.exists(os.path.join(data, "catraca.db")))
        finally:
            self.assertEqual(server.close(), 0)

    def test_bad_files_are_usage_errors(self):
        cases = [
            (None, "cannot read --config"),
            ("CATRACA_JWT_SECRET\n", ":1: expected KEY=VALUE"),
            (f"CATRACA_JWT_SECRET={FILE_SECRET}\nCATRACA_NOPE=1\n", ":2: unknown key \"CATRACA_NOPE\""),
            (f"CATRACA_JWT_SECRET={FILE_SECRET}\njwt-secret=x\n", ":2: unknown key"),
            (f"CATRACA_JWT_SECRET={FILE_SECRET}\nCATRACA_JWT_SECRET={FILE_SECRET}\n",
             ":2: CATRACA_JWT_SECRET is given twice"),
            ("CATRACA_JWT_SECRET=" + "s" * 300 + "\n", ":1: CATRACA_JWT_SECRET is longer than 255"),
            ("# fine\nCATRACA_JWT_SECRET=" + "x" * 2000 + "\n", ":2: longer than 1024 bytes"),
            ("CATRACA_JWT_SECRET=a\x00b\n", "NUL"),
            ("#" * 70000, "larger than 64 KiB"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                path = self.write(text) if text is not None else os.path.join(self.dir, "absent")
                code, out, err = run("token", "--subject", "p", "--config", path)
                self.assertEqual(code, 2, (out, err))
                self.assertIn(message, err)
                if text is not None and ":" in message:
                    self.assertIn(path + message.split(" ")[0] if message.startswith(":") else path,
                                  err)
        conf = self.write("CATRACA_THREADS=many\n")
        code, _, err = run("serve", "--config", conf, "--jwt-secret", FLAG_SECRET)
        self.assertEqual(code, 2)
        self.assertIn(f"{conf}:1: CATRACA_THREADS must be an integer from 1 to 64", err)
        code, _, err = run("serve", "--config")
        self.assertEqual(code, 2)
        self.assertIn("--config needs a value", err)


FILE_SECRET = "file-secret-for-the-config-tests-0123456789"
ENV_SECRET = "environment-secret-for-the-config-tests-0123"
FLAG_SECRET = "flag-secret-for-the-config-tests-0123456789"


class ListenTest(unittest.TestCase):
    @unittest.skipUnless(socket.has_ipv6, "no IPv6")
    def test_ipv6_loopback(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("::1 is not configured here")
        data = tempfile.mkdtemp(prefix="catraca-config-")
        server = Started("--listen", "[::1]:0", "--data", data, "--jwt-secret", SECRET,
                         address=r"\[::1\]")
        try:
            conn = http.client.HTTPConnection("::1", server.port, timeout=10)
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
            conn.close()
        finally:
            self.assertEqual(server.close(), 0)
            shutil.rmtree(data, ignore_errors=True)


SHOP = "https://shop.example"
LOCAL = "http://localhost:3000"


class CorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--cors-origin", f"{SHOP},{LOCAL}")
        cls.c = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.server.close() == 0

    def preflight(self, path, origin, method="POST",
                  request_headers="authorization,content-type,idempotency-key,x-challenge"):
        headers = {"Origin": origin, "Access-Control-Request-Method": method}
        if request_headers:
            headers["Access-Control-Request-Headers"] = request_headers
        return self.c.request("OPTIONS", path, headers=headers)

    def assert_no_cors(self, headers):
        for name in headers:
            self.assertFalse(name.startswith("access-control-"), headers)

    def test_preflight_from_a_listed_origin(self):
        for origin in (SHOP, LOCAL):
            with self.subTest(origin=origin):
                status, body, headers = self.preflight("/v1/events", origin)
                self.assertEqual(status, 204, body)
                self.assertEqual(headers["access-control-allow-origin"], origin)
                methods = {m.strip() for m in headers["access-control-allow-methods"].split(",")}
                self.assertEqual(methods, {"GET", "HEAD", "POST", "OPTIONS"})
                allowed = {h.strip().lower()
                           for h in headers["access-control-allow-headers"].split(",")}
                self.assertLessEqual({"authorization", "idempotency-key", "x-challenge",
                                      "content-type"}, allowed)
                self.assertIn("Origin", headers["vary"])
                self.assertNotIn("access-control-allow-credentials", headers)
                self.assertNotIn("content-length", headers)  # 204
                self.assertTrue(int(headers["access-control-max-age"]) > 0)
        status, _, headers = self.preflight("/v1/purchases/p-1/confirm", SHOP)
        self.assertEqual(status, 204)
        self.assertEqual(headers["access-control-allow-methods"], "POST, OPTIONS")

    def test_other_origins_get_no_cors_headers(self):
        for origin in ("https://evil.example", "https://shop.example.evil", "null",
                       "https://SHOP.example", SHOP + "/", "http://shop.example", "*"):
            with self.subTest(origin=origin):
                status, body, headers = self.preflight("/v1/events", origin)
                self.assertEqual(status, 405, body)  # the table's answer to OPTIONS
                self.assert_no_cors(headers)
                self.assertIn("Origin", headers["vary"])
                status, _, headers = self.c.request("GET", "/v1/events", headers={"Origin": origin})
                self.assertEqual(status, 200)
                self.assert_no_cors(headers)

    def test_actual_requests_carry_the_origin(self):
        create_event(self.c, "ev-cors", (5,))
        status, answer, headers = self.c.request("POST", "/v1/events/ev-cors/purchases",
                                                 {"category": "cat0", "quantity": 1},
                                                 token("cors1"), headers={"Origin": SHOP})
        self.assertEqual(status, 202, answer)
        self.assertEqual(headers["access-control-allow-origin"], SHOP)
        self.assertIn("Retry-After", headers["access-control-expose-headers"])
        self.assertIn("Origin", headers["vary"])
        # Errors too: a page must be able to read why it was refused.
        status, answer, headers = self.c.request("POST", "/v1/events", {}, None,
                                                 headers={"Origin": SHOP})
        self.assertEqual(status, 401)
        self.assertEqual(headers["access-control-allow-origin"], SHOP)
        # And the purchase's event stream (parked, answered from another thread).
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            sock.sendall(f"GET /v1/purchases/{self.purchase_id()}/events HTTP/1.1\r\n"
                         f"Host: x\r\nOrigin: {LOCAL}\r\nAuthorization: Bearer {token('cors2')}"
                         "\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        finally:
            sock.close()
        self.assertIn(b"text/event-stream", head)
        self.assertIn(f"Access-Control-Allow-Origin: {LOCAL}\r\n".encode(), head)
        self.assertIn(b"Vary: Origin\r\n", head)

    def purchase_id(self):
        create_event(self.c, "ev-cors-stream", (5,))
        status, answer, _ = buy(self.c, "ev-cors-stream", "cors2")
        self.assertEqual(status, 202, answer)
        return answer["id"]

    def test_preflight_of_an_unknown_path_is_404(self):
        status, answer, headers = self.preflight("/v1/nowhere", SHOP)
        self.assertEqual(status, 404, answer)

    def test_without_cors_origin_nothing_changes(self):
        server = Server()
        try:
            status, _, headers = server.client().request(
                "OPTIONS", "/v1/events", headers={"Origin": SHOP,
                                                  "Access-Control-Request-Method": "POST"})
            self.assertEqual(status, 405)
            self.assert_no_cors(headers)
            self.assertNotIn("vary", headers)
        finally:
            server.close()

    def test_bad_origin_lists_are_refused(self):
        for value in ("*", "https://shop.example/", "https://Shop.example", "null",
                      "shop.example", "https://a.example,,https://b.example",
                      "https://a.example, https://b.example", "ftp://a.example",
                      "https://a.example/path"):
            with self.subTest(value=value):
                code, _, err = run("serve", "--cors-origin", value, "--jwt-secret", SECRET)
                self.assertEqual(code, 2, err)
                self.assertIn("--cors-origin must list exact origins", err)

    @unittest.skipUnless(shutil.which("chromium"), "Chromium is not installed")
    def test_chromium_calls_from_a_listed_origin_and_is_refused_from_another(self):
        """A page on another origin calls the API with a bearer token and an Idempotency-Key (a
        preflighted request): Chromium lets it read the answer only when its origin is listed."""
        site = page_server()
        origin = f"http://localhost:{site.server_address[1]}"
        listing = Server("--cors-origin", f"{SHOP},{origin}")
        try:
            results = []
            for server in (listing, self.server):  # self.server does not list this origin
                create_event(server.client(), "ev-browser", (5,))
                site.page = buyer_page(server.port, "browser1")
                results.append(chromium_text(origin + "/"))
        finally:
            site.shutdown()
            listing.close()
        self.assertEqual(results, ["status:queued", "blocked"])


def buyer_page(api_port, customer):
    """A page whose script buys a ticket from the API on another origin and shows the outcome."""
    return ("<!doctype html><pre id=out>pending</pre><script>"
            f"fetch('http://127.0.0.1:{api_port}/v1/events/ev-browser/purchases',"
            f"{{method:'POST',headers:{{'Authorization':'Bearer {token(customer)}',"
            "'Content-Type':'application/json','Idempotency-Key':'k-browser'},"
            "body:JSON.stringify({category:'cat0',quantity:1})})"
            ".then(r=>r.json()).then(j=>{document.getElementById('out').textContent="
            "'status:'+j.status},e=>{document.getElementById('out').textContent='blocked'})"
            "</script>").encode()


def page_server():
    """A loopback HTTP server answering every GET with its `page` attribute."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(self.server.page)))
            self.end_headers()
            self.wfile.write(self.server.page)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    site.page = b""
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site


def chromium_text(url):
    """What headless Chromium shows in the page's <pre id=out> once its script ran."""
    profile = tempfile.mkdtemp(prefix="catraca-chromium-")
    try:
        done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                               "--no-first-run", f"--user-data-dir={profile}",
                               "--virtual-time-budget=10000", "--dump-dom", url],
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    m = re.search(r'<pre id="out">([^<]*)</pre>', done.stdout)
    assert m, done.stdout[-2000:] + done.stderr[-2000:]
    return m[1]


if __name__ == "__main__":
    unittest.main()
