"""kit_ext's instances without LocalStack: IMDS answers as IMDSv2 does, and an instance
boots from `#cloud-config` in namespaces of its own (write_files, runcmd, systemd units
with Restart=always, a clean shutdown), touching none of the host's files."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kit_ext"))

from kit_ext import imds, netns  # noqa: E402
from kit_ext.instances import Instances, Launch  # noqa: E402

VENV_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def meta(**kw) -> imds.Meta:
    base = dict(instance_id="i-0abc", account_id="000000000000", region="eu-west-1",
                availability_zone="eu-west-1b", private_ip="10.0.1.5", hostname="ip-10-0-1-5",
                image_id="ami-1", instance_type="t3.micro", role="node-role", access_key="test",
                user_data=b"#!/bin/sh\n", target_lifecycle_state="InService")
    base.update(kw)
    return imds.Meta(**base)


class Imds(unittest.TestCase):
    def test_v2_tokens_are_required(self):
        tokens, m = imds.Tokens(), meta()
        self.assertEqual(imds.respond("GET", "/latest/meta-data/instance-id", {}, tokens, m)[0], 401)
        self.assertEqual(imds.respond("PUT", "/latest/api/token", {}, tokens, m)[0], 400)
        self.assertEqual(imds.respond("PUT", "/latest/api/token", {"x-aws-ec2-metadata-token-ttl-seconds": "0"}, tokens, m)[0], 400)
        status, _, token = imds.respond("PUT", "/latest/api/token", {"x-aws-ec2-metadata-token-ttl-seconds": "60"}, tokens, m)
        self.assertEqual(status, 200)
        h = {"x-aws-ec2-metadata-token": token.decode()}
        self.assertEqual(imds.respond("GET", "/latest/meta-data/instance-id", h, tokens, m)[2], b"i-0abc")
        self.assertEqual(imds.respond("GET", "/latest/meta-data/placement/region", h, tokens, m)[2], b"eu-west-1")
        self.assertEqual(imds.respond("GET", "/latest/meta-data/autoscaling/target-lifecycle-state", h, tokens, m)[2], b"InService")
        self.assertEqual(imds.respond("GET", "/latest/meta-data/iam/security-credentials/", h, tokens, m)[2], b"node-role")
        creds = json.loads(imds.respond("GET", "/latest/meta-data/iam/security-credentials/node-role", h, tokens, m)[2])
        self.assertEqual((creds["Code"], creds["AccessKeyId"]), ("Success", "test"))
        self.assertEqual(imds.respond("GET", "/latest/meta-data/nope", h, tokens, m)[0], 404)
        self.assertEqual(imds.respond("GET", "/latest/meta-data/instance-id", {"x-aws-ec2-metadata-token": "forged"}, tokens, m)[0], 401)

    def test_outside_a_group_there_is_no_lifecycle_state(self):
        tokens, m = imds.Tokens(), meta(target_lifecycle_state=None)
        token = imds.respond("PUT", "/latest/api/token", {"x-aws-ec2-metadata-token-ttl-seconds": "5"}, tokens, m)[2]
        h = {"x-aws-ec2-metadata-token": token.decode()}
        self.assertEqual(imds.respond("GET", "/latest/meta-data/autoscaling/target-lifecycle-state", h, tokens, m)[0], 404)
        listing = imds.respond("GET", "/latest/meta-data/", h, tokens, m)[2].decode().split()
        self.assertIn("instance-id", listing)
        self.assertIn("placement/", listing)


USER_DATA = b"""#cloud-config
packages: [nginx]
write_files:
  - path: /etc/kit-test/hello.txt
    permissions: '0600'
    content: |
      hello
  - path: /etc/systemd/system/web.service
    content: |
      [Service]
      User=nobody
      EnvironmentFile=/etc/kit-test/web.env
      ExecStart=/usr/bin/python3 -m http.server ${PORT} --bind 0.0.0.0
      Restart=always
      RestartSec=1
      TimeoutStopSec=5
  - path: /etc/kit-test/web.env
    content: |
      PORT=8000
runcmd:
  - [sh, -c, "echo runcmd as $(id -un) on $(hostname)"]
  - "t=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') && curl -sf -H \\"X-aws-ec2-metadata-token: $t\\" http://169.254.169.254/latest/meta-data/instance-id > /var/lib/kit-test-id"
  - systemctl daemon-reload
  - systemctl enable --now web.service
  - systemctl frobnicate web.service || echo "systemctl refused frobnicate"
"""


@unittest.skipUnless(os.geteuid() == 0, "network namespaces need root")
class Boot(unittest.TestCase):
    def setUp(self):
        base = os.path.expanduser("~/.cache/gateway-kit")
        os.makedirs(base, exist_ok=True)
        self.home = tempfile.mkdtemp(prefix="kit-instances-test-", dir=base)
        self.addCleanup(shutil.rmtree, self.home, True)
        self.instances = Instances(self.home, 4566, venv_python=VENV_PYTHON)
        # The kit's venv has kit_ext installed when LocalStack runs; here, the source tree.
        env = self.instances.environment
        self.instances.environment = lambda: {**env(), "PYTHONPATH": sys.path[0]}
        self.id = "i-" + uuid.uuid4().hex[:17]
        self.vpc = "vpc-" + uuid.uuid4().hex[:8]
        self.addCleanup(netns.delete, netns.vpc_ns(self.vpc))
        self.addCleanup(self.instances.shutdown_all)

    def wait(self, what, check, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        logs = os.path.join(self.home, "instances", self.id, "logs")
        units = {n: read(os.path.join(logs, n))[-1000:] for n in os.listdir(logs)} if os.path.isdir(logs) else {}
        self.fail(f"timed out waiting for {what}\nconsole:\n{self.console()[-3000:]}\nunits: {units}")

    def console(self) -> str:
        if not os.path.exists(os.path.join(self.home, "instances", self.id, "console.log")):
            return ""
        with open(os.path.join(self.home, "instances", self.id, "console.log"), encoding="utf-8") as f:
            return f.read()

    def test_boots_serves_restarts_and_shuts_down(self):
        launch = Launch(self.id, "000000000000", "us-east-1", "us-east-1a", self.vpc, "10.77.0.0/16",
                        "10.77.128.9", USER_DATA, "ami-1", "t3.micro", "role", "kit-test")
        self.instances.boot(launch)
        self.wait("cloud-init to finish", lambda: "cloud-init finished" in self.console())
        console = self.console()
        self.assertIn("runcmd as root on ip-10-77-128-9", console)
        self.assertIn("module packages: skipped", console)
        self.assertIn("systemctl refused frobnicate", console)
        upper = os.path.join(self.home, "instances", self.id, "root", "upper")
        self.assertEqual(read(os.path.join(upper, "var_lib", "kit-test-id")), self.id)
        self.assertEqual(oct(os.stat(os.path.join(upper, "etc", "kit-test", "hello.txt")).st_mode & 0o777), "0o600")
        self.assertFalse(os.path.exists("/etc/kit-test"), "the host's /etc was written")

        def get(path="/"):
            out = subprocess.run(["ip", "netns", "exec", netns.vpc_ns(self.vpc), "curl", "-s", "-o", "/dev/null",
                                  "-w", "%{http_code}", "--max-time", "2", f"http://10.77.128.9:8000{path}"],
                                 capture_output=True, text=True, check=False)
            return out.stdout

        self.wait("the unit to serve on the instance's address", lambda: get() == "200")
        # Restart=always: kill the unit's process, it comes back.
        pid = int(subprocess.run(["ip", "netns", "pids", netns.instance_ns(self.id)], capture_output=True,
                                 text=True, check=True).stdout.split()[-1])
        self.assertIn("http.server", read(f"/proc/{pid}/cmdline"))
        os.kill(pid, 9)
        self.wait("the unit to restart", lambda: "web.service: scheduled restart" in self.console())
        self.wait("the unit to serve again", lambda: get() == "200")
        # Terminate: the unit is stopped as systemd stops it, nothing is left.
        self.instances.terminate(self.id)
        self.wait("the instance to go", lambda: self.instances.get(self.id) is None)
        self.assertIn("Stopped web.service", self.console())
        self.assertIn("halted", self.console())
        self.assertFalse(netns.exists(netns.instance_ns(self.id)))
        self.assertFalse(os.path.exists(os.path.join(self.home, "instances", self.id, "root")))
        leftovers = subprocess.run(["pgrep", "-f", f"instance_init boot {self.home}"], capture_output=True, text=True)
        self.assertEqual(leftovers.stdout, "")


if __name__ == "__main__":
    unittest.main()
