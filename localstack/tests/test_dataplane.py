"""The stack on the kit serves, end to end, with real traffic: `provisioner up` boots two
gateway nodes from their user data behind a real ELB (HAProxy, PROXY v1, health checks),
Route53 names resolve through the kit's DNS, and the group scales, drains and replaces
nodes as on AWS. A second stack and a stack in a second region, with the same CIDR,
serve beside it. Every figure the closing note reports is printed with a `figure:`
prefix.

Needs the built `provisioner` and `gateway` (debug) in CARGO_TARGET_DIR, root (network
namespaces), haproxy, curl and dig."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

from kit import client, start

TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/gateway-kit/target")
PROVISIONER = os.path.join(TARGET, "debug", "provisioner")
GATEWAY = os.path.join(TARGET, "debug", "gateway")
REGION, DR_REGION = "us-east-1", "us-west-2"
CIDR = "10.40.0.0/16"
CLIENT_IP = "127.0.0.77"  # the test's client address, which the upstream must see
ECHO_PORT = 9000

STACK_TOML = f"""
vpc_cidr = "{CIDR}"
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
"""

# An upstream service inside the VPC: a real instance whose unit answers with what it saw.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples"))
from echo_instance import user_data as echo_user_data  # noqa: E402


def provisioner(*args: str, region: str = REGION, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_ENDPOINT_URL": Dataplane.endpoint}
    return subprocess.run([PROVISIONER, *args, "--region", region], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def plane() -> dict:
    with urllib.request.urlopen(Dataplane.endpoint + "/_kit/dataplane", timeout=10) as r:
        return json.load(r)


def wait(what: str, check, timeout: float, every: float = 0.5):
    """Polls `check` until it returns a true value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # e.g. not there yet
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def request(address: str, path: str, host: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """One HTTP request through the ELB on a new connection, from CLIENT_IP (curl)."""
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout),
            "--interface", CLIENT_IP, f"http://{address}{path}"]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, timeout=timeout + 5, check=False)
    if out.returncode != 0:
        return 0, out.stderr
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


class Load:
    """Steady requests through the ELB on new connections until stopped; counts failures."""

    def __init__(self, address: str, path: str):
        self.address, self.path = address, path
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 600  # bounded, whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            code, body = request(self.address, self.path)
            if code == 200:
                self.ok += 1
            else:
                self.failed += 1
                # The time, to find the connection in the ELB's haproxy.log.
                self.errors.append(f"{time.strftime('%H:%M:%S')} {code} {body[:200]!r}")
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


class Stack:
    def __init__(self, name: str, region: str, config: str, domain: str | None = None, zone: str | None = None):
        self.name, self.region, self.config, self.domain, self.zone = name, region, config, domain, zone
        self.outputs: dict = {}
        self.up_seconds = 0.0
        self.error: str | None = None

    def up(self) -> None:
        args = ["up", "--stack", self.name, "--config", self.config, "--gateway-binary", GATEWAY, "--output", "json"]
        if self.domain:
            args += ["--domain", self.domain, "--hosted-zone-id", self.zone]
        started = time.monotonic()
        out = provisioner(*args, region=self.region)
        self.up_seconds = time.monotonic() - started
        self.started = started
        if out.returncode != 0:
            self.error = f"provisioner up {self.name} failed:\n{out.stderr[-3000:]}"
        else:
            self.outputs = json.loads(out.stdout)

    def down(self) -> subprocess.CompletedProcess:
        return provisioner("down", "--stack", self.name, "--yes", "--force", "--skip-final-snapshot",
                           region=self.region)

    def balancer(self) -> dict:
        key = f"/{self.region}/{self.name}-elb"
        return next(b for b in plane()["balancers"] if b["key"].endswith(key))

    def nodes(self) -> list[dict]:
        return [i for i in plane()["instances"] if i["stack"] == self.name and i["region"] == self.region]

    def in_service(self) -> list[str]:
        elb = client("elb", Dataplane.endpoint, self.region)
        states = elb.describe_instance_health(LoadBalancerName=f"{self.name}-elb")["InstanceStates"]
        return sorted(s["InstanceId"] for s in states if s["State"] == "InService")


class Dataplane(unittest.TestCase):
    endpoint = ""

    @classmethod
    def setUpClass(cls):
        for path in (PROVISIONER, GATEWAY):
            if not os.path.exists(path):
                raise unittest.SkipTest(f"{path} is missing: cargo build -p gateway -p provisioner")
        Dataplane.endpoint = start()
        cls.tmp = tempfile.mkdtemp(prefix="kit-dataplane-")
        config = os.path.join(cls.tmp, "stack.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(STACK_TOML)
        suffix = uuid.uuid4().hex[:5]
        r53 = client("route53", cls.endpoint)
        cls.zone_name = f"dp{suffix}.example.com"
        zone = r53.create_hosted_zone(Name=cls.zone_name, CallerReference=suffix)["HostedZone"]["Id"]
        cls.zone_id = zone.rsplit("/", 1)[-1]
        cls.domain = f"gateway.{cls.zone_name}"
        cls.main = Stack(f"dp{suffix}", REGION, config, cls.domain, cls.zone_id)
        cls.second = Stack(f"dq{suffix}", REGION, config)
        cls.dr = Stack(f"dp{suffix}", DR_REGION, config)
        cls.stacks = [cls.main, cls.second, cls.dr]
        threads = [threading.Thread(target=s.up) for s in cls.stacks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [s.error for s in cls.stacks if s.error]
        if failed:
            cls.tearDownClass()
            raise AssertionError("\n".join(failed))

    @classmethod
    def tearDownClass(cls):
        cls.terminate_echo()
        threads = [threading.Thread(target=s.down) for s in getattr(cls, "stacks", [])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # --- helpers -------------------------------------------------------------------------

    def address(self, stack: Stack) -> str:
        return wait(f"the ELB of {stack.name}", lambda: stack.balancer().get("address"), 30)

    def admin(self, stack: Stack, node_ip: str, method: str, path: str, body: dict | None = None) -> dict:
        """The Admin API of one node, from inside the stack's VPC, with the token from
        the kit's secret store (SSM, as the nodes read it)."""
        ssm = client("ssm", self.endpoint, stack.region)
        token = ssm.get_parameter(Name=f"/{stack.name}/gateway/admin-token", WithDecryption=True)["Parameter"]["Value"]
        vpc_ns = next(n for n in os.listdir("/run/netns") if n == "kit-vpc-" + stack.outputs["vpc_id"].removeprefix("vpc-"))
        # The token reaches curl through a 0600 file, never a command line.
        with tempfile.NamedTemporaryFile("w", prefix="admin-token-", dir=self.tmp) as header:
            header.write(f"Kong-Admin-Token: {token}\n")
            header.flush()
            args = ["ip", "netns", "exec", vpc_ns, "curl", "-sS", "--max-time", "10", "-X", method,
                    "-H", f"@{header.name}", f"http://{node_ip}:8001{path}"]
            if body is not None:
                args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
            out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=True)
        return json.loads(out.stdout)

    def echo_instance(self, stack: Stack) -> str:
        """Launches the upstream into the stack's first private subnet; returns its IP."""
        ec2 = client("ec2", self.endpoint, stack.region)
        subnet = stack.outputs["private_subnet_ids"][0]
        inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=subnet, UserData=echo_user_data(ECHO_PORT))["Instances"][0]
        self.__class__.echo_id = inst["InstanceId"]
        return inst["PrivateIpAddress"]

    # --- the tests, in order ---------------------------------------------------------------

    def test_1_nodes_boot_and_serve_through_the_elb(self):
        s = self.main
        ids = wait("two nodes InService by real health checks", lambda: len(s.in_service()) == 2 and s.in_service(), 120)
        address = self.address(s)
        echo_ip = self.echo_instance(s)
        nodes = {n["instance_id"]: n["private_ip"] for n in s.nodes()}
        self.assertEqual(sorted(nodes), ids)
        node_a, node_b = (nodes[i] for i in ids)
        # A route created on node A's Admin API ...
        service = self.admin(s, node_a, "POST", "/services", {"name": "echo", "url": f"http://{echo_ip}:{ECHO_PORT}"})
        self.assertEqual(service["name"], "echo")
        self.admin(s, node_a, "POST", "/services/echo/routes", {"name": "echo", "paths": ["/echo"]})
        wait("the upstream", lambda: request(address, "/echo")[0] == 200, 90)
        first = time.monotonic() - s.started
        print(f"\nfigure: up -> first request served through the ELB: {first:.1f} s (up itself {s.up_seconds:.1f} s)")
        # ... is served through the ELB by both nodes, B included.
        peers, seen = set(), []
        for _ in range(20):
            code, body = request(address, "/echo")
            self.assertEqual(code, 200, body)
            echo = json.loads(body)
            echo["headers"] = {k.lower(): v for k, v in echo["headers"].items()}
            peers.add(echo["peer"])
            seen.append(echo)
        self.assertEqual(peers, {node_a, node_b}, "each node serves requests through the ELB")
        # The upstream sees the client's address (PROXY v1 from the ELB), not the ELB's.
        for echo in seen:
            self.assertEqual(echo["headers"]["x-real-ip"], CLIENT_IP)
            self.assertTrue(echo["headers"]["x-forwarded-for"].endswith(CLIENT_IP))
        for n in s.nodes():
            with open(n["console_log"], encoding="utf-8", errors="replace") as f:
                console = f.read()
            boot = [ln for ln in console.splitlines() if "cloud-init finished" in ln]
            self.assertTrue(boot and "errors" not in boot[0], console[-2000:])
            print(f"figure: node {n['instance_id']} boot: {boot[0].split('finished in ')[1]}")

    def test_2_dns_names_resolve_to_the_elb(self):
        s = self.main
        address = self.address(s)
        dns = plane()["dns"]

        def dig(name):
            out = subprocess.run(["dig", f"@{dns['address']}", "-p", str(dns["port"]), name, "A", "+short"],
                                 capture_output=True, text=True, timeout=10, check=True)
            return out.stdout.split()

        self.assertEqual(dig(s.domain)[-1:], [address])
        self.assertEqual(dig(s.outputs["elb_dns_name"])[-1:], [address])
        code, body = request(dig(s.domain)[-1], "/echo", host=s.domain)
        self.assertEqual(code, 200, body)
        headers = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        self.assertEqual(headers["host"].split(":")[0], self.echo_ip_of(s))

    def echo_ip_of(self, s: Stack) -> str:
        ec2 = client("ec2", self.endpoint, s.region)
        return ec2.describe_instances(InstanceIds=[self.echo_id])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]

    def test_3_scale_out_then_in_under_load(self):
        s = self.main
        asg = client("autoscaling", self.endpoint, s.region)
        group = s.outputs["asg_name"]
        asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=4)
        wait("four nodes InService", lambda: len(s.in_service()) == 4, 120)
        address = self.address(s)
        before = {n["instance_id"] for n in s.nodes()}
        with Load(address, "/echo") as load:
            time.sleep(2)
            started = time.monotonic()
            asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)

            def two_left():
                g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
                return len(g["Instances"]) == 2 and len(s.nodes()) == 2

            wait("scale-in to two nodes", two_left, 150)
            took = time.monotonic() - started
            time.sleep(2)
        print(f"\nfigure: scale-in 4->2 under load: {load.ok} ok, {load.failed} failed; took {took:.1f} s")
        self.assertGreater(load.ok, 20)
        self.assertEqual(load.failed, 0, load.errors[:5])
        # The drain helper completed each lifecycle action (long before the 60 s heartbeat).
        self.assertLess(took, 50)
        gone = before - {n["instance_id"] for n in s.nodes()}
        self.assertEqual(len(gone), 2)
        home = os.path.dirname(os.path.dirname(s.nodes()[0]["console_log"]))
        for instance_id in gone:
            with open(os.path.join(home, instance_id, "logs", "gateway-drain.service.log"), encoding="utf-8") as f:
                drain = f.read()
            self.assertIn("is terminating, draining the gateway", drain)

    def test_3b_terminate_in_group_drains_and_replaces(self):
        s = self.main
        asg = client("autoscaling", self.endpoint, s.region)
        group = s.outputs["asg_name"]
        victim = s.nodes()[0]["instance_id"]
        asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)

        def state():
            g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
            return {i["InstanceId"]: i["LifecycleState"] for i in g["Instances"]}

        # AWS's order: deregistered at once and drained by the ELB (5 s), and only then
        # the hook's wait, when IMDS tells the node (whose drain helper stops the gateway).
        self.assertEqual(state().get(victim), "Terminating")
        elb = client("elb", self.endpoint, s.region)
        registered = elb.describe_instance_health(LoadBalancerName=f"{s.name}-elb")["InstanceStates"]
        self.assertNotIn(victim, [i["InstanceId"] for i in registered])
        imds_says = lambda: next((n["lifecycle"] for n in s.nodes() if n["instance_id"] == victim), None)
        self.assertEqual(imds_says(), "InService")
        wait("the victim in the hook's wait", lambda: state().get(victim) in ("Terminating:Wait", None), 20)
        wait("IMDS telling the victim", lambda: imds_says() in ("Terminated", None), 10)
        wait("the victim gone through its drain helper", lambda: victim not in state(), 45)
        wait("a replacement InService", lambda: len(s.in_service()) == 2 and victim not in s.in_service(), 120)
        home = os.path.dirname(os.path.dirname(s.nodes()[0]["console_log"]))
        with open(os.path.join(home, victim, "logs", "gateway-drain.service.log"), encoding="utf-8") as f:
            self.assertIn("is terminating, draining the gateway", f.read())

    def test_4_a_killed_node_is_replaced(self):
        s = self.main
        address = self.address(s)
        victim = s.nodes()[0]
        with Load(address, "/echo") as load:
            time.sleep(1)
            killed = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            wait("the ELB marks the killed node OutOfService", lambda: victim["instance_id"] not in s.in_service(), 60)
            out_of_service = time.monotonic() - killed
            wait("a replacement InService", lambda: len(s.in_service()) == 2 and victim["instance_id"] not in s.in_service(), 180)
            replaced = time.monotonic() - killed
        print(f"\nfigure: SIGKILL of a node: OutOfService after {out_of_service:.1f} s, replacement InService after "
              f"{replaced:.1f} s; {load.failed} failed of {load.ok + load.failed} requests meanwhile")
        # interval 10 s x unhealthy threshold 3, plus one interval of slack
        self.assertLess(out_of_service, 45)

    def test_5_nodes_keep_serving_without_the_database(self):
        s = self.main
        rds = client("rds", self.endpoint, s.region)
        db = f"{s.name}-db"
        rds.stop_db_instance(DBInstanceIdentifier=db)
        wait("the database stopped", lambda: rds.describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0]["DBInstanceStatus"] == "stopped", 60)
        try:
            address = self.address(s)
            results = [request(address, "/echo")[0] for _ in range(20)]
            self.assertEqual(results, [200] * 20)
        finally:
            rds.start_db_instance(DBInstanceIdentifier=db)
            wait("the database back", lambda: rds.describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0]["DBInstanceStatus"] == "available", 60)

    def test_6_same_cidr_stacks_serve_side_by_side(self):
        for s in (self.second, self.dr):
            wait(f"{s.name} in {s.region}: two nodes InService", lambda s=s: len(s.in_service()) == 2, 120)
            address = self.address(s)
            self.assertNotEqual(address, self.address(self.main))
            # No route there yet: the gateway itself answers (Kong's 404), through that stack's ELB.
            code, body = request(address, "/anything")
            self.assertEqual(code, 404, body)
            self.assertIn(b"no Route matched", body)
        code, _ = request(self.address(self.main), "/echo")
        self.assertEqual(code, 200)

    @classmethod
    def terminate_echo(cls):
        """The upstream first: a VPC with an instance in it cannot be deleted."""
        if getattr(cls, "echo_id", None):
            client("ec2", cls.endpoint, REGION).terminate_instances(InstanceIds=[cls.echo_id])
            wait("the upstream instance gone",
                 lambda: not any(i["instance_id"] == cls.echo_id for i in plane()["instances"]), 60)
            cls.echo_id = None

    def test_7_down_leaves_nothing_behind(self):
        self.terminate_echo()
        for s in self.stacks:
            out = s.down()
            self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        vpcs = {s.outputs["vpc_id"].removeprefix("vpc-") for s in self.stacks}
        names = {s.name for s in self.stacks}
        report = plane()
        self.assertEqual([i for i in report["instances"] if i["stack"] in names], [])
        self.assertEqual([b for b in report["balancers"] if b["name"].removesuffix("-elb") in names], [])
        leftover = [n for n in os.listdir("/run/netns") if any(n == f"kit-vpc-{v}" for v in vpcs)]
        self.assertEqual(leftover, [])


if __name__ == "__main__":
    unittest.main()
