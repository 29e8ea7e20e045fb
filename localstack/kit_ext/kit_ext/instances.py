"""EC2 instances that really run: every running instance whose user data is
`#cloud-config` or a `#!` script boots in a world of its own (see netns.py,
instance_net.py and instance_init.py):

    <kit home>/instances/<instance id>/
        instance.json    what the instance's init needs (hostname, environment)
        user-data        the user data, as EC2 hands it to cloud-init
        console.log      the init's output: cloud-init, runcmd, unit starts and stops
        logs/<unit>.log  each systemd unit's output (the journal's stand-in)
        root/            the overlays' upper layers: everything the instance wrote

The kit's substitutions, each the smallest that lets the real boot path run:
- AWS_ENDPOINT_URL in every process's environment points at the kit (reached through
  the forwarded 127.0.0.1:<kit port>); credentials come from IMDS as on EC2;
- the AWS CLI is the kit's own (`aws` from localstack/.venv), and `systemctl` talks to
  the instance's init;
- security groups are recorded, not enforced.
"""

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from . import imds, netns
from .instance_init import FRESH_DIRS, OVERLAY_DIRS
from .instance_net import InstanceNet

LOG = logging.getLogger("kit.instances")
STOP_GRACE = 30.0  # seconds a shutting-down instance gets before it is killed


@dataclass
class Launch:
    """What the kit needs of a moto instance to boot it."""

    instance_id: str
    account_id: str
    region: str
    availability_zone: str
    vpc_id: str
    vpc_cidr: str
    private_ip: str
    user_data: bytes
    image_id: str
    instance_type: str
    role: str | None
    stack: str | None


@dataclass
class Booted:
    launch: Launch
    ns: str
    vpc_ns: str
    dir: str
    proc: subprocess.Popen | None = None
    state: str = "booting"  # booting, running, dead, stopping, stopped, failed
    error: str | None = None
    lifecycle: str | None = None  # the group's target lifecycle state, for IMDS

    @property
    def init_pid(self) -> int | None:
        """The instance's PID 1, as the host sees it (unshare's only child)."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children", encoding="ascii") as f:
                children = f.read().split()
            return int(children[0]) if children else None
        except (OSError, ValueError):
            return None


def user_data_bytes(value) -> bytes | None:
    """moto keeps user data base64-encoded (a Base64EncodedString, or a plain str
    from a launch template)."""
    if value is None:
        return None
    encoded = getattr(value, "_encoded_string", value)
    try:
        return base64.b64decode(encoded) if isinstance(encoded, str) else bytes(encoded)
    except (ValueError, TypeError):
        return None


def bootable(user_data: bytes | None) -> bool:
    if not user_data:
        return False
    if user_data[:2] == b"\x1f\x8b":
        return True
    return user_data.startswith((b"#cloud-config", b"#!"))


def hostname(ip: str) -> str:
    """EC2's private DNS name form."""
    return "ip-" + ip.replace(".", "-")


class Instances:
    def __init__(self, home: str, kit_port: int, venv_python: str = sys.executable):
        self.home = home
        self.root = os.path.join(home, "instances")
        self.bin = os.path.join(home, "instance-bin")
        self.kit_port = kit_port
        self.python = venv_python
        self.net = InstanceNet()
        self.booted: dict[str, Booted] = {}
        self.lock = threading.RLock()
        self.host_ports: set[int] = {kit_port}
        self._check_home()
        self._write_tools()

    def _check_home(self) -> None:
        for d in OVERLAY_DIRS + FRESH_DIRS:
            if self.root == d or self.root.startswith(d + "/"):
                raise RuntimeError(
                    f"LOCALSTACK_KIT_HOME ({self.home}) is under {d}, which every instance replaces with its own: "
                    "choose a kit home elsewhere (the default is ~/.cache/gateway-kit/localstack)"
                )

    def _write_tools(self) -> None:
        """The instance's `aws` and `systemctl`, first on its PATH."""
        os.makedirs(self.bin, exist_ok=True)
        aws = os.path.join(os.path.dirname(self.python), "aws")
        link = os.path.join(self.bin, "aws")
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(aws, link)
        shim = os.path.join(self.bin, "systemctl")
        with open(shim, "w", encoding="utf-8") as f:
            f.write(
                f"#!{self.python}\n# systemctl on a kit instance: talks to the instance's init.\n"
                "import sys\nfrom kit_ext.instance_init import systemctl_main\n"
                "sys.exit(systemctl_main(sys.argv[1:]))\n"
            )
        os.chmod(shim, 0o755)

    def environment(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.kit_port}",
        }

    # --- boot --------------------------------------------------------------------------

    def meta(self, instance_id: str) -> imds.Meta:
        b = self.booted[instance_id]
        launch = b.launch
        return imds.Meta(
            instance_id=launch.instance_id,
            account_id=launch.account_id,
            region=launch.region,
            availability_zone=launch.availability_zone,
            private_ip=launch.private_ip,
            hostname=hostname(launch.private_ip),
            image_id=launch.image_id,
            instance_type=launch.instance_type,
            role=launch.role,
            # The kit maps a 12-digit access key to that account, "test" to the default one.
            access_key="test" if launch.account_id == "000000000000" else launch.account_id,
            user_data=launch.user_data,
            target_lifecycle_state=b.lifecycle,
        )

    def boot(self, launch: Launch) -> None:
        """Boots in the background; the instance shows `booting` until its init runs."""
        with self.lock:
            if launch.instance_id in self.booted:
                return
            b = self.booted[launch.instance_id] = Booted(
                launch=launch,
                ns=netns.instance_ns(launch.instance_id),
                vpc_ns=netns.vpc_ns(launch.vpc_id),
                dir=os.path.join(self.root, launch.instance_id),
            )
        threading.Thread(target=self._boot, args=(b,), name=f"boot-{launch.instance_id}", daemon=True).start()

    def _boot(self, b: Booted) -> None:
        launch = b.launch
        try:
            os.makedirs(os.path.join(b.dir, "logs"), exist_ok=True)
            first = not os.path.exists(os.path.join(b.dir, "instance.json"))
            with open(os.path.join(b.dir, "user-data"), "wb") as f:
                f.write(launch.user_data)
            with open(os.path.join(b.dir, "instance.json"), "w", encoding="utf-8") as f:
                json.dump(
                    {"id": launch.instance_id, "hostname": hostname(launch.private_ip), "env": self.environment()},
                    f,
                    indent=2,
                )
            netns.add_instance(launch.instance_id, launch.vpc_id, launch.vpc_cidr, launch.private_ip)
            self.net.attach(b.ns, lambda: self.meta(launch.instance_id), set(self.host_ports))
            console = open(os.path.join(b.dir, "console.log"), "ab", buffering=0)
            if first:
                console.write(
                    f"kit: {launch.instance_id} ({launch.private_ip}, {launch.region}, stack "
                    f"{launch.stack or '-'}) launched\n".encode()
                )
            with self.lock:
                if b.state != "booting":  # terminated while the namespace was made
                    console.close()
                    return
                b.proc = subprocess.Popen(
                    [
                        "ip", "netns", "exec", b.ns,
                        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
                        "--kill-child=SIGKILL",
                        self.python, "-m", "kit_ext.instance_init", "boot", b.dir,
                    ],
                    stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                    start_new_session=True, env=self.environment(), cwd="/",
                )
                b.state = "running"
            console.close()
            LOG.info("instance %s booting (%s, ns %s)", launch.instance_id, launch.private_ip, b.ns)
        except Exception as e:
            LOG.error("instance %s could not boot: %s", launch.instance_id, e)
            with self.lock:
                b.state, b.error = "failed", str(e)
            self._teardown_net(b)

    # --- stop and terminate ---------------------------------------------------------------

    def _teardown_net(self, b: Booted) -> None:
        try:
            self.net.detach(b.ns)
        except Exception as e:
            LOG.warning("instance %s: %s", b.launch.instance_id, e)
        netns.delete(b.ns)

    def _shutdown(self, b: Booted, grace: float) -> None:
        """SIGTERM to the instance's init (its units stop as systemd stops them), then
        SIGKILL of the whole PID namespace after `grace` seconds."""
        proc = b.proc
        if proc is not None and proc.poll() is None:
            pid = b.init_pid
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                LOG.warning("instance %s did not shut down in %ss: killing it", b.launch.instance_id, grace)
                proc.kill()  # unshare --kill-child takes the instance's PID 1 along
                proc.wait(10)
        self._teardown_net(b)

    def terminate(self, instance_id: str, grace: float = STOP_GRACE) -> None:
        """Shuts the instance down and removes it; its logs stay until the kit resets."""
        with self.lock:
            b = self.booted.get(instance_id)
            if b is None or b.state in ("stopping", "terminated"):
                return
            b.state = "stopping"

        def run():
            self._shutdown(b, grace)
            shutil.rmtree(os.path.join(b.dir, "root"), ignore_errors=True)
            with self.lock:
                b.state = "terminated"
                self.booted.pop(instance_id, None)
            LOG.info("instance %s terminated", instance_id)

        threading.Thread(target=run, name=f"terminate-{instance_id}", daemon=True).start()

    def stop(self, instance_id: str) -> None:
        """StopInstances: shut down, keep the root (an EBS root volume survives a stop)."""
        with self.lock:
            b = self.booted.get(instance_id)
            if b is None or b.state != "running":
                return
            b.state = "stopping"

        def run():
            self._shutdown(b, STOP_GRACE)
            with self.lock:
                self.booted.pop(instance_id, None)

        threading.Thread(target=run, name=f"stop-{instance_id}", daemon=True).start()

    def shutdown_all(self) -> None:
        """The kit stops: every instance, at once, and their namespaces (the VPCs'
        are the data plane's to remove)."""
        with self.lock:
            items = list(self.booted.values())
            self.booted.clear()
        threads = [threading.Thread(target=self._shutdown, args=(b, 10.0)) for b in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # --- state --------------------------------------------------------------------------

    def check(self) -> None:
        """Notices instances whose init died (killed, crashed): they stay `running` in
        EC2, as a hung instance does, and the ELB's health checks find out."""
        with self.lock:
            for b in self.booted.values():
                if b.state == "running" and b.proc is not None and b.proc.poll() is not None:
                    b.state = "dead"
                    LOG.warning("instance %s: its init exited (%s)", b.launch.instance_id, b.proc.returncode)

    def set_host_ports(self, ports: set[int]) -> None:
        ports = set(ports) | {self.kit_port}
        with self.lock:
            if ports == self.host_ports:
                return
            self.host_ports = ports
            targets = [b.ns for b in self.booted.values() if b.state in ("running", "booting")]
        for ns in targets:
            try:
                self.net.set_ports(ns, ports)
            except Exception as e:
                LOG.warning("%s: %s", ns, e)

    def get(self, instance_id: str) -> Booted | None:
        with self.lock:
            return self.booted.get(instance_id)

    def listing(self) -> list[dict]:
        with self.lock:
            items = list(self.booted.values())
        out = []
        for b in items:
            out.append(
                {
                    "instance_id": b.launch.instance_id,
                    "stack": b.launch.stack,
                    "region": b.launch.region,
                    "vpc_id": b.launch.vpc_id,
                    "private_ip": b.launch.private_ip,
                    "namespace": b.ns,
                    "state": b.state,
                    "lifecycle": b.lifecycle,
                    "pid": b.init_pid,
                    "console_log": os.path.join(b.dir, "console.log"),
                    "logs": os.path.join(b.dir, "logs"),
                    "error": b.error,
                }
            )
        return sorted(out, key=lambda i: (i["region"], i["stack"] or "", i["instance_id"]))
