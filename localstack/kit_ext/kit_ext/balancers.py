"""The kit's classic ELBs as real load balancers: one HAProxy per ELB.

Each ELB gets its own loopback address (127.100.0.1, .2, ... from 127.100.0.0/16, all of
which Linux routes to `lo` without configuration) and one HAProxy 2.6 in master-worker
mode listening there on every load-balancer port. The instances live in network
namespaces; HAProxy's `namespace` server keyword opens each outgoing connection, health
checks included, inside the instance's namespace, so several instances may even share
the same private IP in different namespaces.

AWS -> HAProxy mapping
----------------------
- Listener (lb port, instance port, protocol) -> `frontend l<lb port>` bound on
  <address>:<lb port> plus `backend l<lb port>` (mode tcp, roundrobin, as classic ELB's
  TCP listeners) with one server per instance at <ip>:<instance port>. Every protocol is
  TCP passthrough: an HTTPS/SSL listener does not terminate TLS here.
- ProxyProtocolPolicyType for an instance port -> `send-proxy` (PROXY v1) on the servers
  of the listeners that forward to that port.
- HealthCheck -> a separate `backend health` holding the one checked server per
  instance (<ip>:<check port>, `check port <check port>`, inter/rise/fall from Interval,
  HealthyThreshold, UnhealthyThreshold, `timeout check` from Timeout; HTTP(S) targets
  add `option httpchk GET <path>` + `http-check expect status 200`; SSL/HTTPS add
  `check-ssl verify none`). The listener servers `track` it, so an instance has a
  single health state, as in AWS, and is checked once per interval however many
  listeners there are. That server never carries traffic and has no `send-proxy`, so
  checks never send a PROXY header (classic ELB's don't either).
- CrossZoneLoadBalancing: there are no zones here, every ELB balances over all of its
  registered instances, which is what AWS does with cross-zone on.
- ConnectionSettings.IdleTimeout -> `timeout client` / `timeout server`.
- ConnectionDraining -> on deregistration the server goes to maintenance at once (no
  new connections; existing ones continue); its sessions are shut down when the
  draining timeout expires, or immediately when draining is off.

Registration and HAProxy 2.6 (verified with Debian's 2.6.12)
-------------------------------------------------------------
- `add server` over the runtime API rejects `namespace` ("'namespace' option is not
  accepted for dynamic server"), so a registration needs a new configuration: a
  seamless master-worker reload (SIGUSR2 to the master; listening sockets are handed
  over, old workers keep their established connections until they end or
  `hard-stop-after`).
- Plain HAProxy starts a server UP until its checks fail, and leaving maintenance
  (`disabled` + `enable server`) also starts it UP ("start OK but check immediately").
  AWS starts a new instance OutOfService until it passed HealthyThreshold checks. We get
  that from the server-state-file: before every start/reload we write one line per
  checked server, RUNNING for an instance HAProxy currently has UP, STOPPED for
  everything else (a new instance included). A STOPPED server starts DOWN with its
  check health at 0 and needs `rise` successful checks; its trackers follow it. The
  same file carries health over a reload, so a reload never re-runs the "new instance"
  phase for healthy instances.
- Deregistration needs no reload: `set server health/<i> state maint` (propagates to
  the trackers), then at the draining deadline the sessions are shut down in every
  worker that existed at deregistration time, old ones included, through the master
  CLI (`@!<pid> show sess` + `shutdown session <id>`; `shutdown sessions server`
  answers "Proxy is disabled." in an old worker). The server then stays in
  maintenance until the next reload leaves it out; `del server` refuses a tracked
  server in 2.6.
- `noreuseport`: HAProxy sets SO_REUSEPORT by default, so a second HAProxy (another
  kit, a stale run) could bind the same address and port and silently get half of the
  connections. Without it such a bind fails; reloads still work as the master hands
  the listening sockets to the new worker.

Files, under <home>/elb/<safe key>/: haproxy.cfg, haproxy.state (server-state-file),
haproxy.pid (the master's pid, which is also the process group of master and workers:
`kill -- -$(cat haproxy.pid)` stops all of them), haproxy.log (stdout+stderr: alerts,
server state changes, and the connections that ended in an error, in HAProxy's TCP log
format with its termination state, e.g. `SC` for a refused connection to an instance;
normal connections are not logged), and the two unix sockets
haproxy.sock (the current worker's stats socket) and master.sock (master CLI).

An instance whose namespace does not exist (not booted, or already gone) is left out of
HAProxy's configuration, since HAProxy refuses to load a config naming a missing
namespace, and reported OutOfService ("Instance is in stopped state."); the next
converge() picks it up once the namespace exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from .haproxy import cli, group_members, kill_group, listening_addresses, parse_proc, parse_stat
from .netns import exists as netns_exists

LOG = logging.getLogger(__name__)

HAPROXY = "/usr/sbin/haproxy"
ADDRESS_POOL = ipaddress.ip_network("127.100.0.0/16")
# Old workers keep serving their established connections after a reload, up to this
# long (AWS's maximum draining timeout; also bounds a long-lived connection across a
# registration change).
HARD_STOP_AFTER = 3600
CONNECT_TIMEOUT = 5  # s, HAProxy -> instance
START_TIMEOUT = 15.0  # s, for a start or a reload to report success or failure
ADDRESS_PROBES = 16  # addresses tried when the first choice's ports are taken

IN_SERVICE = ("InService", "N/A", "N/A")
REGISTERING = ("OutOfService", "ELB", "Instance registration is still in progress.")
FAILED = ("OutOfService", "Instance",
          "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.")
STOPPED = ("OutOfService", "Instance", "Instance is in stopped state.")

# Server states in a server-state-file line (see "show servers state" in HAProxy's
# management guide): operational state, and check state CONFIGURED|ENABLED.
_SRV_ST_STOPPED, _SRV_ST_RUNNING = 0, 2
_CHK_ST_CONFIGURED_ENABLED = 6
_STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
    "srv_agent_addr srv_agent_port"
)
_CHECK_PASSED = {"L4OK", "L6OK", "L7OK", "L7OKC"}
_CHECK_UNKNOWN = {"", "INI", "UNK"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


class BalancerError(Exception):
    """An ELB's HAProxy could not be started or reconfigured; the message names the ELB."""


@dataclass(frozen=True)
class Backend:
    instance_id: str
    netns: str  # name of the network namespace (under /run/netns) where `ip` is reachable
    ip: str  # the instance's private IPv4 address inside that namespace


@dataclass(frozen=True)
class HealthCheck:
    target: str  # AWS form: "HTTP:8001/status", "TCP:8000", "HTTPS:8444/x", "SSL:8443"
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class BalancerSpec:
    key: str  # unique id, e.g. "000000000000/us-east-1/gw-elb"
    name: str
    region: str
    dns_name: str
    listeners: tuple[tuple[int, int, str], ...]  # (lb port, instance port, protocol)
    proxy_protocol_ports: frozenset[int]  # instance ports that get PROXY protocol v1
    health_check: HealthCheck
    cross_zone: bool
    draining_timeout: int | None  # ConnectionDraining timeout (s) when enabled
    idle_timeout: int  # ConnectionSettings.IdleTimeout (s)
    backends: tuple[Backend, ...]  # registered instances


# --- pure helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    protocol: str  # HTTP, HTTPS, TCP, SSL
    port: int
    path: str | None  # HTTP(S) only


def parse_target(target: str) -> _Target:
    """AWS's HealthCheck.Target, e.g. "HTTP:8001/status" or "TCP:8000"."""
    m = re.fullmatch(r"(HTTP|HTTPS|TCP|SSL):(\d{1,5})(/\S*)?", target.strip(), re.IGNORECASE)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"health check target {target!r} is not PROTOCOL:PORT[/PATH]")
    protocol = m.group(1).upper()
    path = None
    if protocol in ("HTTP", "HTTPS"):
        # Percent-encode what HAProxy's config parser would read as a comment, quote
        # or escape; AWS paths are plain URL paths anyway.
        path = urllib.parse.quote(m.group(3) or "/", safe="/?&=:;,+@!$()*~.-_%")
    return _Target(protocol, int(m.group(2)), path)


def server_name(instance_id: str) -> str:
    """HAProxy server names allow letters, digits and - _ . : (instance ids fit)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", instance_id)


def safe_key(key: str) -> str:
    """A directory name for an ELB key; "/" becomes "_", anything odd adds a hash."""
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", key)
    if safe != key.replace("/", "_") or safe in ("", ".", ".."):
        safe += "-" + hashlib.sha1(key.encode()).hexdigest()[:8]
    return safe


def validate(spec: BalancerSpec) -> None:
    """Raises ValueError naming the ELB for what would make a broken HAProxy config."""
    def bad(msg: str):
        return ValueError(f"ELB {spec.name} ({spec.key}): {msg}")

    ports = [lb for lb, _, _ in spec.listeners]
    if len(ports) != len(set(ports)):
        raise bad(f"duplicate load balancer ports in {sorted(ports)}")
    for lb, inst, _ in spec.listeners:
        if not (0 < lb < 65536 and 0 < inst < 65536):
            raise bad(f"listener {lb} -> {inst}: port out of range")
    try:
        parse_target(spec.health_check.target)
    except ValueError as e:
        raise bad(str(e)) from None
    hc = spec.health_check
    if min(hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) < 1:
        raise bad("health check interval, timeout and thresholds must be at least 1")
    if spec.idle_timeout < 1:
        raise bad("idle timeout must be at least 1 s")
    names = [server_name(b.instance_id) for b in spec.backends]
    if len(names) != len(set(names)):
        raise bad(f"an instance is registered twice: {sorted(names)}")
    for b in spec.backends:
        if not _NAME_RE.match(b.netns):
            raise bad(f"instance {b.instance_id}: unusable namespace name {b.netns!r}")
        try:
            ipaddress.IPv4Address(b.ip)
        except ValueError:
            raise bad(f"instance {b.instance_id}: {b.ip!r} is not an IPv4 address") from None


def render(spec: BalancerSpec, address: str, paths: "_Paths", servers: list[tuple[str, Backend]]) -> str:
    """The HAProxy configuration of one ELB with exactly `servers` (name, backend).

    Everything that can change without a reload (draining, cross-zone) stays out of
    it, so comparing two renderings tells whether a reload is needed."""
    hc = spec.health_check
    target = parse_target(hc.target)
    ssl = " check-ssl verify none" if target.protocol in ("HTTPS", "SSL") else ""
    lines = [
        f"# ELB {spec.key}: generated by kit_ext.balancers, rewritten on every change",
        "global",
        f"    stats socket {paths.sock} mode 600 level admin",
        f"    server-state-file {paths.state}",
        f"    hard-stop-after {HARD_STOP_AFTER}s",
        "    noreuseport",
        "    nbthread 1",
        "    maxconn 4096",
        "    log stdout format raw daemon",
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option dontlog-normal",
        f"    timeout connect {CONNECT_TIMEOUT}s",
        f"    timeout client {spec.idle_timeout}s",
        f"    timeout server {spec.idle_timeout}s",
        "    load-server-state-from-file global",
        "",
        "# One checked server per instance; the listeners' servers track it.",
        "backend health",
        f"    timeout check {hc.timeout}s",
    ]
    if target.path is not None:
        lines += [f"    option httpchk GET {target.path}", "    http-check expect status 200"]
    for name, b in servers:
        lines.append(
            f"    server {name} {b.ip}:{target.port} namespace {b.netns} check port {target.port}"
            f" inter {hc.interval}s rise {hc.healthy_threshold} fall {hc.unhealthy_threshold}{ssl}"
        )
    for lb_port, inst_port, _protocol in sorted(spec.listeners):
        proxy = " send-proxy" if inst_port in spec.proxy_protocol_ports else ""
        lines += ["", f"frontend l{lb_port}", f"    bind {address}:{lb_port}", f"    default_backend l{lb_port}",
                  "", f"backend l{lb_port}", "    balance roundrobin"]
        for name, b in servers:
            lines.append(f"    server {name} {b.ip}:{inst_port} namespace {b.netns} track health/{name}{proxy}")
    return "\n".join(lines) + "\n"


def state_file(spec: BalancerSpec, servers: list[tuple[str, Backend]], up: set[str]) -> str:
    """A server-state-file: RUNNING for the names in `up`, STOPPED (DOWN, check health
    0, so `rise` checks needed) for every other checked server. Ids are 0: HAProxy then
    matches lines by backend and server name."""
    port = parse_target(spec.health_check.target).port
    out = ["1", _STATE_HEADER]
    for name, b in servers:
        op = _SRV_ST_RUNNING if name in up else _SRV_ST_STOPPED
        out.append(f"0 health 0 {name} {b.ip} {op} 0 1 1 0 1 0 0 {_CHK_ST_CONFIGURED_ENABLED} 0 0 0 - {port} - 0 {port} - - 0")
    return "\n".join(out) + "\n"


# --- one ELB ---------------------------------------------------------------------------


@dataclass
class _Paths:
    dir: str
    config: str
    state: str
    pid: str
    log: str
    sock: str
    master: str

    @classmethod
    def under(cls, directory: str) -> "_Paths":
        run = directory
        # A unix socket path must fit in 108 bytes; a deep home gets its sockets in a
        # short directory named after the state directory.
        if len(os.path.join(run, "haproxy.sock")) > 100:
            run = os.path.join(tempfile.gettempdir(), "kit-elb-" + hashlib.sha1(directory.encode()).hexdigest()[:12])
        return cls(directory, os.path.join(directory, "haproxy.cfg"), os.path.join(directory, "haproxy.state"),
                   os.path.join(directory, "haproxy.pid"), os.path.join(directory, "haproxy.log"),
                   os.path.join(run, "haproxy.sock"), os.path.join(run, "master.sock"))


@dataclass
class _Elb:
    key: str
    address: str
    paths: _Paths
    spec: BalancerSpec  # as last converged (timeouts, thresholds, registered instances)
    proc: subprocess.Popen | None = None
    loaded_spec: BalancerSpec | None = None  # the spec the running config was rendered from
    loaded: dict[str, Backend] = field(default_factory=dict)  # servers in the running config
    removed: set[str] = field(default_factory=set)  # of those, deregistered at runtime since
    worker: int | None = None  # current worker pid
    # Health bookkeeping HAProxy does not keep across reloads: whether an instance has
    # ever been InService since its registration, when it was registered, and its
    # `chkdown` counter right after the current worker started (a STOPPED line in the
    # state file counts as one transition to DOWN).
    ever_up: dict[str, bool] = field(default_factory=dict)
    registered_at: dict[str, float] = field(default_factory=dict)
    chkdown_base: dict[str, int] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def error(self, msg: str) -> BalancerError:
        return BalancerError(f"ELB {self.spec.name} ({self.key}): {msg}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Balancers:
    """All of the kit's ELBs: converge() makes the running HAProxies match the specs."""

    def __init__(self, home: str, haproxy: str = HAPROXY):
        self.root = os.path.join(home, "elb")
        self.haproxy = haproxy if os.path.isabs(haproxy) else (shutil.which(haproxy) or haproxy)
        self._elbs: dict[str, _Elb] = {}
        self._lock = threading.RLock()
        os.makedirs(self.root, exist_ok=True)
        self._reap_stale()

    # --- public API ---

    def converge(self, specs: list[BalancerSpec]) -> None:
        """Starts, reconfigures and stops HAProxies so that exactly `specs` run.

        Idempotent: an unchanged spec touches nothing. Every ELB is attempted; if some
        fail, one BalancerError lists them all (a failed ELB keeps its previous
        configuration if it was running, else nothing of it runs)."""
        keys = [s.key for s in specs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate ELB keys in {keys}")
        errors = []
        with self._lock:
            for key in [k for k in self._elbs if k not in set(keys)]:
                self._stop(self._elbs.pop(key))
            for spec in specs:
                try:
                    validate(spec)
                    self._converge_one(spec)
                except (BalancerError, ValueError) as e:
                    errors.append(str(e))
                except OSError as e:  # files, sockets: still name the ELB
                    errors.append(f"ELB {spec.name} ({spec.key}): {e}")
        if errors:
            raise BalancerError("; ".join(errors))

    def address(self, key: str) -> str | None:
        with self._lock:
            elb = self._elbs.get(key)
            return elb.address if elb else None

    def instance_health(self, key: str) -> dict[str, tuple[str, str, str]]:
        """instance id -> (State, ReasonCode, Description) as DescribeInstanceHealth has
        them, from HAProxy's live check state. Deregistered (draining) instances are
        not listed."""
        with self._lock:
            elb = self._elbs.get(key)
            if elb is None:
                return {}
            rows = self._health_rows(elb)
            hc = elb.spec.health_check
            out = {}
            for b in elb.spec.backends:
                name = server_name(b.instance_id)
                row = rows.get(name)
                if name not in elb.loaded or name in elb.removed or elb.loaded[name] != b:
                    # Not in HAProxy's config: its namespace is missing (or a failed
                    # reload left the old config running).
                    out[b.instance_id] = STOPPED if not netns_exists(b.netns) else REGISTERING
                elif row is None:
                    out[b.instance_id] = REGISTERING  # HAProxy not answering
                elif row.get("status", "").startswith(("UP", "NOLB")):
                    # "UP 1/2" is UP with a failed check, not yet UnhealthyThreshold ones.
                    out[b.instance_id] = IN_SERVICE
                elif elb.ever_up.get(name):
                    out[b.instance_id] = FAILED
                else:
                    # Never healthy yet: AWS says "registration in progress" until the
                    # instance has had the chance to fail UnhealthyThreshold checks.
                    # HAProxy keeps no count of failures of a DOWN server, so: the last
                    # check failed and that many intervals have passed.
                    status = row.get("check_status", "").lstrip("* ").strip()
                    failing = status not in _CHECK_PASSED and status not in _CHECK_UNKNOWN
                    age = time.monotonic() - elb.registered_at.get(name, time.monotonic())
                    long_enough = age >= hc.unhealthy_threshold * hc.interval
                    out[b.instance_id] = FAILED if failing and long_enough else REGISTERING
            return out

    def processes(self) -> list[dict]:
        with self._lock:
            return [
                {"key": e.key, "name": e.spec.name, "address": e.address,
                 "ports": sorted(lb for lb, _, _ in e.spec.listeners),
                 "pid": e.proc.pid if e.running() else None, "worker": e.worker,
                 "config": e.paths.config, "log": e.paths.log}
                for e in self._elbs.values()
            ]

    def stop_all(self) -> None:
        with self._lock:
            for key in list(self._elbs):
                self._stop(self._elbs.pop(key))

    # --- converge one ELB ---

    def _converge_one(self, spec: BalancerSpec) -> None:
        elb = self._elbs.get(spec.key)
        if elb is not None and not elb.running():
            LOG.warning("haproxy of ELB %s had exited; starting it again", spec.name)
            self._stop(self._elbs.pop(spec.key))
            elb = None
        if elb is None:
            elb = _Elb(spec.key, "", _Paths.under(os.path.join(self.root, safe_key(spec.key))), spec)
            self._note_registrations(elb, (), spec)
            self._start(elb, spec)  # raises with nothing left running
            self._elbs[spec.key] = elb
            return

        previous = elb.spec
        self._note_registrations(elb, previous.backends, spec)
        elb.spec = spec
        wanted = {server_name(b.instance_id): b for b in spec.backends}
        # Deregistrations (and an instance whose address changed, which is a
        # deregistration plus a registration) happen at runtime, without a reload.
        for name, b in elb.loaded.items():
            if name not in elb.removed and wanted.get(name) != b:
                self._deregister(elb, name, spec.draining_timeout)
        servers = self._present(spec)
        live = [(n, b) for n, b in elb.loaded.items() if n not in elb.removed]
        if render(spec, elb.address, elb.paths, servers) != render(elb.loaded_spec, elb.address, elb.paths, live):
            self._reload(elb, spec, servers)

    def _note_registrations(self, elb: _Elb, before: tuple[Backend, ...], spec: BalancerSpec) -> None:
        """Starts the health bookkeeping of newly registered instances."""
        known = set(before)
        for b in spec.backends:
            if b not in known:
                name = server_name(b.instance_id)
                elb.registered_at[name] = time.monotonic()
                elb.ever_up[name] = False

    @staticmethod
    def _present(spec: BalancerSpec) -> list[tuple[str, Backend]]:
        """The servers to configure: registered instances whose namespace exists."""
        return [(server_name(b.instance_id), b) for b in spec.backends if netns_exists(b.netns)]

    def _start(self, elb: _Elb, spec: BalancerSpec) -> None:
        os.makedirs(elb.paths.dir, exist_ok=True)
        os.makedirs(os.path.dirname(elb.paths.sock), mode=0o700, exist_ok=True)
        for stale in (elb.paths.sock, elb.paths.master, elb.paths.pid):
            if os.path.exists(stale):
                os.unlink(stale)
        servers = self._present(spec)
        elb.address = self._allocate_address(elb, spec)
        text = render(spec, elb.address, elb.paths, servers)
        self._check_config(elb, text)
        # Nothing has been healthy yet: every instance starts OutOfService.
        self._write(elb.paths.state, state_file(spec, servers, up=set()))
        self._write(elb.paths.config, text)
        log_offset = os.path.getsize(elb.paths.log) if os.path.exists(elb.paths.log) else 0
        with open(elb.paths.log, "ab") as log:
            # -W master-worker (reloads keep established connections), -S master CLI.
            # A new session: no signal to the caller's process group reaches HAProxy,
            # and the master's pid is the group of all of its workers.
            elb.proc = subprocess.Popen(
                [self.haproxy, "-W", "-S", f"{elb.paths.master},mode,600", "-f", elb.paths.config, "-p", elb.paths.pid],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            elb.worker = self._wait_worker(elb, previous=None, failed_before=0, log_offset=log_offset)
            elb.loaded_spec, elb.loaded, elb.removed = spec, dict(servers), set()
            self._record_baseline(elb)
            # HAProxy writes -p too, but only once the master is ready; have it there
            # as soon as this returns.
            self._write(elb.paths.pid, f"{elb.proc.pid}\n")
        except BaseException:
            # Never leave a half-started HAProxy behind.
            kill_group(elb.proc.pid, elb.paths.config, elb.proc)
            elb.proc = None
            raise
        LOG.info("ELB %s: haproxy %s on %s", spec.name, elb.proc.pid, elb.address)

    def _reload(self, elb: _Elb, spec: BalancerSpec, servers: list[tuple[str, Backend]]) -> None:
        text = render(spec, elb.address, elb.paths, servers)
        self._check_config(elb, text)
        new_ports = {lb for lb, _, _ in spec.listeners} - {lb for lb, _, _ in elb.loaded_spec.listeners}
        self._probe_ports(elb, elb.address, new_ports)
        # Carry health over: an instance UP now (same address, not deregistered) starts
        # UP in the new worker, every other one DOWN until it passes `rise` checks.
        rows = self._health_rows(elb)
        up = {
            name for name, b in servers
            if name in elb.loaded and name not in elb.removed and elb.loaded[name] == b
            and rows.get(name, {}).get("status", "").startswith(("UP", "NOLB"))
        }
        procs = parse_proc(self._master(elb, "show proc"))
        with open(elb.paths.config) as f:
            old_text = f.read()
        self._write(elb.paths.state, state_file(spec, servers, up))
        self._write(elb.paths.config, text)
        log_offset = os.path.getsize(elb.paths.log)
        os.kill(elb.proc.pid, signal.SIGUSR2)  # master-worker reload: re-exec, new worker
        try:
            elb.worker = self._wait_worker(elb, previous=elb.worker, failed_before=procs.failed, log_offset=log_offset)
        except BalancerError:
            # The old worker still runs the old config; keep it on disk too, so that a
            # later reload does not pick up the failed one.
            self._write(elb.paths.config, old_text)
            raise
        elb.loaded_spec, elb.loaded, elb.removed = spec, dict(servers), set()
        self._record_baseline(elb)
        LOG.info("ELB %s: reloaded, worker %s", spec.name, elb.worker)

    def _wait_worker(self, elb: _Elb, previous: int | None, failed_before: int, log_offset: int) -> int:
        """Waits until a worker other than `previous` serves the stats socket; raises
        with HAProxy's alerts if the master exits or reports a failed reload."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if elb.proc.poll() is not None:
                raise elb.error(f"haproxy exited (code {elb.proc.returncode}): {self._alerts(elb, log_offset)}")
            try:
                procs = parse_proc(self._master(elb, "show proc"))
                if procs.failed > failed_before:
                    raise elb.error(f"haproxy reload failed, previous configuration kept: {self._alerts(elb, log_offset)}")
                if procs.current and procs.current[0] != previous:
                    info = cli(elb.paths.sock, "show info")
                    m = re.search(r"^Pid: (\d+)", info, re.MULTILINE)
                    # The socket path is rebound by the new worker: wait until it is.
                    if m and int(m.group(1)) == procs.current[0]:
                        return procs.current[0]
            except OSError:
                pass  # sockets not there yet, or the master is re-executing
            time.sleep(0.05)
        raise elb.error(f"haproxy did not come up within {START_TIMEOUT:.0f}s: {self._alerts(elb, log_offset)}")

    def _check_config(self, elb: _Elb, text: str) -> None:
        """`haproxy -c` on the candidate config, before anything is changed."""
        candidate = elb.paths.config + ".new"
        self._write(candidate, text)
        try:
            out = subprocess.run([self.haproxy, "-c", "-q", "-f", candidate], capture_output=True, text=True, timeout=30)
        finally:
            os.unlink(candidate)
        if out.returncode != 0:
            alerts = [line for line in (out.stderr + out.stdout).splitlines() if "ALERT" in line]
            detail = " | ".join(alerts[-3:]) or (out.stderr + out.stdout).strip()[-300:]
            raise elb.error(f"haproxy -c rejected the configuration: {detail}")

    def _allocate_address(self, elb: _Elb, spec: BalancerSpec) -> str:
        """The lowest pool address not used by another ELB whose ports are all free.
        A few addresses are tried, so a foreign process on one address (another kit
        using the same pool) is skipped, while a port taken on all addresses (bound
        to 0.0.0.0) is an error."""
        # Addresses of our other ELBs, and any address something already listens on
        # (another kit's HAProxy, say): each ELB gets an address of its own.
        used = {e.address for e in self._elbs.values() if e is not elb} | listening_addresses()
        ports = sorted({lb for lb, _, _ in spec.listeners})
        tried = []
        for host in ADDRESS_POOL.hosts():
            address = str(host)
            if address in used:
                continue
            try:
                self._probe_ports(elb, address, ports)
                return address
            except BalancerError as e:
                tried.append(address)
                if len(tried) >= ADDRESS_PROBES:
                    raise elb.error(f"{str(e).split(': ', 1)[1]} (and on {tried[0]}..{tried[-2]} too)") from None
        raise elb.error("no free address left in 127.100.0.0/16")

    @staticmethod
    def _probe_ports(elb: _Elb, address: str, ports) -> None:
        for port in sorted(ports):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy does
                try:
                    s.bind((address, port))
                except OSError as e:
                    raise elb.error(f"port {port} on {address} is taken: {e.strerror}") from None

    def _record_baseline(self, elb: _Elb) -> None:
        for name, row in self._health_rows(elb).items():
            elb.chkdown_base[name] = int(row.get("chkdown") or 0)

    # --- deregistration and draining ---

    def _deregister(self, elb: _Elb, name: str, draining_timeout: int | None) -> None:
        """No new connections now; existing ones are shut down after the draining
        timeout (at once when draining is off) in every worker that may hold them."""
        try:
            workers = parse_proc(self._master(elb, "show proc"))
            pids = workers.current + workers.old
            answer = cli(elb.paths.sock, f"set server health/{name} state maint").strip()
            if answer:
                LOG.warning("ELB %s: set server health/%s state maint: %s", elb.name, name, answer)
        except OSError as e:
            raise elb.error(f"cannot deregister {name}: {e}") from None
        elb.removed.add(name)
        if draining_timeout:
            timer = threading.Timer(draining_timeout, self._drained, (elb, name, pids))
            timer.daemon = True
            elb.timers.append(timer)
            timer.start()
        else:
            self._shutdown_sessions(elb, name, pids)

    def _drained(self, elb: _Elb, name: str, pids: list[int]) -> None:
        with self._lock:
            elb.timers = [t for t in elb.timers if t.is_alive() and t is not threading.current_thread()]
            if self._elbs.get(elb.key) is elb and elb.running():
                self._shutdown_sessions(elb, name, pids)

    def _shutdown_sessions(self, elb: _Elb, name: str, pids: list[int]) -> None:
        """Shuts down the sessions of server `name` of the listener backends in those of
        `pids` that still run. `pids` are the workers that existed at deregistration: a
        later worker never had that registration (a re-registration of the same
        instance is a new server in a new worker) and is left alone."""
        try:
            procs = parse_proc(self._master(elb, "show proc"))
        except OSError as e:
            LOG.warning("ELB %s: cannot end %s's connections: %s", elb.name, name, e)
            return
        for pid in set(pids) & set(procs.current + procs.old):
            try:
                sessions = self._master(elb, f"@!{pid} show sess")
                for line in sessions.splitlines():
                    m = re.match(r"(0x[0-9a-f]+): .* be=l\d+ srv=(\S+) ", line)
                    if m and m.group(2) == name:
                        self._master(elb, f"@!{pid} shutdown session {m.group(1)}")
            except OSError as e:
                LOG.warning("ELB %s: cannot end %s's connections in worker %s: %s", elb.name, name, pid, e)

    # --- health ---

    def _health_rows(self, elb: _Elb) -> dict[str, dict[str, str]]:
        """The `health` backend's servers in the current worker, by name; also notes
        instances seen InService (or that went DOWN since the worker started)."""
        if not elb.running():
            return {}
        try:
            rows = parse_stat(cli(elb.paths.sock, "show stat"))
        except OSError as e:
            LOG.warning("ELB %s: stats socket: %s", elb.name, e)
            return {}
        out = {}
        for row in rows:
            if row.get("pxname") != "health" or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            name = row["svname"]
            out[name] = row
            went_down = int(row.get("chkdown") or 0) > elb.chkdown_base.get(name, 1 << 30)
            if name not in elb.removed and (row.get("status", "").startswith(("UP", "NOLB")) or went_down):
                elb.ever_up[name] = True
        return out

    # --- processes ---

    def _master(self, elb: _Elb, command: str) -> str:
        return cli(elb.paths.master, command)

    def _alerts(self, elb: _Elb, offset: int) -> str:
        """HAProxy's alerts in the log since `offset`, for an error message."""
        try:
            with open(elb.paths.log, "rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "no log"
        alerts = [re.sub(r"^\[ALERT\]\s+\(\d+\) : ", "", line) for line in lines if "[ALERT]" in line]
        return " | ".join(alerts[-3:]) or " | ".join(lines[-3:]) or "no output"

    def _stop(self, elb: _Elb) -> None:
        for timer in elb.timers:
            timer.cancel()
        elb.timers.clear()
        if elb.proc is not None:
            kill_group(elb.proc.pid, elb.paths.config, elb.proc)
            elb.proc = None
        for path in (elb.paths.pid, elb.paths.sock, elb.paths.master):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        LOG.info("ELB %s: stopped", elb.spec.name)

    def _reap_stale(self) -> None:
        """HAProxies left by an earlier run of this home (the caller died without
        stop_all): they hold the addresses this run hands out again, so stop them."""
        for entry in os.listdir(self.root):
            paths = _Paths.under(os.path.join(self.root, entry))
            try:
                with open(paths.pid) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if group_members(pid, paths.config):
                LOG.warning("stopping haproxy %s left from an earlier run (%s)", pid, paths.config)
                kill_group(pid, paths.config)
            os.unlink(paths.pid)

    @staticmethod
    def _write(path: str, text: str) -> None:
        """Atomically: HAProxy (or a reader) never sees half a file."""
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
