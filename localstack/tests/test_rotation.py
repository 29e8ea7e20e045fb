"""Secret rotation on a running stack, end to end on the kit: `provisioner up` boots a node
from its user data behind the ELB, steady traffic goes through the ELB, and
`provisioner secrets rotate` replaces the DB master password (on the kit's real
PostgreSQL) and the Admin API token. Without a restart, the node takes both within
secret_refresh_seconds (gateway-secrets.service rewrites its files, the gateway re-reads
them): the old token gets 401, the new one works, an Admin API write after the rotation
reaches the database and the ELB serves it. No proxied request fails, and no value
reaches the node's console.

Needs the built `provisioner` and `gateway` (debug) in CARGO_TARGET_DIR, root (network
namespaces), haproxy and curl, as test_dataplane."""

import json
import os
import subprocess
import tempfile
import time
import unittest
import uuid

from kit import client, start

import test_dataplane as dp
from test_dataplane import GATEWAY, PROVISIONER, Load, Stack, plane, request, wait

REGION = "us-east-1"
CIDR = "10.41.0.0/16"
ECHO_PORT = 9000
REFRESH = 10

STACK_TOML = f"""
vpc_cidr = "{CIDR}"
az_count = 2
nat = "single"
db_instance_class = "db.t3.micro"
db_allocated_storage = 20
instance_type = "t3.small"
min_size = 1
max_size = 2
desired_capacity = 1
health_check_grace_period = 60
connection_draining_timeout = 5
termination_drain_seconds = 60
secret_refresh_seconds = {REFRESH}
"""


class Rotation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for path in (PROVISIONER, GATEWAY):
            if not os.path.exists(path):
                raise unittest.SkipTest(f"{path} is missing: cargo build -p gateway -p provisioner")
        cls.endpoint = dp.Dataplane.endpoint = start()
        cls.tmp = tempfile.mkdtemp(prefix="kit-rotation-")
        config = os.path.join(cls.tmp, "stack.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(STACK_TOML)
        cls.stack = Stack(f"rt{uuid.uuid4().hex[:5]}", REGION, config)
        cls.stack.up()
        if cls.stack.error:
            cls.tearDownClass()
            raise AssertionError(cls.stack.error)

    @classmethod
    def tearDownClass(cls):
        echo = getattr(cls, "echo_id", None)
        if echo:
            client("ec2", cls.endpoint, REGION).terminate_instances(InstanceIds=[echo])
        if getattr(cls, "stack", None):
            cls.stack.down()

    def secret(self, name: str) -> str:
        ssm = client("ssm", self.endpoint, REGION)
        return ssm.get_parameter(Name=f"/{self.stack.name}/{name}", WithDecryption=True)["Parameter"]["Value"]

    def admin(self, node_ip: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        """One Admin API request to a node from inside the VPC; the token reaches curl
        through a 0600 file, never a command line."""
        vpc_ns = "kit-vpc-" + self.stack.outputs["vpc_id"].removeprefix("vpc-")
        with tempfile.NamedTemporaryFile("w", prefix="admin-token-", dir=self.tmp) as header:
            header.write(f"Kong-Admin-Token: {token}\n")
            header.flush()
            args = ["ip", "netns", "exec", vpc_ns, "curl", "-sS", "--max-time", "10", "-X", method,
                    "-H", f"@{header.name}", "-w", "\n%{http_code}", f"http://{node_ip}:8001{path}"]
            if body is not None:
                args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
            out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
        text, _, code = out.stdout.rpartition("\n")
        return int(code or 0), text

    def test_rotation_reaches_the_node_without_a_restart_or_a_failed_request(self):
        s = self.stack
        ids = wait("one node InService", lambda: len(s.in_service()) == 1 and s.in_service(), 180)
        address = wait("the ELB", lambda: s.balancer().get("address"), 30)
        ec2 = client("ec2", self.endpoint, REGION)
        inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=s.outputs["private_subnet_ids"][0],
                                 UserData=dp.echo_user_data(ECHO_PORT))["Instances"][0]
        self.__class__.echo_id = inst["InstanceId"]
        echo_ip = inst["PrivateIpAddress"]
        node = next(n for n in s.nodes() if n["instance_id"] == ids[0])
        node_ip = node["private_ip"]
        old_token, old_password = self.secret("gateway/admin-token"), self.secret("db/master-password")

        code, out = self.admin(node_ip, old_token, "POST", "/services",
                               {"name": "echo", "url": f"http://{echo_ip}:{ECHO_PORT}"})
        self.assertEqual(code, 201, out)
        code, out = self.admin(node_ip, old_token, "POST", "/services/echo/routes", {"name": "before", "paths": ["/before"]})
        self.assertEqual(code, 201, out)
        wait("the upstream", lambda: request(address, "/before")[0] == 200, 90)

        with Load(address, "/before") as load:
            env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_ENDPOINT_URL": self.endpoint}
            started = time.monotonic()
            out = subprocess.run([PROVISIONER, "secrets", "rotate", "--region", REGION, "--stack", s.name,
                                  "--config", s.config, "--yes", "--output", "json"], capture_output=True, text=True, timeout=600,
                                 env=env, stdin=subprocess.DEVNULL, check=False)
            self.assertEqual(out.returncode, 0, out.stderr)
            report = json.loads(out.stdout)
            self.assertEqual(sorted(r["secret"] for r in report["rotated"]), ["admin_token", "db_password"])
            self.assertEqual(report["nodes_refresh_within_seconds"], REFRESH)
            new_token, new_password = self.secret("gateway/admin-token"), self.secret("db/master-password")
            self.assertNotEqual(new_token, old_token)
            self.assertNotEqual(new_password, old_password)
            for v in (old_token, new_token, old_password, new_password):
                self.assertNotIn(v, out.stdout + out.stderr)

            # The node takes the new token within secret_refresh_seconds (and a margin).
            wait("the new admin token", lambda: self.admin(node_ip, new_token, "GET", "/")[0] == 200, REFRESH + 30)
            took = time.monotonic() - started
            print(f"\nfigure: rotate -> node accepts the new admin token: {took:.1f} s")
            self.assertEqual(self.admin(node_ip, old_token, "GET", "/")[0], 401)
            # An Admin API write after the rotation reaches the database with the new
            # password (retried while a node may still hold the old one: 503).
            wait("an admin write after the rotation",
                 lambda: self.admin(node_ip, new_token, "POST", "/services/echo/routes",
                                    {"name": "after", "paths": ["/after"]})[0] in (201, 409), REFRESH + 30)
            wait("the route written after the rotation", lambda: request(address, "/after")[0] == 200, 60)
            time.sleep(1)
        self.assertGreater(load.ok, 20)
        self.assertEqual(load.failed, 0, load.errors[:5])
        # The node was not restarted: still the same instance, still in service.
        self.assertEqual(s.in_service(), ids)
        with open(node["console_log"], encoding="utf-8", errors="replace") as f:
            console = f.read()
        for v in (old_token, new_token, old_password, new_password):
            self.assertNotIn(v, console)


if __name__ == "__main__":
    unittest.main()
