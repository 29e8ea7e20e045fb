"""HAProxy as a running program: one command on its stats socket or master CLI, the
answers parsed (`show stat`, `show proc`), and its process group (master and workers)
found and stopped. balancers.py decides what each ELB's HAProxy runs; this module only
talks to it."""

import csv
import logging
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

LOG = logging.getLogger(__name__)
CLI_TIMEOUT = 5.0


def cli(path: str, command: str, timeout: float = CLI_TIMEOUT) -> str:
    """One command on a HAProxy stats socket or master CLI; returns its whole answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # the master CLI answers only once it sees the end
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_stat(text: str) -> list[dict[str, str]]:
    """`show stat` CSV into dicts keyed by column name."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    return [dict(zip(header, row)) for row in csv.reader(lines[1:])]


@dataclass
class _Procs:
    current: list[int]
    old: list[int]
    failed: int  # failed reloads since the last successful one


def parse_proc(text: str) -> _Procs:
    """The master CLI's `show proc`."""
    current, old, failed, section = [], [], 0, ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip()
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        if parts[1] == "master":
            m = re.search(r"\[failed: (\d+)\]", line)
            failed = int(m.group(1)) if m else 0
        elif parts[1] == "worker" and parts[0].isdigit():
            (old if section == "# old workers" else current).append(int(parts[0]))
    return _Procs(current, old, failed)


def listening_addresses() -> set[str]:
    """IPv4 addresses with a listening TCP socket in this network namespace."""
    found = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[3] == "0A":  # TCP_LISTEN
                    # The address is the 32-bit value in host (little-endian) order.
                    found.add(socket.inet_ntoa(bytes.fromhex(parts[1].split(":")[0])[::-1]))
    except (OSError, StopIteration, ValueError):
        pass
    return found


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 5 is the process group; the command name (field 2) may hold spaces.
            return int(f.read().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def group_members(pgid: int, config: str) -> list[int]:
    """Live processes of process group `pgid` running HAProxy on `config`: the master
    and its workers. Both conditions, so a recycled pid is never taken for ours."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            if _pgid(pid) == pgid and config in _cmdline(pid) and not _is_zombie(pid):
                found.append(pid)
    return found


def kill_group(pgid: int, config: str, proc: subprocess.Popen | None = None, grace: float = 3.0) -> None:
    """Stops master and workers: SIGTERM (the master stops its workers too), then
    SIGKILL for whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        members = group_members(pgid, config)
        if not members:
            break
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()  # reap our child so it does not linger as a zombie
            if not group_members(pgid, config):
                break
            time.sleep(0.05)
    if proc is not None:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            LOG.warning("haproxy master %s did not exit", proc.pid)
