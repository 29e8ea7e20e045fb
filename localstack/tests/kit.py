"""Helpers shared by the kit's Python tests: the kit's commands, boto3 clients, waits."""

import glob
import os
import subprocess
import time
import unittest

import boto3
from botocore.config import Config

KIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.environ.get("LOCALSTACK_KIT_HOME") or os.path.expanduser("~/.cache/gateway-kit/localstack")


def run(command: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs localstack/<command>; returns the finished process (stdout/stderr as text)."""
    return subprocess.run(
        [os.path.join(KIT_DIR, command), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start() -> str:
    """Starts the kit (idempotent) and returns its endpoint."""
    out = run("start")
    assert out.returncode == 0, f"localstack/start failed:\n{out.stderr}"
    return out.stdout.strip().splitlines()[-1]


def client(service: str, endpoint: str, region: str = "us-east-1"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60),
    )


def wait(what: str, check, limit: float = 120.0, step: float = 0.5):
    """Calls check() until it returns a truthy value; fails after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        time.sleep(step)


def cluster_dirs() -> list[str]:
    root = os.path.join(HOME, "rds", "clusters")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def cluster_dir_serving(port: int) -> str | None:
    """The cluster directory whose PostgreSQL listens on port (the fourth line of its
    postmaster.pid): one DB instance's files, told apart from those of instances that
    tests running beside this one make and drop meanwhile."""
    for name in cluster_dirs():
        try:
            with open(os.path.join(HOME, "rds", "clusters", name, "data", "postmaster.pid"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if len(lines) > 3 and lines[3].strip() == str(port):
            return name
    return None


def processes() -> dict[int, str]:
    """Every process's command line, by pid (processes that end meanwhile are skipped)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def kit_postgres_pids() -> list[int]:
    """PostgreSQL servers whose data directory is under the kit's home."""
    return [pid for pid, cmd in processes().items() if "postgres -D " + HOME + "/" in cmd]


def dataplane_pids() -> list[int]:
    """The instances' processes and the ELBs' HAProxies of the kit's home."""
    return [
        pid for pid, cmd in processes().items()
        if f"instance_init boot {HOME}/" in cmd or ("haproxy" in cmd and f"{HOME}/elb/" in cmd)
    ]


def kit_namespaces() -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith("kit-"))
    except FileNotFoundError:
        return []


def kit_mounts() -> list[str]:
    """Mount points the kit left in the host's mount namespace (namespace files)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if "/run/netns/kit-" in line.split()[4]]


def localstack_pids() -> list[int]:
    pids = []
    for pid, cmd in processes().items():
        if "localstack.runtime.main" not in cmd:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if f"LOCALSTACK_KIT_HOME={HOME}".encode() in env:
            pids.append(pid)
    return pids


def pg_tool(name: str) -> str:
    for d in (os.environ.get("KIT_PG_BIN", ""), "/usr/lib/postgresql/15/bin"):
        if d and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return name


def psql(host: str, port: int, user: str, password: str, db: str, sql: str) -> str:
    out = subprocess.run(
        [pg_tool("psql"), "-X", "-A", "-t", "-h", host, "-p", str(port), "-U", user, "-d", db, "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
        check=False,
    )
    assert out.returncode == 0, f"psql failed: {out.stderr}"
    return out.stdout.strip()


def plugin_dir() -> str:
    """The directory holding registry.terraform.io/hashicorp/aws/... (TF_PLUGIN_DIR wins)."""
    wanted = "registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws_*"
    roots = [os.environ.get("TF_PLUGIN_DIR", ""), "/opt/tf-plugins",
             os.path.expanduser("~/.terraform.d/plugins"), "/usr/share/terraform/plugins",
             os.path.expanduser("~/.local/share/terraform/plugins")]
    for root in filter(None, roots):
        if glob.glob(os.path.join(root, wanted)):
            return root
    found = subprocess.run(
        ["find", "/", "-xdev", "-name", "terraform-provider-aws_*", "-path", "*registry.terraform.io*",
         "-not", "-path", "/proc/*", "-print", "-quit"],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout.strip()
    if not found:
        raise unittest.SkipTest("no local mirror of the terraform AWS provider (set TF_PLUGIN_DIR)")
    return found[: found.index("/registry.terraform.io/")]
