"""The files in deploy/ against the real binary: systemd units that systemd accepts, and
environment examples that name only variables catraca knows."""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
UNITS = sorted(glob.glob(os.path.join(ROOT, "deploy", "systemd", "*.service")))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "deploy", "systemd", "*.env.example")))


def known_variables():
    run = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"\bCATRACA_[A-Z0-9_]+\b", run.stdout + run.stderr))


class DeployTest(unittest.TestCase):
    def test_units_name_real_commands(self):
        self.assertEqual(len(UNITS), 3, UNITS)
        for path in UNITS:
            text = open(path).read()
            for section in ("[Unit]", "[Service]", "[Install]"):
                self.assertIn(section, text, path)
            command = re.search(r"^ExecStart=/usr/local/bin/catraca (\w+)$", text, re.M)
            self.assertIsNotNone(command, path)
            self.assertIn(command.group(1), ("gateway", "worker", "migrate"), path)

    def test_environment_examples_use_known_variables(self):
        known = known_variables()
        self.assertIn("CATRACA_REDIS", known)
        for path in EXAMPLES + UNITS:
            for name in re.findall(r"^(?:Environment=)?(CATRACA_[A-Z0-9_]+)=", open(path).read(),
                                   re.M):
                self.assertIn(name, known, f"{path}: {name} is not an option of catraca")

    @unittest.skipIf(shutil.which("systemd-analyze") is None, "systemd-analyze not installed")
    def test_systemd_accepts_the_units(self):
        """systemd-analyze verify on copies that start the built binary (the env files of a
        real installation do not exist here, so EnvironmentFile lines are left out)."""
        directory = tempfile.mkdtemp(prefix="catraca-units-")
        try:
            names = []
            for path in UNITS:
                text = open(path).read().replace("/usr/local/bin/catraca", os.path.abspath(BIN))
                text = re.sub(r"^EnvironmentFile=.*\n", "", text, flags=re.M)
                name = os.path.basename(path).replace("@.service", "@a.service")
                with open(os.path.join(directory, name), "w") as f:
                    f.write(text)
                names.append("./" + name)
            run = subprocess.run(["systemd-analyze", "verify", *names], cwd=directory,
                                 capture_output=True, text=True, timeout=60)
            complaints = [line for line in (run.stdout + run.stderr).splitlines()
                          if directory in line or "catraca" in line]
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            self.assertEqual(complaints, [], "\n".join(complaints))
        finally:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
