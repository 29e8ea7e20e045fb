"""Propagation of Admin API changes across gateway nodes on one PostgreSQL.

  propagation.py --admin A,B,C --proxy A,B,C --upstream URL --changes N
                 [--timeout-s 5] [--interval-ms 1] [--deadline-s S] [--pids A,B,C]

The nodes (admin and proxy ports on 127.0.0.1, node A first) must share one
database. The script waits until every node is ready, creates one service
pointing at URL on node A, then makes N changes. Change i adds the route
/prop-i/ on node A (POST /services/perf-upstream/routes, JSON). Its figure is
the time from just before the write is sent until BOTH B and C answer 200 on
/prop-i/. After the write returns, B and C are polled in turn on keep-alive
connections, with INTERVAL ms of sleep between rounds. A change that is not
served by both within TIMEOUT seconds counts as failed. The run stops early
after 3 failures in a row, or when DEADLINE seconds have passed since the
first change.

Before the changes, one change that is not counted (/prop-warmup/) checks the
whole path: B and C answer 404 before it and the upstream's body after it.

Prints one JSON object (the figures in ms, and every sample) on stdout;
progress and errors go to stderr. Exit 1 if the set-up fails (nothing
measured); failed changes are figures, not errors.
"""
import argparse
import http.client
import json
import math
import os
import statistics
import sys
import time

SERVICE = "perf-upstream"
READY_TIMEOUT_S = 30
FAILS_IN_A_ROW = 3


def say(msg):
    print(f"    propagation: {msg}", file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port; reconnects when needed."""

    def __init__(self, port, timeout=2.0):
        self.port, self.timeout, self.conn, self.connects = port, timeout, None, 0

    def request(self, method, path, body=None):
        """(status, body bytes); status 0 if nothing answered."""
        headers = {"Host": "localhost"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.connects += 1
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                if r.will_close:
                    self.close()
                return r.status, payload
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return 0, b""
        return 0, b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(sorted_xs, p):
    """Nearest rank, sorted[round((n-1)p)], as gateway/tests/cluster.rs does."""
    return sorted_xs[int(math.floor((len(sorted_xs) - 1) * p + 0.5))]


def check_alive(pids):
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"propagation.py: node {name} (pid {pid}) has exited")
        except PermissionError:
            pass


def wait_ready(admins, pids):
    t0 = time.monotonic()
    for name, c in admins.items():
        while True:
            check_alive(pids)
            status, _ = c.request("GET", "/status/ready")
            if status == 200:
                break
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                sys.exit(f"propagation.py: node {name} is not ready after {READY_TIMEOUT_S}s (last answer {status})")
            time.sleep(0.05)
    return time.monotonic() - t0


def wait_served(proxies, path, timeout_s, interval_s, t0):
    """Polls every node in `proxies` in turn until each answers 200 on path.
    Returns ({node: seconds since t0}, {node: last status}, polls); a node
    missing from the first dict did not get there within timeout_s of t0."""
    done, last, polls = {}, {}, 0
    while True:
        for name, c in proxies.items():
            if name in done:
                continue
            status, _ = c.request("GET", path)
            polls += 1
            last[name] = status
            if status == 200:
                done[name] = time.perf_counter() - t0
        if len(done) == len(proxies) or time.perf_counter() - t0 > timeout_s:
            return done, last, polls
        time.sleep(interval_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", required=True, help="admin ports, node A first, comma-separated")
    ap.add_argument("--proxy", required=True, help="proxy ports, same order")
    ap.add_argument("--upstream", required=True, help="the service's url")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--timeout-s", type=float, default=5.0)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--deadline-s", type=float, default=150.0)
    ap.add_argument("--pids", default="", help="the nodes' pids, same order: a node that dies stops the run")
    ap.add_argument("--expect-body", default="ok\n")
    a = ap.parse_args()

    names = [chr(ord("A") + i) for i in range(len(a.admin.split(",")))]
    if len(names) < 2 or len(a.proxy.split(",")) != len(names):
        sys.exit("propagation.py: --admin and --proxy need the same number (2 or more) of ports")
    admins = {n: Client(int(p)) for n, p in zip(names, a.admin.split(","))}
    proxies = {n: Client(int(p)) for n, p in zip(names, a.proxy.split(","))}
    pids = {n: int(p) for n, p in zip(names, a.pids.split(","))} if a.pids else {}
    writer, readers = admins[names[0]], {n: proxies[n] for n in names[1:]}
    interval = a.interval_ms / 1000

    ready_s = wait_ready(admins, pids)
    say(f"{len(names)} nodes ready after {ready_s:.1f}s")
    status, body = admins[names[0]].request("GET", "/cluster")
    cluster_nodes = None
    if status == 200:
        try:
            cluster_nodes = sum(1 for n in json.loads(body).get("data", []) if n.get("status") == "active")
        except (ValueError, AttributeError):
            pass

    status, body = writer.request("POST", "/services", {"name": SERVICE, "url": a.upstream})
    if status != 201:
        sys.exit(f"propagation.py: POST /services on node A answered {status}: {body[:300]!r}")

    # The change that is not counted: the whole path works, and the poll does
    # not see a 200 before the route exists.
    for n, c in readers.items():
        status, _ = c.request("GET", "/prop-warmup/")
        if status != 404:
            sys.exit(f"propagation.py: node {n} answers {status} (not 404) for /prop-warmup/ before that route exists")
    t0 = time.perf_counter()
    status, body = writer.request("POST", f"/services/{SERVICE}/routes",
                                  {"name": "prop-warmup", "paths": ["/prop-warmup/"], "strip_path": False})
    if status != 201:
        sys.exit(f"propagation.py: POST /services/{SERVICE}/routes on node A answered {status}: {body[:300]!r}")
    done, last, _ = wait_served(readers, "/prop-warmup/", a.timeout_s, interval, t0)
    if len(done) != len(readers):
        check_alive(pids)
        sys.exit(f"propagation.py: the warm-up route did not serve within {a.timeout_s}s; last answers {last}")
    for n, c in readers.items():
        status, got = c.request("GET", "/prop-warmup/")
        if status != 200 or got.decode(errors="replace") != a.expect_body:
            sys.exit(f"propagation.py: node {n} answers {status} {got[:100]!r} on /prop-warmup/, not the upstream's 200 {a.expect_body!r}")
    say(f"warm-up change served by {'+'.join(readers)} after {max(done.values()) * 1000:.1f} ms (not counted)")

    samples, writes, per_node, failures, polls_total = [], [], {n: [] for n in readers}, [], 0
    fails_in_a_row, stopped = 0, None
    start = time.monotonic()
    for i in range(a.changes):
        if time.monotonic() - start > a.deadline_s:
            stopped = f"the step's deadline ({a.deadline_s:.0f}s) passed after {i} changes"
            break
        if fails_in_a_row >= FAILS_IN_A_ROW:
            stopped = f"{FAILS_IN_A_ROW} changes in a row timed out; stopped after {i} changes"
            break
        check_alive(pids)
        path = f"/prop-{i}/"
        t0 = time.perf_counter()
        status, body = writer.request("POST", f"/services/{SERVICE}/routes",
                                      {"name": f"prop-{i}", "paths": [path], "strip_path": False})
        write_s = time.perf_counter() - t0
        if status != 201:
            sys.exit(f"propagation.py: change {i}: POST on node A answered {status}: {body[:300]!r}")
        done, last, polls = wait_served(readers, path, a.timeout_s, interval, t0)
        polls_total += polls
        writes.append(round(write_s * 1000, 3))
        if len(done) == len(readers):
            samples.append(round(max(done.values()) * 1000, 3))
            for n in readers:
                per_node[n].append(round(done[n] * 1000, 3))
            fails_in_a_row = 0
        else:
            failures.append({"change": i, "served_by": sorted(done), "last_status": last})
            fails_in_a_row += 1
            say(f"change {i} ({path}) not served by every node within {a.timeout_s}s: last answers {last}")
    elapsed = time.monotonic() - start

    attempted = len(samples) + len(failures)
    # A timed-out change ranks above every measured one; a percentile that
    # lands on one is reported as the timeout (a lower bound; see "failed").
    ranked = sorted(samples) + [a.timeout_s * 1000] * len(failures)
    fig = lambda p: round(percentile(ranked, p), 3) if ranked else None  # noqa: E731
    out = {
        "changes": attempted,
        "planned": a.changes,
        "measured": len(samples),
        "failed": len(failures),
        "p50_ms": fig(0.5),
        "p99_ms": fig(0.99),
        "max_ms": round(max(ranked), 3) if ranked else None,
        "min_ms": round(min(samples), 3) if samples else None,
        "mean_ms": round(statistics.fmean(samples), 3) if samples else None,
        "write_p50_ms": round(percentile(sorted(writes), 0.5), 3) if writes else None,
        "node_p50_ms": {n: round(percentile(sorted(v), 0.5), 3) if v else None for n, v in per_node.items()},
        "timeout_ms": a.timeout_s * 1000,
        "interval_ms": a.interval_ms,
        "nodes": len(names),
        "cluster_active_nodes": cluster_nodes,
        "polls": polls_total,
        "connects": sum(c.connects for c in proxies.values()),
        "step_s": round(elapsed, 1),
        "stopped_early": stopped,
        "failures": failures,
        "samples_ms": samples,
        "write_ms": writes,
    }
    print(json.dumps(out))
    for c in [*admins.values(), *proxies.values()]:
        c.close()


if __name__ == "__main__":
    main()  # Ctrl-C: Python dies of SIGINT, so the harness's shell sees it and cleans up
