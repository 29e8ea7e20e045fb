"""kit_ext/balancers.py with real HAProxies and real backends in network namespaces:
traffic and PROXY v1, AWS's health states, a new instance getting no traffic before its
HealthyThreshold, draining, connections surviving registrations, stopping everything.

Needs root, `ip netns` and /usr/sbin/haproxy; LocalStack need not run. Every instance
runs in a namespace of its own created here (kitt-<random>), all with the same private
IP 10.9.0.5, so an answer from the right instance also proves that HAProxy connected
inside that instance's namespace. Run: cd localstack/tests && ../.venv/bin/python -m
unittest -v test_balancers
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import uuid
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kit_ext"))

from kit_ext import balancers  # noqa: E402
from kit_ext.balancers import (  # noqa: E402
    FAILED, IN_SERVICE, REGISTERING, STOPPED, Backend, BalancerError, Balancers, BalancerSpec, HealthCheck,
)

IP = "10.9.0.5"
PROXY_PORT, PLAIN_PORT, STATUS_PORT = 8000, 8002, 8001
HC = HealthCheck(f"HTTP:{STATUS_PORT}/status", interval=1, timeout=1, healthy_threshold=2, unhealthy_threshold=2)

# A tiny instance: on 8000 and 8002 it reads an optional PROXY v1 line, then a greeting
# line, answers "<name> <port> <proxy header or -> <greeting>" and echoes every further
# line; each connection is logged (a GET there is answered 200, logged as "httpcheck").
# On 8001, and over TLS on 8443, GET /status answers 200 while the flag file says "ok",
# else 503; each check is logged with its peer address.
BACKEND = textwrap.dedent('''
    import http.server, os, socketserver, ssl, sys, threading
    name, ip, flag, log, ready, cert = sys.argv[1:7]

    def note(line):
        with open(log, "a") as f:
            f.write(line + "\\n")

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        daemon_threads = True

    class Traffic(socketserver.StreamRequestHandler):
        def handle(self):
            port = self.server.server_address[1]
            proxy, first = "-", b""
            try:  # HAProxy's TCP checks connect, then abort with a RST
                first = self.rfile.readline()
                if first.startswith(b"PROXY "):
                    proxy, first = first.decode().strip().replace(" ", "_"), self.rfile.readline()
            except ConnectionError:
                pass
            greeting = first.decode(errors="replace").strip() or "-"
            if greeting.startswith("GET "):
                note(f"httpcheck {port} {proxy}")
                self.wfile.write(b"HTTP/1.0 200 OK\\r\\n\\r\\n")
                return
            note(f"conn {port} {proxy} {greeting}")
            if greeting == "-":
                return  # a TCP health check: connected and closed
            self.wfile.write(f"{name} {port} {proxy} {greeting}\\n".encode())
            for line in self.rfile:
                self.wfile.write(f"{name} echo {line.decode().strip()}\\n".encode())

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            note(f"check {self.path} {self.client_address[0]}")
            ok = os.path.exists(flag) and open(flag).read().strip() == "ok"
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    class HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    servers = [Server((ip, 8000), Traffic), Server((ip, 8002), Traffic), HttpServer((ip, 8001), Status)]
    if cert != "-":
        tls = HttpServer((ip, 8443), Status)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        servers.insert(0, tls)
    for s in servers[:-1]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    open(ready, "w").close()
    servers[-1].serve_forever()
''')


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Instance:
    """A namespace holding IP on a dummy (or, without the dummy module, veth) device,
    and the backend script running inside it."""

    def __init__(self, test: unittest.TestCase, workdir: str, name: str, healthy: bool = True, cert: str = "-"):
        self.name = name
        self.ns = f"kitt-{uuid.uuid4().hex[:8]}"
        self.flag = os.path.join(workdir, f"{name}.flag")
        self.log = os.path.join(workdir, f"{name}.log")
        self.set_healthy(healthy)
        test.assertEqual(run("ip", "netns", "add", self.ns).returncode, 0)
        test.addCleanup(run, "ip", "netns", "del", self.ns)
        if run("ip", "-n", self.ns, "link", "add", "d0", "type", "dummy").returncode != 0:
            r = run("ip", "-n", self.ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
            test.assertEqual(r.returncode, 0, r.stderr)
            run("ip", "-n", self.ns, "link", "set", "d1", "up")
        for cmd in (("addr", "add", f"{IP}/24", "dev", "d0"), ("link", "set", "d0", "up"), ("link", "set", "lo", "up")):
            r = run("ip", "-n", self.ns, *cmd)
            test.assertEqual(r.returncode, 0, r.stderr)
        script = os.path.join(workdir, "backend.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(BACKEND)
        ready = os.path.join(workdir, f"{name}.ready")
        # `ip netns exec` execs the command, so this pid is the backend's own.
        with open(os.path.join(workdir, f"{name}.err"), "w") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, script, name, IP, self.flag, self.log, ready, cert],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )
        test.addCleanup(self._kill)
        wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None, 10, f"backend {name}")
        test.assertIsNone(self.proc.poll(), f"backend {name} died")
        self.backend = Backend(f"i-{name}{uuid.uuid4().hex[:6]}", self.ns, IP)

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)

    def set_healthy(self, healthy: bool):
        with open(self.flag, "w") as f:
            f.write("ok" if healthy else "fail")

    def lines(self, prefix: str) -> list[str]:
        try:
            with open(self.log) as f:
                return [line.split() for line in f if line.startswith(prefix + " ")]
        except FileNotFoundError:
            return []

    def connections(self) -> int:
        """Client connections (health checks of a TCP target send no greeting)."""
        return sum(1 for parts in self.lines("conn") if parts[3] != "-")


class Conn:
    """A client connection through the ELB: greets, reads the answering line."""

    def __init__(self, address: str, port: int, greeting: str = "hello"):
        self.sock = socket.create_connection((address, port), timeout=5)
        self.file = self.sock.makefile("rb")
        self.sock.sendall(greeting.encode() + b"\n")
        self.first = self.file.readline().decode().strip()
        self.served_by = self.first.split(" ")[0] if self.first else None

    def echo(self, text: str) -> str:
        """The echoed line, or "" once the connection was closed."""
        try:
            self.sock.sendall(text.encode() + b"\n")
            return self.file.readline().decode().strip()
        except OSError:
            return ""

    def close(self):
        self.file.close()
        self.sock.close()


class BalancersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, ports below 1024)")
        if not os.access(balancers.HAPROXY, os.X_OK):
            raise unittest.SkipTest(f"{balancers.HAPROXY} not installed")
        probe = f"kitt-probe-{uuid.uuid4().hex[:6]}"
        if run("ip", "netns", "add", probe).returncode != 0:
            raise unittest.SkipTest("`ip netns add` does not work here")
        run("ip", "netns", "del", probe)

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="kitt-elb-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.balancers = Balancers(os.path.join(self.workdir, "home"))
        self.addCleanup(self.balancers.stop_all)
        self.key_prefix = f"000000000000/us-east-1/t{uuid.uuid4().hex[:6]}"

    # --- helpers ---

    def instance(self, name: str, healthy: bool = True, cert: str = "-") -> Instance:
        return Instance(self, self.workdir, name, healthy, cert)

    def spec(self, name: str, instances, listeners=((18080, PROXY_PORT, "TCP"),), proxy=frozenset({PROXY_PORT}),
             draining: int | None = 30, health_check: HealthCheck = HC) -> BalancerSpec:
        return BalancerSpec(
            key=f"{self.key_prefix}-{name}", name=name, region="us-east-1", dns_name=f"{name}.elb.localhost",
            listeners=tuple(listeners), proxy_protocol_ports=frozenset(proxy), health_check=health_check,
            cross_zone=True, draining_timeout=draining, idle_timeout=60,
            backends=tuple(i.backend for i in instances),
        )

    def health(self, spec: BalancerSpec, instance: Instance):
        return self.balancers.instance_health(spec.key).get(instance.backend.instance_id)

    def wait_health(self, spec: BalancerSpec, instance: Instance, state, timeout: float = 8):
        wait_for(lambda: self.health(spec, instance) == state, timeout, f"{instance.name} {state}", 0.05)

    def served_by(self, spec: BalancerSpec, count: int, port: int = 18080) -> list[str]:
        address = self.balancers.address(spec.key)
        out = []
        for _ in range(count):
            c = Conn(address, port)
            out.append(c.served_by)
            c.close()
        return out

    def held_connections(self, spec: BalancerSpec, *instances: Instance) -> dict[str, Conn]:
        """One open connection to each of `instances` (roundrobin gets there quickly)."""
        address, held = self.balancers.address(spec.key), {}
        for _ in range(20):
            c = Conn(address, 18080)
            if c.served_by in {i.name for i in instances} and c.served_by not in held:
                held[c.served_by] = c
                self.addCleanup(c.close)
            else:
                c.close()
            if len(held) == len(instances):
                return held
        self.fail(f"could not get a connection to each of {[i.name for i in instances]}: {list(held)}")

    def our_pids(self) -> set[int]:
        """Masters and workers of every HAProxy of this test's Balancers."""
        pids = set()
        for p in self.balancers.processes():
            pids.update(balancers.group_members(p["pid"], p["config"]))
        return pids

    # --- tests ---

    def test_traffic_and_proxy_protocol_v1_only_on_proxy_ports(self):
        a = self.instance("a")
        # Port 80 when free (we run as root), to show privileged ports work.
        lb_port = 80
        try:
            with socket.socket() as s:
                s.bind(("127.100.255.254", 80))
        except OSError:
            lb_port = 18081
        spec = self.spec("traffic", [a], listeners=((lb_port, PROXY_PORT, "TCP"), (18082, PLAIN_PORT, "TCP")))
        self.balancers.converge([spec])
        address = self.balancers.address(spec.key)
        self.assertTrue(address.startswith("127.100."), address)
        self.wait_health(spec, a, IN_SERVICE)

        c = Conn(address, lb_port, "hi")
        client_ip, client_port = c.sock.getsockname()
        self.assertEqual(c.first, f"a {PROXY_PORT} PROXY_TCP4_{client_ip}_{address}_{client_port}_{lb_port} hi")
        self.assertEqual(c.echo("more"), "a echo more")
        c.close()
        plain = Conn(address, 18082, "hi")
        self.assertEqual(plain.first, f"a {PLAIN_PORT} - hi")
        plain.close()

        # Health checks ran inside the namespace: the peer is the namespace's own
        # address (10.9.0.5 does not exist outside it), on the target's path.
        checks = a.lines("check")
        self.assertTrue(checks)
        self.assertEqual({(path, peer) for _, path, peer in checks}, {("/status", IP)})

    def test_health_checks_send_no_proxy_header(self):
        # An HTTP check on the very port that gets PROXY v1: the checks arrive bare,
        # the clients' connections with the header.
        a = self.instance("a")
        on_proxy_port = HealthCheck(f"HTTP:{PROXY_PORT}/", interval=1, timeout=1, healthy_threshold=2, unhealthy_threshold=2)
        spec = self.spec("hcproxy", [a], health_check=on_proxy_port)
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        self.served_by(spec, 2)
        checks = a.lines("httpcheck")
        self.assertGreaterEqual(len(checks), 2)
        self.assertEqual({proxy for _, _, proxy in checks}, {"-"})
        clients = a.lines("conn")
        self.assertEqual(len(clients), 2)
        self.assertTrue(all(parts[2].startswith("PROXY_TCP4_") for parts in clients), clients)

    def test_tcp_ssl_and_https_targets(self):
        cert = os.path.join(self.workdir, "cert.pem")
        r = run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=instance",
                "-days", "1", "-keyout", cert, "-out", cert)
        if r.returncode != 0:
            self.skipTest(f"openssl cannot make a certificate: {r.stderr[-200:]}")
        a = self.instance("a", cert=cert)
        targets = {"tcp": f"TCP:{PLAIN_PORT}", "ssl": "SSL:8443", "https": "HTTPS:8443/status"}
        specs = {
            name: self.spec(name, [a], health_check=HealthCheck(target, interval=1, timeout=1, healthy_threshold=2, unhealthy_threshold=2))
            for name, target in targets.items()
        }
        self.balancers.converge(list(specs.values()))
        for spec in specs.values():
            self.wait_health(spec, a, IN_SERVICE)
        # HTTPS checks the status; a TLS handshake is all SSL and TCP look at.
        a.set_healthy(False)
        self.wait_health(specs["https"], a, FAILED)
        self.assertEqual(self.health(specs["ssl"], a), IN_SERVICE)
        self.assertEqual(self.health(specs["tcp"], a), IN_SERVICE)
        self.assertIn(("/status", IP), {(path, peer) for _, path, peer in a.lines("check")})

    def test_new_instance_gets_no_traffic_before_healthy_threshold(self):
        a = self.instance("a")
        spec = self.spec("newinst", [a])
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)

        # b fails its checks. Plain HAProxy would start it UP and send it half of the
        # connections until UnhealthyThreshold checks failed (about 2 s here).
        b = self.instance("b", healthy=False)
        spec = self.spec("newinst", [a, b])
        self.balancers.converge([spec])
        self.assertEqual(self.health(spec, b), REGISTERING)
        self.assertEqual(self.health(spec, a), IN_SERVICE)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            self.assertEqual(self.served_by(spec, 1), ["a"])
            time.sleep(0.05)
        self.assertEqual(b.connections(), 0)
        self.assertGreaterEqual(len(b.lines("check")), 2)
        # It has now failed UnhealthyThreshold checks, so the instance is to blame.
        self.assertEqual(self.health(spec, b), FAILED)

        # Once healthy, b takes traffic.
        b.set_healthy(True)
        self.wait_health(spec, b, IN_SERVICE)
        self.assertIn("b", self.served_by(spec, 4))

        # c is healthy from the start: still no connection before HealthyThreshold
        # checks passed. The count is read before the state, so a count taken while
        # c was still out of service must be 0.
        c = self.instance("c")
        spec = self.spec("newinst", [a, b, c])
        registered = time.monotonic()
        self.balancers.converge([spec])
        while True:
            count = c.connections()
            state = self.health(spec, c)
            if state == IN_SERVICE:
                break
            self.assertEqual(state, REGISTERING)
            self.assertEqual(count, 0, "c got a connection while registration was in progress")
            self.served_by(spec, 1)
            self.assertLess(time.monotonic() - registered, 8)
        # HealthyThreshold 2 at a 1 s interval: at least about one interval.
        self.assertGreaterEqual(time.monotonic() - registered, 0.9)
        wait_for(lambda: "c" in self.served_by(spec, 3), 5, "c to take traffic")

    def test_health_transitions(self):
        a, b = self.instance("a"), self.instance("b")
        spec = self.spec("transitions", [a, b])
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        self.wait_health(spec, b, IN_SERVICE)

        a.set_healthy(False)
        self.wait_health(spec, a, FAILED)
        self.assertEqual(self.health(spec, b), IN_SERVICE)
        self.assertEqual(set(self.served_by(spec, 6)), {"b"})

        a.set_healthy(True)
        self.wait_health(spec, a, IN_SERVICE)
        self.assertEqual(set(self.served_by(spec, 6)), {"a", "b"})

    def test_deregistration_drains_then_cuts(self):
        a, b = self.instance("a"), self.instance("b")
        spec = self.spec("drain", [a, b], draining=3)
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        self.wait_health(spec, b, IN_SERVICE)
        held = self.held_connections(spec, a, b)

        deregistered = time.monotonic()
        self.balancers.converge([self.spec("drain", [b], draining=3)])
        self.assertNotIn(a.backend.instance_id, self.balancers.instance_health(spec.key))
        # No new connection goes to a, the established one keeps working...
        self.assertEqual(set(self.served_by(spec, 6)), {"b"})
        time.sleep(1)
        self.assertEqual(held["a"].echo("still there"), "a echo still there")
        # ...until the draining timeout.
        wait_for(lambda: held["a"].echo("ping") == "", 8, "a's connection to be cut", 0.2)
        self.assertGreaterEqual(time.monotonic() - deregistered, 2.5)
        self.assertEqual(held["b"].echo("unaffected"), "b echo unaffected")

    def test_deregistration_without_draining_cuts_at_once(self):
        a, b = self.instance("a"), self.instance("b")
        spec = self.spec("nodrain", [a, b], draining=None)
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        self.wait_health(spec, b, IN_SERVICE)
        held = self.held_connections(spec, a, b)

        self.balancers.converge([self.spec("nodrain", [b], draining=None)])
        self.assertEqual(held["a"].echo("gone?"), "")
        self.assertEqual(held["b"].echo("unaffected"), "b echo unaffected")
        self.assertEqual(set(self.served_by(spec, 4)), {"b"})

    def test_registration_keeps_long_lived_connections(self):
        a = self.instance("a")
        spec = self.spec("longlived", [a], draining=2)
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        held = self.held_connections(spec, a)["a"]
        worker = self.balancers.processes()[0]["worker"]

        # Registering b reloads HAProxy (a new worker): a's open connection stays with
        # the old worker, and a's health carries over (no new registration phase).
        b = self.instance("b")
        self.balancers.converge([self.spec("longlived", [a, b], draining=2)])
        self.assertNotEqual(self.balancers.processes()[0]["worker"], worker)
        self.assertEqual(self.health(spec, a), IN_SERVICE)
        self.assertEqual(held.echo("after reload"), "a echo after reload")
        self.wait_health(spec, b, IN_SERVICE)
        self.assertEqual(held.echo("after b joined"), "a echo after b joined")

        # Deregistering a now drains the connection held by the old worker too.
        self.balancers.converge([self.spec("longlived", [b], draining=2)])
        self.assertEqual(held.echo("draining"), "a echo draining")
        wait_for(lambda: held.echo("ping") == "", 6, "a's connection in the old worker to be cut", 0.2)

    def test_instance_health_from_another_thread_while_converging(self):
        a, b = self.instance("a"), self.instance("b")
        specs = [self.spec("threads", [a]), self.spec("threads", [a, b]), self.spec("threads", [b])]
        errors, answers, stop = [], [], threading.Event()

        def poll():
            while not stop.is_set():
                try:
                    answers.append(self.balancers.instance_health(specs[0].key))
                    self.balancers.processes()
                except Exception as e:  # noqa: BLE001 - any error fails the test
                    errors.append(e)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for spec in specs * 2:
                self.balancers.converge([spec])
                time.sleep(0.2)
            self.balancers.converge([])
        finally:
            stop.set()
            poller.join(10)
        self.assertEqual(errors, [])
        self.assertGreater(len(answers), 10)
        states = {state for answer in answers for state in answer.values()}
        self.assertLessEqual(states, {IN_SERVICE, REGISTERING, FAILED})

    def test_listener_change_keeps_instance_health(self):
        a = self.instance("a")
        spec = self.spec("listeners", [a])
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        worker = self.balancers.processes()[0]["worker"]

        spec = self.spec("listeners", [a], listeners=((18080, PROXY_PORT, "TCP"), (18083, PLAIN_PORT, "TCP")))
        self.balancers.converge([spec])
        self.assertNotEqual(self.balancers.processes()[0]["worker"], worker)
        self.assertEqual(self.health(spec, a), IN_SERVICE)
        self.assertEqual(self.served_by(spec, 1, port=18083), ["a"])

    def test_converge_is_idempotent(self):
        a = self.instance("a")
        spec = self.spec("idem", [a])
        self.balancers.converge([spec])
        before = self.balancers.processes()
        self.balancers.converge([spec])
        self.balancers.converge([self.spec("idem", [a])])  # equal, not the same object
        self.assertEqual(self.balancers.processes(), before)

    def test_two_elbs_get_their_own_address_and_all_stop(self):
        a = self.instance("a")
        one, two = self.spec("one", [a]), self.spec("two", [a])
        self.balancers.converge([one, two])
        addresses = {self.balancers.address(one.key), self.balancers.address(two.key)}
        self.assertEqual(len(addresses), 2, addresses)
        procs = self.balancers.processes()
        self.assertEqual({p["key"] for p in procs}, {one.key, two.key})
        for p in procs:
            with open(os.path.join(os.path.dirname(p["config"]), "haproxy.pid")) as f:
                self.assertEqual(int(f.read()), p["pid"])
            self.assertTrue(os.path.exists(p["log"]))
        pids = self.our_pids()
        self.assertGreaterEqual(len(pids), 4)  # a master and a worker each

        self.balancers.converge([one])
        self.assertIsNone(self.balancers.address(two.key))
        self.assertEqual([p["key"] for p in self.balancers.processes()], [one.key])

        self.balancers.converge([])
        self.assertEqual(self.balancers.processes(), [])
        self.assertEqual([pid for pid in pids if alive(pid)], [])

        # stop_all, with a reload behind (an old worker holding a connection).
        self.balancers.converge([one])
        self.wait_health(one, a, IN_SERVICE)
        held = self.held_connections(one, a)["a"]
        self.balancers.converge([self.spec("one", [a], listeners=((18080, PROXY_PORT, "TCP"), (18084, PLAIN_PORT, "TCP")))])
        pids = self.our_pids()
        self.assertGreaterEqual(len(pids), 3)  # master, worker, old worker
        self.balancers.stop_all()
        self.assertEqual([pid for pid in pids if alive(pid)], [])
        self.assertEqual(held.echo("gone?"), "")

    def test_port_taken_raises_and_leaves_nothing_running(self):
        a = self.instance("a")
        with socket.socket() as blocker:
            blocker.bind(("0.0.0.0", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            spec = self.spec("taken", [a], listeners=((port, PROXY_PORT, "TCP"),))
            with self.assertRaises(BalancerError) as raised:
                self.balancers.converge([spec])
            self.assertIn("taken", str(raised.exception))
            self.assertIn(str(port), str(raised.exception))
            self.assertEqual(self.balancers.processes(), [])
            self.assertIsNone(self.balancers.address(spec.key))

            # A reload that needs the taken port fails the same way and keeps the
            # running configuration serving.
            ok = self.spec("keeps", [a])
            self.balancers.converge([ok])
            self.wait_health(ok, a, IN_SERVICE)
            bad = self.spec("keeps", [a], listeners=((18080, PROXY_PORT, "TCP"), (port, PLAIN_PORT, "TCP")))
            with self.assertRaises(BalancerError) as raised:
                self.balancers.converge([bad])
            self.assertIn("keeps", str(raised.exception))
            self.assertEqual(self.served_by(ok, 1), ["a"])

            # Without the module's own port probe, HAProxy's bind fails: on a start the
            # master exits, on a reload the master reports it; same outcome.
            with mock.patch.object(self.balancers, "_probe_ports", lambda *args: None):
                with self.assertRaises(BalancerError) as raised:
                    self.balancers.converge([ok, self.spec("taken", [a], listeners=((port, PROXY_PORT, "TCP"),))])
                self.assertIn("taken", str(raised.exception))
                self.assertIn("Address already in use", str(raised.exception))
                self.assertEqual([p["name"] for p in self.balancers.processes()], ["keeps"])
                worker = self.balancers.processes()[0]["worker"]
                with self.assertRaises(BalancerError) as raised:
                    self.balancers.converge([bad])
                self.assertIn("reload failed", str(raised.exception))
                self.assertIn("Address already in use", str(raised.exception))
                self.assertEqual(self.balancers.processes()[0]["worker"], worker)
                self.assertEqual(self.served_by(ok, 1), ["a"])
                self.assertEqual(self.health(ok, a), IN_SERVICE)
        # Once the port is free, converging again applies the change.
        self.balancers.converge([bad])
        self.assertEqual(self.served_by(bad, 1, port=port), ["a"])

    def test_invalid_spec_raises_naming_the_elb(self):
        a = self.instance("a")
        bad_check = HealthCheck("PING:8001", interval=1, timeout=1, healthy_threshold=2, unhealthy_threshold=2)
        with self.assertRaises(BalancerError) as raised:
            self.balancers.converge([self.spec("badcheck", [a], health_check=bad_check)])
        self.assertIn("badcheck", str(raised.exception))
        self.assertEqual(self.balancers.processes(), [])

    def test_instance_whose_namespace_is_missing_is_out_of_service(self):
        a = self.instance("a")
        ghost = Backend("i-ghost", f"kitt-missing-{uuid.uuid4().hex[:6]}", IP)
        spec = self.spec("ghost", [a])
        spec = BalancerSpec(**{**spec.__dict__, "backends": (a.backend, ghost)})
        self.balancers.converge([spec])
        self.wait_health(spec, a, IN_SERVICE)
        self.assertEqual(self.balancers.instance_health(spec.key)["i-ghost"], STOPPED)

    def test_a_new_instance_of_balancers_stops_stale_haproxies(self):
        a = self.instance("a")
        spec = self.spec("stale", [a])
        self.balancers.converge([spec])
        pids = self.our_pids()
        # As after a crash of the caller: a new Balancers on the same home.
        with self.assertLogs("kit_ext.balancers", "WARNING") as logs:
            again = Balancers(os.path.join(self.workdir, "home"))
        self.addCleanup(again.stop_all)
        self.assertIn("left from an earlier run", logs.output[0])
        self.assertEqual([pid for pid in pids if alive(pid)], [])
        again.converge([spec])
        wait_for(lambda: again.instance_health(spec.key)[a.backend.instance_id] == IN_SERVICE, 8, "a InService")


if __name__ == "__main__":
    unittest.main()
