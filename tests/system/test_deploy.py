"""The files in deploy/ against the real binary: a Grafana dashboard that queries only metrics
catraca exposes, systemd units that systemd accepts and that start real subcommands, environment
examples that name only variables catraca knows, and Redis / PostgreSQL settings those servers
accept. Standard library only; the external tools (systemd-analyze, promtool, redis-server,
postgres) are used when installed and their checks skipped otherwise."""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
os.environ.setdefault("CATRACA_BIN", BIN)  # for the harness imported below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import catraca  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
DASHBOARD = os.path.join(DEPLOY, "grafana", "catraca.json")
UNITS = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))
UNIT = {os.path.basename(path): path for path in UNITS}
EXAMPLES = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.env.example")))
REDIS_CONF = os.path.join(DEPLOY, "redis", "catraca.conf")
POSTGRES_CONF = os.path.join(DEPLOY, "postgresql", "catraca.conf")

# Metrics only `catraca gateway` / `catraca worker` serve (leases, publishing to gateways) or
# whose samples need a distributed deployment to mean anything: the embedded server cannot
# show them all, so for these the binary must at least contain the name.
DISTRIBUTED_ONLY = {
    "catraca_lease_acquired_total", "catraca_lease_lost_total", "catraca_lease_live_workers",
    "catraca_lease_round_errors_total", "catraca_worker_partitions_held",
    "catraca_worker_commit_epoch_conflicts_total", "catraca_commit_publish_failures_total",
    "catraca_worker_log_lag_entries",
}
# Labels Prometheus adds to every scraped sample.
SCRAPE_LABELS = {"instance", "job"}
METRIC_NAME = re.compile(r"\bcatraca_[a-z0-9_]+")
# What systemd-analyze may say about a unit that only an installation can fix.
MISSING_ON_THIS_MACHINE = re.compile(
    r"/etc/catraca/\S*: (No such file|not found)|(resolve|look ?up|unknown|no such) user", re.I)
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


COMMANDS = ("serve", "gateway", "worker", "migrate", "audit", "token")


def all_help():
    """The --help of every command: each lists only the options it reads."""
    return "".join(subprocess.run([BIN, command, "--help"], capture_output=True, text=True,
                                  timeout=30).stdout for command in COMMANDS)


def known_variables():
    return set(re.findall(r"\bCATRACA_[A-Z0-9_]+\b", all_help()))


def option_default(variable):
    """The default `catraca COMMAND --help` prints for an option, as an integer."""
    line = next(line for line in all_help().splitlines() if variable in line)
    return int(re.search(r"\(default (\d+)", line).group(1))


def dashboard_panels(panels):
    """Every panel, the ones inside collapsed rows too."""
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_queries(dashboard):
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    queries = []
    for panel in dashboard_panels(dashboard["panels"]):
        queries += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def concrete(expr):
    """A dashboard expression with Grafana's variables replaced, as Prometheus would get it."""
    expr = re.sub(r"label_values\((\w+),\s*(\w+)\)", r"group by (\2) (\1)", expr)
    return expr.replace("$__rate_interval", "1m").replace("$event", ".*")


def labels_used(expr):
    """Label names in selectors ({a="x", b=~"y"}) and in by / without / on / ignoring lists."""
    names = set()
    for matchers in re.findall(r"\{([^{}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    for call in re.findall(r"label_values\(\w+,\s*(\w+)\)", expr):
        names.add(call)
    return names - PROMQL_KEYWORDS


def parse_exposition(text):
    """(sample names, {family: type}, label names) of a Prometheus text exposition."""
    samples, types, labels = set(), {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            if m:
                samples.add(m.group(1))
                labels |= set(re.findall(r'(\w+)="', m.group(3) or ""))
    return samples, types, labels


def exposes(name, samples, types):
    """Whether a name queried by the dashboard is one of the exposition's series (a family
    without samples yet counts, except a histogram's bare name, which is no series)."""
    if name in samples or types.get(name) not in (None, "histogram", "summary"):
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base != name and types.get(base) in ("histogram", "summary")


def in_binary(name, blob):
    """The name in the binary, not as a prefix of a longer one."""
    for m in re.finditer(re.escape(name.encode()), blob):
        after = blob[m.end():m.end() + 1]
        if not re.match(rb"[a-z0-9_]", after):
            return True
    return False


def parse_unit(text, path):
    """A systemd unit as {section: [(key, value)]} (keys may repeat, as systemd allows)."""
    sections, current = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
        elif current is not None and "=" in stripped and not line[0].isspace():
            key, value = stripped.split("=", 1)
            current.append((key.strip(), value.strip()))
        else:
            raise AssertionError(f"{path}:{number}: not an INI line: {line!r}")
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dashboard = json.load(f)
        cls.queries = dashboard_queries(cls.dashboard)

    def test_panels_have_a_datasource_and_a_query(self):
        self.assertGreaterEqual(self.dashboard["schemaVersion"], 38)
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        ids = []
        for panel in dashboard_panels(self.dashboard["panels"]):
            ids.append(panel["id"])
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            if panel["type"] == "row":
                continue
            self.assertIn("datasource", panel, panel["title"])
            self.assertIn("${datasource}", json.dumps(panel["datasource"]), panel["title"])
            self.assertTrue(panel.get("targets"), f"{panel['title']}: no query")
            for target in panel["targets"]:
                self.assertTrue(target.get("expr"), f"{panel['title']}: empty query")
                self.assertIn("${datasource}", json.dumps(target.get("datasource")),
                              panel["title"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")

    def test_every_metric_is_exposed(self):
        """Each catraca_* name the dashboard queries is in the /metrics of a real `catraca
        serve` (with an event and a purchase, so labelled series exist), or, for the names only
        the distributed processes serve, in the binary; each label it uses is one catraca sets."""
        names = set()
        for query in self.queries:
            names |= set(METRIC_NAME.findall(query))
        self.assertGreater(len(names), 20, names)
        server = catraca.Server()
        try:
            client = server.client()
            catraca.create_event(client, "deploy", capacities=(5, 3))
            status, answer, _ = catraca.buy(client, "deploy", "buyer-1")
            self.assertEqual(status, 202, answer)
            time.sleep(1.2)  # the worker decides it and measures its log lag
            status, text, _ = client.request("GET", "/metrics")
            self.assertEqual(status, 200, text)
            client.close()
        finally:
            server.close()
        samples, types, labels = parse_exposition(text)
        with open(BIN, "rb") as f:
            blob = f.read()
        for name in sorted(names):
            if name in DISTRIBUTED_ONLY:
                self.assertTrue(in_binary(name, blob), f"{name} is not in {BIN}")
            else:
                self.assertTrue(exposes(name, samples, types),
                                f"the dashboard queries {name}, which catraca serve's /metrics "
                                "does not expose")
        known_labels = labels | SCRAPE_LABELS | {"le"}
        for query in self.queries:
            for label in labels_used(query):
                self.assertIn(label, known_labels, f"label {label} in {query}")

    @unittest.skipIf(shutil.which("promtool") is None, "promtool not installed")
    def test_queries_are_valid_promql(self):
        """promtool parses each query as a recording rule (Grafana variables substituted)."""
        directory = tempfile.mkdtemp(prefix="catraca-promql-")
        try:
            path = os.path.join(directory, "rules.json")  # JSON is YAML
            rules = [{"record": f"catraca:dashboard:{i}", "expr": concrete(q)}
                     for i, q in enumerate(self.queries)]
            with open(path, "w") as f:
                json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            run = subprocess.run(["promtool", "check", "rules", path], capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


class SystemdTest(unittest.TestCase):
    def test_units_run_real_subcommands(self):
        self.assertEqual(sorted(UNIT), ["catraca-gateway@.service", "catraca-migrate.service",
                                        "catraca-worker@.service"])
        for path in UNITS:
            unit = parse_unit(read(path), path)
            for section in ("Unit", "Service", "Install"):
                self.assertIn(section, unit, path)
            service = unit["Service"]
            (exec_start,) = values(service, "ExecStart")
            argv = shlex.split(exec_start)
            self.assertEqual(argv[0], "/usr/local/bin/catraca", path)
            self.assertEqual(len(argv), 2, f"{path}: options belong in the env files")
            self.assertIn(argv[1], ("gateway", "worker", "migrate"), path)
            run = subprocess.run([BIN, argv[1], "--help"], capture_output=True, timeout=30)
            self.assertEqual(run.returncode, 0, f"{path}: catraca {argv[1]} is not a command")
            self.assertEqual(values(service, "EnvironmentFile")[0], "/etc/catraca/common.env")
            for key, value in (("DynamicUser", "yes"), ("NoNewPrivileges", "yes"),
                               ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                               ("PrivateTmp", "yes")):
                self.assertEqual(values(service, key), [value], f"{path}: {key}")
            (families,) = values(service, "RestrictAddressFamilies")
            self.assertEqual(set(families.split()), {"AF_INET", "AF_INET6", "AF_UNIX"}, path)

    def test_long_running_units(self):
        """Gateways and workers: one env file per instance, started after the migration,
        restarted, drained by SIGTERM, with room for their connections."""
        for path in UNITS:
            if "@" not in path:
                continue
            unit = parse_unit(read(path), path)
            service = unit["Service"]
            self.assertIn("/etc/catraca/common.env", values(service, "EnvironmentFile"), path)
            self.assertIn("-/etc/catraca/%i.env", values(service, "EnvironmentFile"), path)
            for key in ("Wants", "After"):
                self.assertIn("catraca-migrate.service", " ".join(values(unit["Unit"], key)),
                              f"{path}: {key}")
            self.assertEqual(values(service, "Restart"), ["always"], path)
            self.assertTrue(values(service, "RestartSec"), path)
            self.assertEqual(values(service, "KillSignal"), ["SIGTERM"], path)
            self.assertTrue(values(service, "TimeoutStopSec"), path)
        path = UNIT["catraca-gateway@.service"]
        gateway = parse_unit(read(path), path)["Service"]
        self.assertGreater(int(values(gateway, "LimitNOFILE")[0]),
                           option_default("CATRACA_MAX_CONNECTIONS"))
        path = UNIT["catraca-migrate.service"]
        migrate = parse_unit(read(path), path)["Service"]
        self.assertEqual(values(migrate, "Type"), ["oneshot"])

    def test_no_secret_in_units(self):
        for path in UNITS:
            for key, value in parse_unit(read(path), path)["Service"]:
                if key in ("Environment", "ExecStart"):
                    self.assertNotIn("SECRET", value.upper(), f"{path}: secrets go in env files")
                    self.assertNotIn("PASSWORD", value.upper(), path)

    def test_variables_are_options_of_catraca(self):
        """Every CATRACA_* the units and env examples set, commented-out examples included."""
        known = known_variables()
        self.assertIn("CATRACA_REDIS", known)
        seen = set()
        for path in EXAMPLES + UNITS:
            text = read(path)
            names = re.findall(r"^#?\s*(?:Environment=\"?)?(CATRACA_[A-Z0-9_]+)=", text, re.M)
            for name in names:
                self.assertTrue(name in known, f"{path}: {name} is not an option of catraca")
            seen |= set(names)
        for name in ("CATRACA_REDIS", "CATRACA_POSTGRES", "CATRACA_JWT_SECRET",
                     "CATRACA_LISTEN", "CATRACA_WORKER_ID"):
            self.assertIn(name, seen)

    @unittest.skipIf(shutil.which("systemd-analyze") is None,
                     "systemd-analyze not installed: the units were not verified by systemd")
    def test_systemd_accepts_the_units(self):
        """systemd-analyze verify on copies that start the built binary. Only complaints about
        what an installation provides (/etc/catraca env files, users) are tolerated."""
        directory = tempfile.mkdtemp(prefix="catraca-units-")
        try:
            names = []
            for path in UNITS:
                text = read(path).replace("/usr/local/bin/catraca", os.path.abspath(BIN))
                name = os.path.basename(path).replace("@.service", "@a.service")
                with open(os.path.join(directory, name), "w") as f:
                    f.write(text)
                names.append("./" + name)
            run = subprocess.run(["systemd-analyze", "verify", *names], cwd=directory,
                                 capture_output=True, text=True, timeout=60)
            output = run.stdout + run.stderr
            ours = [line for line in output.splitlines()
                    if directory in line or "catraca" in line]
            tolerated = [line for line in ours if MISSING_ON_THIS_MACHINE.search(line)]
            complaints = [line for line in ours if line not in tolerated]
            self.assertEqual(complaints, [], output)
            if run.returncode != 0:
                self.assertTrue(tolerated, output)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


class ServerSettingsTest(unittest.TestCase):
    @unittest.skipIf(shutil.which("redis-server") is None, "redis-server not installed")
    def test_redis_accepts_the_settings(self):
        """redis-server starts on deploy/redis/catraca.conf (on a private socket, no TCP) with
        the durability DEPLOY.md describes."""
        directory = tempfile.mkdtemp(prefix="catraca-redis-conf-")
        socket = os.path.join(directory, "redis.sock")
        proc = subprocess.Popen(["redis-server", REDIS_CONF, "--port", "0", "--unixsocket",
                                 socket, "--dir", directory, "--daemonize", "no"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 15
            while not os.path.exists(socket):
                if proc.poll() is not None:
                    self.fail("redis-server refused the settings:\n" + proc.stdout.read().decode())
                self.assertLess(time.time(), deadline, "redis-server did not start")
                time.sleep(0.05)
            expected = {"appendonly": "yes", "appendfsync": "always",
                        "maxmemory-policy": "noeviction", "no-appendfsync-on-rewrite": "no"}
            for key, value in expected.items():
                run = subprocess.run(["redis-cli", "-s", socket, "config", "get", key],
                                     capture_output=True, text=True, timeout=10)
                self.assertEqual(run.stdout.split(), [key, value], key)
        finally:
            proc.terminate()
            proc.communicate(timeout=15)
            shutil.rmtree(directory, ignore_errors=True)

    def test_postgresql_knows_the_settings(self):
        """Every setting of deploy/postgresql/catraca.conf is a parameter PostgreSQL has."""
        postgres = shutil.which("postgres") or "/usr/lib/postgresql/15/bin/postgres"
        if not os.path.exists(postgres):
            self.skipTest("postgres not installed")
        run = subprocess.run([postgres, "--describe-config"], capture_output=True, text=True,
                             timeout=30)
        if run.returncode != 0:
            self.skipTest("postgres --describe-config failed: " + run.stderr.strip())
        known = {line.split("\t", 1)[0] for line in run.stdout.splitlines()}
        settings = re.findall(r"^#?\s*([a-z_]+)\s*=", read(POSTGRES_CONF), re.M)
        self.assertIn("synchronous_commit", settings)
        for name in settings:
            self.assertTrue(name in known, f"{POSTGRES_CONF}: {name} is not a PostgreSQL setting")


if __name__ == "__main__":
    unittest.main()
