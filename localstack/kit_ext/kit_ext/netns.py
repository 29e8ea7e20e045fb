"""Network namespaces for the kit's VPCs and instances (Debian's iproute2, as root).

Layout, per VPC and per instance:

    kit-vpc-<vpc id>        one per VPC: a bridge `br0` holding the ELBs' address in the
                            VPC (its last usable address), the VPC's "wire"
    kit-i-<instance id>     one per booted instance: `eth0` (a veth whose peer sits on the
                            VPC's bridge) with the instance's PrivateIpAddress, `lo` with
                            127.0.0.1 and IMDS's 169.254.169.254

Every VPC gets a namespace of its own, so two stacks (or two regions) with the same
CIDR never see each other. Instances use the VPC's prefix on `eth0` rather than their
subnet's: the kit has no VPC router, and one L2 segment per VPC lets every node reach
every other, as the VPC's implicit router lets them on AWS.

`socket_in(ns)` opens a socket inside a namespace from this (host) process: a socket
keeps the namespace it was created in, so the kit serves IMDS and forwards its own
endpoints into instances without any process of its own in there.
"""

import ctypes
import hashlib
import ipaddress
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
PREFIX = "kit-"
IMDS_ADDRESS = "169.254.169.254"


class NetnsError(Exception):
    """A namespace operation failed; the message names it and says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as e:
        raise NetnsError("`ip` (iproute2) is not installed: apt-get install -y iproute2") from e
    if check and out.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def vpc_ns(vpc_id: str) -> str:
    return f"{PREFIX}vpc-{vpc_id.removeprefix('vpc-')}"


def instance_ns(instance_id: str) -> str:
    return f"{PREFIX}{instance_id}"


def _short(kind: str, name: str) -> str:
    """Interface names are at most 15 bytes: a stable hash of the namespace name."""
    return f"k{kind}{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def elb_address(cidr: str) -> str:
    """The ELBs' address inside a VPC: its last usable address, which the stack's
    subnets (the first blocks of the VPC) never hand out."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.broadcast_address - 1)


_vpc_lock = threading.Lock()  # instances of one VPC boot at once
# The VPC namespaces this process made: the only ones it may remove (another process,
# a test say, may run namespaces of its own beside the kit's).
created_vpcs: set[str] = set()


def ensure_vpc(vpc_id: str, cidr: str) -> str:
    """Creates the VPC's namespace and bridge once; returns the namespace's name."""
    ns = vpc_ns(vpc_id)
    with _vpc_lock:
        if not exists(ns):
            _create_vpc(ns, cidr)
        created_vpcs.add(ns)
    return ns


def _create_vpc(ns: str, cidr: str) -> None:
    _ip("netns", "add", ns)
    try:
        prefix = ipaddress.ip_network(cidr, strict=False).prefixlen
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", ns, "addr", "add", f"{elb_address(cidr)}/{prefix}", "dev", "br0")
        _ip("-n", ns, "link", "set", "br0", "up")
    except NetnsError:
        delete(ns)
        raise


def add_instance(instance_id: str, vpc_id: str, cidr: str, ip: str) -> str:
    """The instance's namespace, wired to its VPC's bridge with `ip` on eth0."""
    vpc = ensure_vpc(vpc_id, cidr)
    ns = instance_ns(instance_id)
    delete(ns)  # a leftover of a kit that died
    prefix = ipaddress.ip_network(cidr, strict=False).prefixlen
    inside, outside = _short("i", ns), _short("v", ns)
    _ip("link", "del", outside, check=False)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "netns", vpc)
        _ip("-n", vpc, "link", "set", outside, "master", "br0")
        _ip("-n", vpc, "link", "set", outside, "up")
        _ip("-n", ns, "link", "set", inside, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo")
    except NetnsError:
        delete(ns)
        _ip("link", "del", inside, check=False)
        raise
    return ns


def delete(ns: str) -> None:
    """Removes a namespace (its veth goes with it); absent is fine."""
    if exists(ns):
        _ip("netns", "del", ns, check=False)


def socket_in(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside namespace `ns`.

    setns() changes the calling thread only, so a short-lived thread enters the
    namespace, creates the socket and ends; this process's other threads never leave
    the host's namespace."""
    result: dict = {}

    def enter_and_create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(family, kind)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=enter_and_create, name=f"setns-{ns}")
    t.start()
    t.join()
    if "error" in result:
        raise NetnsError(f"cannot open a socket in namespace {ns}: {result['error']}")
    return result["sock"]


def listen_in(ns: str, address: str, port: int, backlog: int = 128) -> socket.socket:
    sock = socket_in(ns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise NetnsError(f"cannot listen on {address}:{port} in {ns}: {e}") from e
    return sock
