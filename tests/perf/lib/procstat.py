"""Figures of a process and all its descendants, from /proc.

  procstat.py cpu PID     CPU seconds used so far (utime+stime, all threads)
  procstat.py hwm PID     peak RSS (VmHWM) summed over the processes, in MB
  procstat.py rss PID     current RSS (VmRSS) summed over the processes, in MB
  procstat.py tree PID    the pids: PID and its descendants, one per line
  procstat.py snapshot PID [LOADPID...]
      one JSON line: "cpu" of PID's tree (and its "cpu_user" and "cpu_sys"
      parts), "load_cpu" of the LOADPIDs' trees, and "cpus", the machine's
      per-CPU busy and total jiffies
  procstat.py busy SECONDS
      how busy the whole machine's CPUs are over SECONDS, in % (0-100)
"""
import json
import os
import sys
import time


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_split(pid):
    """(user, system) CPU seconds of PID's tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); utime and stime are fields 14 and 15.
        user += int(fields[11])
        system += int(fields[12])
    return user / ticks, system / ticks


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def status_kb(pid, key):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def machine_cpus():
    out = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                v = [int(x) for x in vals]
                total = sum(v[:8])  # guest time is already in user/nice
                out[name[3:]] = [total - v[3] - v[4], total]  # busy: not idle/iowait
    return out


def machine_busy_pct(seconds):
    before = machine_cpus()
    time.sleep(seconds)
    after = machine_cpus()
    busy = sum(after[c][0] - before[c][0] for c in after)
    total = sum(after[c][1] - before[c][1] for c in after)
    return 100 * busy / total if total else 0.0


def main():
    if sys.argv[1] == "busy":
        print(f"{machine_busy_pct(float(sys.argv[2])):.0f}")
        return
    if sys.argv[1] == "snapshot":
        pids = [int(p) for p in sys.argv[2:]]
        user, system = cpu_split(pids[0])
        print(json.dumps({
            "cpu": user + system,
            "cpu_user": user,
            "cpu_sys": system,
            "load_cpu": sum(cpu_seconds(p) for p in pids[1:]),
            "cpus": machine_cpus(),
        }))
        return
    what, pid = sys.argv[1], int(sys.argv[2])
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"procstat.py: no process {pid}")
    if what == "cpu":
        print(f"{cpu_seconds(pid):.2f}")
    elif what == "hwm":
        print(f"{status_kb(pid, 'VmHWM') / 1024:.1f}")
    elif what == "rss":
        print(f"{status_kb(pid, 'VmRSS') / 1024:.1f}")
    elif what == "tree":
        print("\n".join(map(str, tree(pid))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
