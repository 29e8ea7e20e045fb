"""Every runbook of runbooks/, executed on the kit by its runner (`runbooks/run --kit`:
byexample, one bash session per runbook, each command's exit status and stated output
checked), in order, against one stack: deploy, scale, roll the binary, migrate, lose
the database, lose a node, rotate the secrets, restore a snapshot, drill, fail over and
back. While the runbooks that promise zero failed requests run (2, 3 and 7), steady
traffic goes through the ELB and any failed request fails the test. The request counts
and durations are printed with a `figure:` prefix.

Needs the built `provisioner` and `gateway` (debug) in CARGO_TARGET_DIR, root (network
namespaces), haproxy, curl, dig and jq."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid

from kit import client, start

import test_dataplane as dp
from test_dataplane import GATEWAY, PROVISIONER, Load, plane, wait

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNBOOKS = os.path.join(REPO, "runbooks")
REGION, DR_REGION = "us-east-1", "us-west-2"
# Runbooks whose procedure promises no failed request: run under load.
UNDER_LOAD = {"02", "03", "07"}

STACK_TOML = """
vpc_cidr = "10.42.0.0/16"
az_count = 2
nat = "single"
db_instance_class = "db.t3.micro"
db_allocated_storage = 20
instance_type = "t3.small"
min_size = 2
max_size = 4
desired_capacity = 2
health_check_grace_period = 60
connection_draining_timeout = 5
termination_drain_seconds = 60
secret_refresh_seconds = 10
domain = "{domain}"
hosted_zone_id = "{zone}"

[dr]
region = "{dr}"
rpo_target = "15m"
rto_target = "30m"
"""


def new_binary(directory: str, tag: str) -> str:
    """A gateway build that differs from the running one (another sha256), as a new
    release does."""
    path = os.path.join(directory, f"gateway-{tag}")
    shutil.copyfile(GATEWAY, path)
    with open(path, "ab") as f:
        f.write(tag.encode())
    os.chmod(path, 0o755)
    return path


class Runbooks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for path in (PROVISIONER, GATEWAY):
            if not os.path.exists(path):
                raise unittest.SkipTest(f"{path} is missing: cargo build -p gateway -p provisioner")
        cls.endpoint = dp.Dataplane.endpoint = start()
        cls.tmp = tempfile.mkdtemp(prefix="kit-runbooks-")
        suffix = uuid.uuid4().hex[:5]
        cls.stack = f"rb{suffix}"
        zone_name = f"rb{suffix}.example.com"
        r53 = client("route53", cls.endpoint)
        zone = r53.create_hosted_zone(Name=zone_name, CallerReference=suffix)["HostedZone"]["Id"]
        config = os.path.join(cls.tmp, "stack.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(STACK_TOML.format(domain=f"gateway.{zone_name}", zone=zone.rsplit("/", 1)[-1], dr=DR_REGION))
        cls.env = {
            **os.environ,
            "REGION": REGION,
            "DR_REGION": DR_REGION,
            "STACK": cls.stack,
            "DOMAIN": f"gateway.{zone_name}",
            "CONFIG": config,
            "REPORT": os.path.join(cls.tmp, "dr-drill.md"),
            "RUNBOOK_TIMEOUT": "120",
        }

    @classmethod
    def tearDownClass(cls):
        # Whatever a failed runbook left: the stack in both regions, the drill's copy.
        for region, stack in ((REGION, cls.stack), (DR_REGION, cls.stack), (DR_REGION, f"{cls.stack}-drill")):
            dp.provisioner("down", "--stack", stack, "--yes", "--force", "--skip-final-snapshot", region=region)
        for kept in cls.kept_databases():
            rds = client("rds", cls.endpoint, REGION)
            rds.delete_db_instance(DBInstanceIdentifier=kept, SkipFinalSnapshot=True)

    @classmethod
    def kept_databases(cls) -> list[str]:
        rds = client("rds", cls.endpoint, REGION)
        return [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]
                if d["DBInstanceIdentifier"].startswith(f"{cls.stack}-db-before-restore")]

    def elb_address(self) -> str:
        key = f"/{REGION}/{self.stack}-elb"
        return wait("the stack's ELB", lambda: next((b["address"] for b in plane()["balancers"]
                                                      if b["key"].endswith(key) and b.get("address")), None), 30)

    def run_book(self, path: str, env: dict) -> float:
        started = time.monotonic()
        out = subprocess.run([os.path.join(RUNBOOKS, "run"), "--kit", path], capture_output=True, text=True,
                             cwd=REPO, env=env, timeout=3600, check=False)
        took = time.monotonic() - started
        self.assertEqual(out.returncode, 0, f"{os.path.basename(path)} failed:\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}")
        for line in out.stderr.splitlines():
            if "skipped on the kit" in line:
                print(line)
        return took

    def test_a_runbook_that_went_stale_fails(self):
        """The runner fails a runbook on a command that no longer exists, on a command
        that fails without printing anything, and on output that changed; and passes
        one whose stated output and exit statuses hold."""
        cases = {
            "gone": "$ provisioner frobnicate --region \"$REGION\"\n<...>\n",
            "silent": "$ false\n",
            "changed": "$ echo \"3 of 3 nodes InService\"\n2 of 2 nodes InService\n",
            # Even where the stated output is a wildcard.
            "wildcard": "$ echo partial; false\n<...>\n",
            "fine": "$ echo hello\nhello\n$ false || echo \"refused: exit $?\"\nrefused: exit 1\n$ X=1\n$ echo \"$X\"\n1\n",
        }
        for name, block in cases.items():
            path = os.path.join(self.tmp, f"{name}.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# {name}\n\n```shell\n{block}```\n")
            out = subprocess.run([os.path.join(RUNBOOKS, "run"), "--kit", path], capture_output=True, text=True,
                                 cwd=REPO, env=self.env, timeout=120, check=False)
            if name == "fine":
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            else:
                self.assertNotEqual(out.returncode, 0, f"{name}: {out.stdout}")
                self.assertIn(f"{name}.md failed", out.stderr)
                if name == "wildcard":
                    self.assertIn("exit status 1: echo partial; false", out.stderr)
                elif name == "gone":
                    self.assertIn("exit status 2: provisioner frobnicate", out.stderr)
                else:
                    self.assertIn("Failed example", out.stdout)

    def test_the_runner_and_its_helpers_pass_shellcheck(self):
        out = subprocess.run(["shellcheck", "-x", "runbooks/run", "runbooks/lib/gateway.sh", "runbooks/lib/rc.sh"],
                             capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
        self.assertEqual(out.returncode, 0, out.stdout)

    def test_every_runbook_in_order(self):
        books = sorted(glob.glob(os.path.join(RUNBOOKS, "[0-9][0-9]-*.md")))
        self.assertEqual(len(books), 10, books)
        env = {**self.env,
               "NEW_BINARY": new_binary(self.tmp, "minor"),
               "OLD_BINARY": GATEWAY}
        for book in books:
            number = os.path.basename(book)[:2]
            if number == "04":
                env = {**env, "NEW_BINARY": new_binary(self.tmp, "major")}
            # In order, stopping at the first failure: each runbook starts from where
            # the one before left the stack.
            if number in UNDER_LOAD:
                with Load(self.elb_address(), "/dr-canary") as load:
                    time.sleep(1)
                    took = self.run_book(book, env)
                print(f"figure: runbook {os.path.basename(book)} under load: {load.ok + load.failed} requests "
                      f"through the ELB in {took:.0f} s, {load.failed} failed")
                self.assertGreater(load.ok, 20)
                self.assertEqual(load.failed, 0, load.errors[:5])
            else:
                took = self.run_book(book, env)
                print(f"figure: runbook {os.path.basename(book)}: {took:.0f} s")
        self.assertEqual(self.kept_databases(), [], "runbook 8 deletes the database it kept")


if __name__ == "__main__":
    unittest.main()
