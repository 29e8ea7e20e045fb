"""Collects the harness's measurements and writes the table and the JSON.

  report.py record ROUNDS --scenario S --contender C --round N --wrk-out FILE
                   --before SNAPSHOT --after SNAPSHOT --times TIMES0 TIMES1
      parses wrk's PERF_RESULT line (lib/report.lua), takes CPU deltas from two
      `procstat.py snapshot`s and two `times` outputs, and appends one round
  report.py fact FACTS KEY VALUE
      appends one fact; VALUE is JSON if it parses as JSON, else a string
  report.py summarize --rounds ROUNDS --facts FACTS --out FILE --mode quick|full
      prints the table and writes the JSON (keys: see tests/perf/README.md)
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

CONTENDERS = ["gateway", "nginx", "haproxy"]
SCENARIOS = [
    ("proxy", "Proxy, 1 route, plain HTTP"),
    ("proxy_10k_routes", "Proxy, 10,000 routes, plain HTTP"),
    ("tls", "Proxy, 1 route, TLS terminated by the contender"),
]
METRICS = [  # key, label, format, higher is better
    ("rps", "req/s", "{:.0f}", True),
    ("p50_ms", "p50 latency ms", "{:.2f}", False),
    ("p99_ms", "p99 latency ms", "{:.2f}", False),
    ("p999_ms", "p99.9 latency ms", "{:.2f}", False),
    ("cpu_s_per_10k", "CPU s per 10k req", "{:.3f}", False),
    ("peak_rss_mb", "peak RSS MB", "{:.1f}", False),
]
PROVISIONER_KEYS = ["up_s", "noop_up_s", "terraform_apply_s"]


def children_seconds(path):
    """CPU seconds of a shell's finished children, from bash's `times` output."""
    with open(path, encoding="ascii") as f:
        line = f.read().splitlines()[1]  # line 1: the shell itself; line 2: its children
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))


def machine_busy(before, after):
    """Busy % of each CPU between two procstat.py snapshots."""
    out = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before.get(cpu, (busy, total))
        if total > t0:
            out[cpu] = round(100 * (busy - b0) / (total - t0), 1)
    return out


def record(a):
    result = None
    with open(a.wrk_out, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("PERF_RESULT "):
                result = json.loads(line[len("PERF_RESULT "):])
    if result is None:
        sys.exit(f"report.py: no PERF_RESULT line in {a.wrk_out}: wrk failed?")
    before, after = json.loads(a.before), json.loads(a.after)
    seconds = result["duration_us"] / 1e6
    cpu = max(0.0, after["cpu"] - before["cpu"])
    wrk_cpu = children_seconds(a.times[1]) - children_seconds(a.times[0])
    load_cpu = max(0.0, after["load_cpu"] - before["load_cpu"]) + wrk_cpu
    errors = sum(v for k, v in result.items() if k.startswith("err_"))
    row = {
        "scenario": a.scenario,
        "contender": a.contender,
        "round": a.round,
        "rps": result["requests"] / seconds if seconds else 0.0,
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "p999_ms": result["p999_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "requests": result["requests"],
        "seconds": seconds,
        "cpu_s": cpu,
        "cpu_s_per_10k": cpu / result["requests"] * 10_000 if result["requests"] else None,
        # The user and kernel parts (absent from snapshots of older runs).
        "cpu_user_s": max(0.0, after.get("cpu_user", 0) - before.get("cpu_user", 0)),
        "cpu_sys_s": max(0.0, after.get("cpu_sys", 0) - before.get("cpu_sys", 0)),
        "cpu_busy_pct": 100 * cpu / seconds if seconds else None,
        "load_cpu_s": load_cpu,
        "load_busy_pct": 100 * load_cpu / seconds if seconds else None,
        "machine_cpu_busy_pct": machine_busy(before["cpus"], after["cpus"]),
        "errors": errors,
        "wrk": result,
    }
    with open(a.rounds, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    machine = " ".join(f"{c}: {v:.0f}%" for c, v in row["machine_cpu_busy_pct"].items())
    warn = f"  ERRORS: {errors}" if errors else ""
    print(f"    {a.contender:<8} round {a.round}: {row['rps']:>7.0f} req/s  p50 {row['p50_ms']:.2f}"
          f"  p99 {row['p99_ms']:.2f}  p99.9 {row['p999_ms']:.2f} ms;  CPU busy: contender"
          f" {row['cpu_busy_pct']:.0f}%, load side {row['load_busy_pct']:.0f}%, machine {machine}{warn}",
          file=sys.stderr)


def fact(a):
    try:
        value = json.loads(a.value)
    except json.JSONDecodeError:
        value = a.value
    with open(a.facts, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": a.key, "value": value}) + "\n")


def read_jsonl(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def rnd(x, digits):
    return None if x is None else round(x, digits)


def machine():
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "model_name": model, "kernel": platform.release()}


def git(root, *args):
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: never touch the index
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              env=env, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def scenario_block(rounds, facts, scenario, notes):
    """The JSON block of one scenario, and the CPU-busy figures for the table."""
    block = {m[0]: {} for m in METRICS}
    busy = {"contender": {}, "load": {}, "machine": {}}
    for c in CONTENDERS:
        rs = [r for r in rounds if r["scenario"] == scenario and r["contender"] == c]
        if not rs:
            notes[f"{scenario}.{c}"] = "not measured (the run stopped before it)"
        block["rps"][c] = rnd(median(r["rps"] for r in rs), 1)
        for k in ("p50_ms", "p99_ms", "p999_ms"):
            block[k][c] = rnd(median(r[k] for r in rs), 3)
        block["cpu_s_per_10k"][c] = rnd(median(r["cpu_s_per_10k"] for r in rs), 4)
        block["peak_rss_mb"][c] = facts.get(f"hwm.{scenario}.{c}")
        busy["contender"][c] = median(r["cpu_busy_pct"] for r in rs)
        busy["load"][c] = median(r["load_busy_pct"] for r in rs)
        cpus = sorted({k for r in rs for k in r["machine_cpu_busy_pct"]}, key=int)
        busy["machine"][c] = {k: median(r["machine_cpu_busy_pct"].get(k) for r in rs) for k in cpus}
        errors = sum(r["errors"] for r in rs)
        if errors:
            notes[f"{scenario}.{c}.errors"] = f"wrk counted {errors} errors (socket errors or non-2xx/3xx) over {len(rs)} rounds"
    limited = [c for c in CONTENDERS if (busy["contender"][c] or 100) < 80]
    if limited:
        loaded = [c for c in limited if (busy["load"][c] or 0) >= 85]
        why = ("the load side (wrk + front HAProxy + upstream nginx) used "
               + "/".join(f"{busy['load'][c]:.0f}" for c in loaded)
               + "% of its CPU: it was the limit" if loaded else
               "the load side had CPU to spare: other work on the machine, or waiting, was the limit")
        notes[f"{scenario}.cpu_busy"] = (
            ", ".join(f"{c} used {busy['contender'][c]:.0f}%" for c in limited)
            + f" of its CPU; {why}; req/s there is below the contender's ceiling and"
            " CPU s per 10k req (req/s per CPU-second) is the figure that compares them")
    block["ratio_rps_vs_nginx"] = rnd(ratio(block["rps"]["gateway"], block["rps"]["nginx"]), 3)
    block["ratio_p99_vs_nginx"] = rnd(ratio(block["p99_ms"]["gateway"], block["p99_ms"]["nginx"]), 3)
    return block, busy


PLUGINS = "plugins."


def per_10k(r, key):
    return r[key] / r["requests"] * 10_000 if r.get(key) is not None and r["requests"] else None


def plugins_block(rounds, facts, notes):
    """Per plugin set (gen_plugins.py), the gateway's figures and its CPU per
    request against the set without plugins ("none"). The ratio pairs each
    round of a set with the round of "none" taken in the same turn (minutes
    apart at most), and gives the median of those ratios and their range: the
    machine's drift from one turn to the next cancels out of each pair."""
    names = []
    for r in rounds:
        if r["scenario"].startswith(PLUGINS) and r["scenario"][len(PLUGINS):] not in names:
            names.append(r["scenario"][len(PLUGINS):])
    block = {}
    base_rounds = {r["round"]: r for r in rounds if r["scenario"] == PLUGINS + "none"}
    for n in names:
        rs = [r for r in rounds if r["scenario"] == PLUGINS + n]
        paired = [ratio(r["cpu_s_per_10k"], base_rounds[r["round"]]["cpu_s_per_10k"])
                  for r in rs if r["round"] in base_rounds]
        paired = [x for x in paired if x is not None]
        block[n] = {
            "cpu_s_per_10k": rnd(median(r["cpu_s_per_10k"] for r in rs), 4),
            "cpu_user_s_per_10k": rnd(median(per_10k(r, "cpu_user_s") for r in rs), 4),
            "cpu_sys_s_per_10k": rnd(median(per_10k(r, "cpu_sys_s") for r in rs), 4),
            "ratio_cpu_vs_none": rnd(median(paired), 3),
            "ratio_cpu_vs_none_range": [rnd(min(paired), 3), rnd(max(paired), 3)] if paired else None,
            "rps": rnd(median(r["rps"] for r in rs), 1),
            "p99_ms": rnd(median(r["p99_ms"] for r in rs), 3),
            "peak_rss_mb": facts.get(f"hwm.plugins.{n}"),
            "rounds": len(rs),
        }
        errors = sum(r["errors"] for r in rs)
        if errors:
            notes[f"plugins.{n}.errors"] = f"wrk counted {errors} errors (socket errors or non-2xx/3xx) over {len(rs)} rounds"
    if not block:
        notes["plugins"] = "not measured (the run stopped before it)"
    return block


def propagation_block(facts, mode, notes):
    """propagation_ms (the figures) and meta.propagation (every sample), from
    the fact lib/propagation.py recorded."""
    p = facts.get("propagation")
    block = {"p50": None, "p99": None, "max": None, "changes": None, "failed": None,
             "write_p50": None, "timeout_ms": None}
    if not p:
        notes["propagation_ms"] = "not measured: " + facts.get(
            "skip.propagation", "the run stopped before the propagation step")
        return block, None
    block.update({"p50": p["p50_ms"], "p99": p["p99_ms"], "max": p["max_ms"], "changes": p["changes"],
                  "failed": p["failed"], "write_p50": p["write_p50_ms"], "timeout_ms": p["timeout_ms"]})
    if mode == "quick":
        notes["propagation_ms.quick"] = (
            f"--quick: {p['planned']} changes instead of 100"
            + (", so p99 (nearest rank) is the highest of them" if p["changes"] < 51 else ""))
    if p["failed"]:
        notes["propagation_ms.failed"] = (
            f"{p['failed']} of {p['changes']} changes were not served by nodes B and C within"
            f" {p['timeout_ms'] / 1000:.0f} s; they rank above every other, and a percentile or max that falls"
            f" on one shows the timeout ({p['timeout_ms']:.0f} ms), a lower bound: {json.dumps(p['failures'])}")
    if p.get("stopped_early"):
        notes["propagation_ms.stopped"] = f"{p['stopped_early']} of {p['planned']} planned"
    if p.get("cluster_active_nodes") not in (None, p["nodes"]):
        notes["propagation_ms.cluster"] = (f"GET /cluster on node A showed {p['cluster_active_nodes']} active"
                                           f" nodes, not {p['nodes']}, before the changes")
    meta = {k: v for k, v in p.items() if k not in ("p50_ms", "p99_ms", "max_ms")}
    return block, meta


def fmt(x, f):
    return "-" if x is None else f.format(x)


def row(values, f="{:.0f}"):
    cells = [v if isinstance(v, str) else fmt(v, f) for v in values]
    return f"{cells[0]:>12}{cells[1]:>20}{cells[2]:>20}\n"


def print_table(result, busy, facts, out):
    meta = result["meta"]
    setup = meta["setup"]
    w = sys.stdout.write
    w("\n")
    w(f"gateway-kit perf ({meta['mode']}), {meta['date']}, commit {meta['git_commit']}"
      f"{' + uncommitted gateway changes' if meta.get('gateway_source_dirty') else ''}\n")
    w(f"machine: {meta['machine']['nproc']} x {meta['machine']['model_name']}, CPU busy before the run: {facts.get('machine_busy_before', '?')}%\n")
    w(f"topology: wrk -> HAProxy (TCP, send-proxy) -> contender (PROXY-protocol listener) -> nginx upstream (\"ok\\n\")\n")
    w(f"load: {setup.get('wrk')}; {setup.get('rounds')} rounds x {setup.get('round_s')} s per contender, "
      f"turns A B C A B C ...; figures are medians over rounds\n")
    w(f"workers: {setup.get('workers')}; CPUs: {setup.get('pinning')}\n")
    for scenario, title in SCENARIOS:
        block = result[scenario]
        w(f"\n{title}\n")
        if scenario == "proxy_10k_routes":
            w(f"  routes: {setup.get('routes_10k')}\n")
        w(f"  {'':<22}{'gateway':>12}{'nginx':>20}{'haproxy':>20}\n")
        for key, label, f, _ in METRICS:
            g = block[key]["gateway"]
            cells = [fmt(g, f)]
            for c in ("nginx", "haproxy"):
                v = block[key][c]
                r = ratio(v, g)
                cells.append(fmt(v, f) + (f" ({r:.2f}x)" if r is not None else ""))
            w(f"  {label:<22}{cells[0]:>12}{cells[1]:>20}{cells[2]:>20}\n")
            if key == "cpu_s_per_10k":
                cap = {c: (1e4 / block[key][c] if block[key][c] else None) for c in CONTENDERS}
                cells = [fmt(cap["gateway"], "{:.0f}")] + [
                    fmt(cap[c], "{:.0f}") + (f" ({ratio(cap[c], cap['gateway']):.2f}x)" if ratio(cap[c], cap["gateway"]) is not None else "")
                    for c in ("nginx", "haproxy")]
                w(f"  {'req/s per CPU-second':<22}{cells[0]:>12}{cells[1]:>20}{cells[2]:>20}\n")
        b = busy[scenario]
        w(f"  {'CPU busy %, contender':<22}" + row(b["contender"][c] for c in CONTENDERS))
        w(f"  {'CPU busy %, load side':<22}" + row(b["load"][c] for c in CONTENDERS))
        cpus = next((list(m) for m in b["machine"].values() if m), [])
        w(f"  {'machine CPU ' + '/'.join(cpus) + ' busy %':<22}"
          + row(("/".join(f"{v:.0f}" for v in b["machine"][c].values()) or None) for c in CONTENDERS))
        w(f"  gateway vs nginx: req/s x{fmt(block['ratio_rps_vs_nginx'], '{:.2f}')}, "
          f"p99 x{fmt(block['ratio_p99_vs_nginx'], '{:.2f}')}   ((Nx) = that contender / gateway)\n")
    plugins = result.get("plugins") or {}
    if plugins:
        w("\nPlugins: the gateway alone, 1 route, plain HTTP, one plugin set at a time "
          "(tests/perf/gen_plugins.py)\n")
        width = max(len(n) for n in ["set", *plugins])
        w(f"  {'set':<{width}}{'CPU s per 10k':>14}{'user':>8}{'sys':>8}{'vs none':>10}"
          f"{'range':>17}{'req/s':>10}{'p99 ms':>9}\n")
        for n, b in plugins.items():
            r, span = b["ratio_cpu_vs_none"], b.get("ratio_cpu_vs_none_range")
            pct = lambda x: fmt((x - 1) * 100, "{:+.1f}%") if x is not None else "-"
            w(f"  {n:<{width}}{fmt(b['cpu_s_per_10k'], '{:.4f}'):>14}"
              f"{fmt(b.get('cpu_user_s_per_10k'), '{:.3f}'):>8}{fmt(b.get('cpu_sys_s_per_10k'), '{:.3f}'):>8}"
              f"{pct(r):>10}{(pct(span[0]) + '..' + pct(span[1]) if span else '-'):>17}"
              f"{fmt(b['rps'], '{:.0f}'):>10}{fmt(b['p99_ms'], '{:.2f}'):>9}\n")
        w("  (vs none: the median over rounds of CPU per request against \"none\" in the\n"
          "   same round; range: the lowest and highest of those ratios)\n")
    w("\nGateway node\n")
    w(f"  RSS idle (1 route)        {fmt(result['rss_mb']['idle'], '{:.1f}')} MB\n")
    w(f"  RSS with 10,000 routes    {fmt(result['rss_mb']['routes_10k'], '{:.1f}')} MB\n")
    runs = meta.get("startup_runs_ms") or []
    w(f"  start-up to ready         {fmt(result['startup_ms'], '{:.1f}')} ms (median of {len(runs)}: {runs})\n")
    s10k = meta.get("startup_ms_routes_10k")
    w(f"  start-up, 10,000 routes   {fmt(s10k, '{:.1f}')} ms\n")
    prop = result["propagation_ms"]
    w("\nPropagation: 3 nodes on one PostgreSQL, write on node A -> route serving on B and C\n")
    if prop["p50"] is None:
        w(f"  propagation_ms.p50/p99    {meta['notes'].get('propagation_ms')}\n")
    else:
        w(f"  p50 / p99 / max           {fmt(prop['p50'], '{:.1f}')} / {fmt(prop['p99'], '{:.1f}')} / "
          f"{fmt(prop['max'], '{:.1f}')} ms over {prop['changes']} changes"
          f"{' (--quick)' if meta['mode'] == 'quick' else ''}, {prop['failed']} timed out (> {prop['timeout_ms'] / 1000:.0f} s)\n")
        w(f"  the write alone (p50)     {fmt(prop['write_p50'], '{:.1f}')} ms (POST on node A until its 201)\n")
    prov = result["provisioner"]
    w(f"\nProvisioner on the LocalStack kit ({meta['provisioner'].get('region')}): wall time, a new stack\n")
    secs = lambda v: fmt(v, "{:.1f} s")  # noqa: E731
    w(f"  provisioner up            {secs(prov['up_s'])}\n")
    w(f"  provisioner up, no-op     {secs(prov['noop_up_s'])} (the same stack again)\n")
    r = ratio(prov["up_s"], prov["terraform_apply_s"])
    w(f"  terraform apply           {secs(prov['terraform_apply_s'])} (terraform/examples/localstack)"
      + (f"; provisioner up / terraform apply = {r:.2f}" if r is not None else "") + "\n")
    missing = {k: meta["notes"][k] for k in meta["notes"] if k in NULL_REASONS}
    if missing:
        w("\nNot measured (null in the JSON)\n")
        for k, v in missing.items():
            w(f"  {k:<24}  {v}\n")
    other = {k: v for k, v in meta["notes"].items()
             if k not in NULL_REASONS and k != "propagation_ms"}
    if other:
        w("\nNotes\n")
        for k, v in other.items():
            w(f"  {k}: {v}\n")
    w(f"\nJSON: {out}\n")


NULL_REASONS = ["provisioner.up_s", "provisioner.noop_up_s", "provisioner.terraform_apply_s"]


def provisioner_block(facts, notes):
    """provisioner.{up_s,noop_up_s,terraform_apply_s}; a null one gets its reason in notes."""
    block = {k: facts.get(f"provisioner.{k}") for k in PROVISIONER_KEYS}
    why = {
        "up_s": facts.get("skip.provisioner"),
        "noop_up_s": facts.get("skip.provisioner_noop") or facts.get("skip.provisioner"),
        "terraform_apply_s": facts.get("skip.terraform") or facts.get("skip.provisioner"),
    }
    for k in PROVISIONER_KEYS:
        if block[k] is None:
            notes[f"provisioner.{k}"] = why[k] or "not measured (the run stopped before it)"
    meta = {"region": facts.get("provisioner.region"), "kit_start_s": facts.get("provisioner.kit_start_s"),
            "ratio_up_vs_terraform_apply": ratio(block["up_s"], block["terraform_apply_s"])}
    return block, meta


def summarize(a):
    rounds = read_jsonl(a.rounds)
    facts = {f["key"]: f["value"] for f in read_jsonl(a.facts)}
    notes = {k[len("note."):]: v for k, v in facts.items() if k.startswith("note.")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirty = git(root, "status", "--porcelain", "--untracked-files=no", "--", "gateway", "Cargo.toml", "Cargo.lock")
    result = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git(root, "rev-parse", "--short", "HEAD"),
        "gateway_source_dirty": bool(dirty) if dirty is not None else None,
        "machine": machine(),
        "mode": a.mode,
        "setup": facts.get("setup", {}),
        "notes": notes,
    }}
    busy = {}
    for scenario, _ in SCENARIOS:
        result[scenario], busy[scenario] = scenario_block(rounds, facts, scenario, notes)
    result["plugins"] = plugins_block(rounds, facts, notes)
    startup = facts.get("startup") or {}
    startup10k = facts.get("startup_10k") or {}
    result["rss_mb"] = {"idle": startup.get("rss_mb"), "routes_10k": startup10k.get("rss_mb")}
    result["propagation_ms"], result["meta"]["propagation"] = propagation_block(facts, a.mode, notes)
    result["provisioner"], result["meta"]["provisioner"] = provisioner_block(facts, notes)
    result["startup_ms"] = startup.get("median_ms")
    if result["startup_ms"] is None:
        notes["startup_ms"] = facts.get("skip.startup", "not measured (the run stopped before it)")
    if result["rss_mb"]["idle"] is None or result["rss_mb"]["routes_10k"] is None:
        notes["rss_mb"] = facts.get("skip.startup", "not measured (the run stopped before it)")
    result["meta"]["startup_runs_ms"] = startup.get("startup_ms")
    result["meta"]["startup_ms_routes_10k"] = startup10k.get("median_ms")
    result["meta"]["rounds"] = [{k: v for k, v in r.items() if k != "wrk"} for r in rounds]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_table(result, busy, facts, a.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("rounds")
    r.add_argument("--scenario", required=True)
    r.add_argument("--contender", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--wrk-out", required=True)
    r.add_argument("--before", required=True)
    r.add_argument("--after", required=True)
    r.add_argument("--times", nargs=2, required=True)
    f = sub.add_parser("fact")
    f.add_argument("facts")
    f.add_argument("key")
    f.add_argument("value")
    s = sub.add_parser("summarize")
    s.add_argument("--rounds", required=True)
    s.add_argument("--facts", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--mode", required=True)
    a = ap.parse_args()
    {"record": record, "fact": fact, "summarize": summarize}[a.cmd](a)


if __name__ == "__main__":
    main()
