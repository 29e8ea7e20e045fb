"""Start-up time and resident memory of a gateway node.

  startup.py --admin-port PORT --runs N [--settle S] [--log FILE] -- CMD...

Runs CMD (a `gateway start ...`, possibly behind taskset) N times. Each time it
measures the wall time from exec to the first 200 from GET /status/ready on
the admin port, waits SETTLE seconds, reads the node's VmRSS, then stops it with
SIGTERM. Prints one JSON object: startup_ms (every run), median_ms, rss_mb
(median over runs).
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


def ready_status(port):
    """The status code of GET /status/ready, or None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /status/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def rss_mb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_run(cmd, port, settle, log):
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"startup.py: the node exited with {proc.returncode} before it was ready (see {log.name})")
            if ready_status(port) == 200:
                elapsed_ms = (time.monotonic() - t0) * 1000
                break
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                sys.exit(f"startup.py: not ready after {READY_TIMEOUT_S}s (see {log.name})")
            time.sleep(0.002)
        time.sleep(settle)
        return elapsed_ms, rss_mb(proc.pid)
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        sys.exit("startup.py: no command given")
    if ready_status(a.admin_port) is not None:
        sys.exit(f"startup.py: something already answers on 127.0.0.1:{a.admin_port}")
    times, rss = [], []
    with open(a.log, "ab") as log:
        for _ in range(a.runs):
            ms, mb = one_run(cmd, a.admin_port, a.settle, log)
            times.append(round(ms, 1))
            rss.append(round(mb, 1))
    print(json.dumps({
        "startup_ms": times,
        "median_ms": round(statistics.median(times), 1),
        "rss_mb": round(statistics.median(rss), 1),
    }))


if __name__ == "__main__":
    main()
