"""An instance's first process: what cloud-init and systemd do on EC2, in the smallest form.

The kit starts it as PID 1 of the instance's own PID, mount and UTS namespaces, inside the
instance's network namespace (see instances.py). It

1. gives the instance a root of its own: overlays on the directories user data writes
   (/etc, /usr/local, /var/lib, /var/log, /opt, /srv, /home) whose upper layers live in
   the instance's directory, and fresh tmpfs on /run and /tmp. The host's files are
   never written;
2. applies the user data as cloud-init would: `#cloud-config` (bootcmd, write_files,
   runcmd; other modules are reported as skipped), or a `#!` script; once per
   instance, as cloud-init's per-instance modules run;
3. runs systemd units for `systemctl` (a shim on PATH talks to this process over
   /run/kit-systemd.sock): ExecStart, User/Group, EnvironmentFile/Environment,
   StateDirectory, LimitNOFILE, WorkingDirectory, Restart (always/on-failure/no) with
   RestartSec, and stop with KillSignal then SIGKILL after TimeoutStopSec. Enabled
   units are started again when a stopped instance starts;
4. on SIGTERM (the instance shuts down), stops every unit as systemd does, then exits.

Console output (this process) goes to the instance's console log; each unit's output
to logs/<unit>.log, the journal's stand-in.

    python -m kit_ext.instance_init boot <instance dir>
    python -m kit_ext.instance_init systemctl <args>     (the shim)
"""

import base64
import configparser
import gzip
import json
import grp
import os
import pwd
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

CONTROL_SOCKET = "/run/kit-systemd.sock"
UNIT_DIR = "/etc/systemd/system"
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
OVERLAY_DIRS = ("/etc", "/usr/local", "/var/lib", "/var/log", "/opt", "/srv", "/home")
FRESH_DIRS = ("/run", "/tmp")  # a tmpfs of the instance's own
DEFAULT_TIMEOUT_STOP = 90.0


def log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} kit-init: {msg}", flush=True)


# --- children: one reaper for every process of the instance --------------------------


class Reaper:
    """As PID 1 this process inherits every orphan; one thread reaps them all, and
    whoever waits for a child of its own asks here (a second waitpid would race)."""

    def __init__(self):
        self._status: dict[int, int] = {}
        self._cond = threading.Condition()
        self.on_exit = lambda pid, code: None
        threading.Thread(target=self._run, name="reaper", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.2)
                continue
            code = os.waitstatus_to_exitcode(status)
            with self._cond:
                self._status[pid] = code
                self._cond.notify_all()
            try:
                self.on_exit(pid, code)
            except Exception as e:  # never let the reaper die
                log(f"exit handler for pid {pid} failed: {e}")

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._status:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._status.pop(pid)


# --- systemd units ---------------------------------------------------------------------


def _seconds(value: str, default: float) -> float:
    value = (value or "").strip()
    if not value:
        return default
    if value == "infinity":
        return 365 * 86400.0
    total, num = 0.0, ""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    parts = value.replace(" ", "")
    i = 0
    while i < len(parts):
        j = i
        while j < len(parts) and (parts[j].isdigit() or parts[j] == "."):
            j += 1
        num = parts[i:j]
        k = j
        while k < len(parts) and parts[k].isalpha():
            k += 1
        unit = parts[j:k] or "s"
        if not num or unit not in units:
            return default
        total += float(num) * units[unit]
        i = k
    return total


def _env_file(path: str) -> dict[str, str]:
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """systemd's variable substitution in ExecStart: `${NAME}` inside a word, and a word
    that is exactly `$NAME` split at whitespace."""
    out = []
    for arg in args:
        if arg.startswith("$") and not arg.startswith("${") and arg[1:].isidentifier():
            out.extend(env.get(arg[1:], "").split())
            continue
        for name, value in env.items():
            arg = arg.replace("${" + name + "}", value)
        out.append(re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", arg))
    return out


class Unit:
    def __init__(self, name: str, path: str):
        self.name, self.path = name, path
        parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
        parser.optionxform = str
        with open(path, encoding="utf-8") as f:
            parser.read_string(f.read())
        s = parser["Service"] if parser.has_section("Service") else {}
        self.exec_start = shlex.split(s.get("ExecStart", "").lstrip("-@+!"))
        self.user = s.get("User")
        self.group = s.get("Group")
        self.env_files = s.get("EnvironmentFile", "").split()
        self.environment = dict(
            kv.split("=", 1) for kv in shlex.split(s.get("Environment", "")) if "=" in kv
        )
        self.restart = s.get("Restart", "no")
        self.restart_sec = _seconds(s.get("RestartSec", ""), 0.1)
        self.timeout_stop = _seconds(s.get("TimeoutStopSec", ""), DEFAULT_TIMEOUT_STOP)
        self.kill_signal = getattr(signal, s.get("KillSignal", "SIGTERM"), signal.SIGTERM)
        self.state_dirs = s.get("StateDirectory", "").split()
        self.limit_nofile = s.get("LimitNOFILE")
        self.working_dir = s.get("WorkingDirectory", "/").lstrip("-")


class Manager:
    """The units this instance runs; every method is safe from any thread."""

    def __init__(self, reaper: Reaper, env: dict[str, str], log_dir: str):
        self.reaper, self.env, self.log_dir = reaper, env, log_dir
        self.units: dict[str, Unit] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.wanted: set[str] = set()
        self.failed: set[str] = set()
        self.lock = threading.RLock()
        self.shutting_down = False
        reaper.on_exit = self._exited

    @staticmethod
    def unit_name(name: str) -> str:
        return name if "." in name else name + ".service"

    def load(self, name: str) -> Unit:
        name = self.unit_name(name)
        path = os.path.join(UNIT_DIR, name)
        if not os.path.exists(path):
            raise LookupError(f"Unit {name} not found.")
        unit = self.units[name] = Unit(name, path)
        return unit

    def daemon_reload(self) -> None:
        with self.lock:
            for name in list(self.units):
                try:
                    self.load(name)
                except (LookupError, OSError):
                    self.units.pop(name, None)

    def _start_process(self, unit: Unit) -> None:
        env = {**self.env}
        for f in unit.env_files:
            optional = f.startswith("-")
            try:
                env.update(_env_file(f.lstrip("-")))
            except OSError as e:
                if not optional:
                    raise RuntimeError(f"{unit.name}: EnvironmentFile {f}: {e.strerror}") from e
        env.update(unit.environment)
        uid = gid = None
        if unit.user:
            pw = pwd.getpwnam(unit.user)
            uid, gid = pw.pw_uid, pw.pw_gid
            env.update(HOME=pw.pw_dir, USER=unit.user, LOGNAME=unit.user)
        if unit.group:
            gid = grp.getgrnam(unit.group).gr_gid
        for d in unit.state_dirs:
            path = os.path.join("/var/lib", d)
            os.makedirs(path, mode=0o755, exist_ok=True)
            if uid is not None:
                os.chown(path, uid, gid if gid is not None else -1)
            env["STATE_DIRECTORY"] = path
        nofile = unit.limit_nofile

        def limits() -> None:
            if nofile:
                n = resource.RLIM_INFINITY if nofile == "infinity" else int(nofile.split(":")[-1])
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
                except (ValueError, OSError):
                    pass

        if nofile:
            limits()  # raise ours first: a child that dropped root cannot raise its hard limit
        out = open(os.path.join(self.log_dir, f"{unit.name}.log"), "ab", buffering=0)
        try:
            proc = subprocess.Popen(
                expand(unit.exec_start, env), cwd=unit.working_dir or "/", env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True, user=uid, group=gid,
                extra_groups=[] if uid is not None else None, preexec_fn=limits if nofile else None,
            )
        finally:
            out.close()
        self.procs[unit.name] = proc
        self.failed.discard(unit.name)
        log(f"Started {unit.name} (pid {proc.pid}).")

    def start(self, name: str) -> None:
        with self.lock:
            unit = self.units.get(self.unit_name(name)) or self.load(name)
            self.wanted.add(unit.name)
            if unit.name not in self.procs:
                self._start_process(unit)

    def stop(self, name: str) -> None:
        name = self.unit_name(name)
        with self.lock:
            self.wanted.discard(name)
            proc = self.procs.get(name)
            unit = self.units.get(name)
        if proc is None or unit is None:
            return
        log(f"Stopping {name} (pid {proc.pid}, {unit.kill_signal.name}, up to {unit.timeout_stop:g}s)...")
        try:
            os.killpg(proc.pid, unit.kill_signal)
        except ProcessLookupError:
            pass
        code = self.reaper.wait(proc.pid, unit.timeout_stop)
        if code is None:
            log(f"{name}: stop timed out after {unit.timeout_stop:g}s, sending SIGKILL")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reaper.wait(proc.pid, 10)
        with self.lock:
            if self.procs.get(name) is proc:
                del self.procs[name]
        log(f"Stopped {name}.")

    def _exited(self, pid: int, code: int) -> None:
        with self.lock:
            name = next((n for n, p in self.procs.items() if p.pid == pid), None)
            if name is None:
                return
            if name not in self.wanted:
                return  # stop() removes it
            del self.procs[name]
            unit = self.units[name]
            log(f"{name}: main process exited, status {code}")
            again = not self.shutting_down and (
                unit.restart == "always" or (unit.restart == "on-failure" and code != 0)
            )
            if not again:
                self.wanted.discard(name)
                if code != 0:
                    self.failed.add(name)
                return
        threading.Timer(unit.restart_sec, self._restart, args=(name,)).start()

    def _restart(self, name: str) -> None:
        with self.lock:
            if name in self.wanted and name not in self.procs and not self.shutting_down:
                log(f"{name}: scheduled restart")
                try:
                    self._start_process(self.units[name])
                except Exception as e:
                    log(f"{name}: restart failed: {e}")
                    self.failed.add(name)

    def is_active(self, name: str) -> str:
        name = self.unit_name(name)
        with self.lock:
            if name in self.procs:
                return "active"
            return "failed" if name in self.failed else "inactive"

    def enable(self, name: str) -> None:
        unit = self.load(name)
        os.makedirs(WANTS_DIR, exist_ok=True)
        link = os.path.join(WANTS_DIR, unit.name)
        if not os.path.lexists(link):
            os.symlink(unit.path, link)
            log(f"Created symlink {link} -> {unit.path}.")

    def disable(self, name: str) -> None:
        link = os.path.join(WANTS_DIR, self.unit_name(name))
        if os.path.lexists(link):
            os.unlink(link)

    def start_enabled(self) -> None:
        if os.path.isdir(WANTS_DIR):
            for name in sorted(os.listdir(WANTS_DIR)):
                try:
                    self.start(name)
                except Exception as e:
                    log(f"{name}: {e}")

    def shutdown(self) -> None:
        """Stops every unit, in parallel, each within its TimeoutStopSec."""
        with self.lock:
            self.shutting_down = True
            names = list(self.procs)
        threads = [threading.Thread(target=self.stop, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def read_line(sock: socket.socket) -> bytes:
    """One newline-terminated message (the control protocol's unit)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def serve_control(manager: Manager) -> None:
    """The systemctl shim's server: one JSON request and reply per connection."""
    if os.path.exists(CONTROL_SOCKET):
        os.unlink(CONTROL_SOCKET)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(CONTROL_SOCKET)
    os.chmod(CONTROL_SOCKET, 0o600)
    server.listen(16)

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                reply = control(manager, json.loads(read_line(conn)))
            except Exception as e:
                reply = {"exit": 1, "out": "", "err": f"{e}\n"}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def accept_loop() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, name="systemctl", daemon=True).start()


def control(manager: Manager, request: dict) -> dict:
    args = [a for a in request.get("args", []) if not a.startswith("-")]
    flags = {a for a in request.get("args", []) if a.startswith("-")}
    if not args:
        return {"exit": 1, "out": "", "err": "systemctl: this instance's systemctl needs a command\n"}
    verb, names = args[0], args[1:]
    out, code = [], 0
    try:
        if verb == "daemon-reload":
            manager.daemon_reload()
        elif verb in ("enable", "disable"):
            for n in names:
                (manager.enable if verb == "enable" else manager.disable)(n)
                if "--now" in flags:
                    (manager.start if verb == "enable" else manager.stop)(n)
        elif verb == "start":
            for n in names:
                manager.start(n)
        elif verb == "stop":
            for n in names:
                manager.stop(n)
        elif verb in ("restart", "try-restart", "reload-or-restart"):
            for n in names:
                manager.stop(n)
                manager.start(n)
        elif verb in ("is-active", "status"):
            for n in names:
                state = manager.is_active(n)
                out.append(state if verb == "is-active" else f"{manager.unit_name(n)}: {state}")
                code = code or (0 if state == "active" else 3)
        elif verb == "is-enabled":
            for n in names:
                enabled = os.path.lexists(os.path.join(WANTS_DIR, manager.unit_name(n)))
                out.append("enabled" if enabled else "disabled")
                code = code or (0 if enabled else 1)
        else:
            return {"exit": 1, "out": "", "err": f"systemctl: '{verb}' is not supported on the kit's instances\n"}
    except (LookupError, RuntimeError, OSError, KeyError) as e:
        return {"exit": 5, "out": "\n".join(out), "err": f"{e}\n"}
    return {"exit": code, "out": "\n".join(out) + ("\n" if out else ""), "err": ""}


def systemctl_main(argv: list[str]) -> int:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(CONTROL_SOCKET)
            s.sendall(json.dumps({"args": argv}).encode() + b"\n")
            data = read_line(s)
        reply = json.loads(data)
    except (OSError, ValueError) as e:
        print(f"systemctl: cannot reach the instance's init ({CONTROL_SOCKET}): {e}", file=sys.stderr)
        return 1
    sys.stdout.write(reply.get("out", ""))
    sys.stderr.write(reply.get("err", ""))
    return int(reply.get("exit", 1))


# --- the root of its own --------------------------------------------------------------


def mount(*args: str) -> None:
    out = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {out.stderr.strip()}")


def own_root(instance_dir: str) -> None:
    for d in OVERLAY_DIRS:
        if not os.path.isdir(d):
            continue
        name = d.strip("/").replace("/", "_")
        upper = os.path.join(instance_dir, "root", "upper", name)
        work = os.path.join(instance_dir, "root", "work", name)
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        mount("-t", "overlay", "overlay", "-o", f"lowerdir={d},upperdir={upper},workdir={work}", d)
    for d in FRESH_DIRS:
        mount("-t", "tmpfs", "-o", "mode=1777" if d == "/tmp" else "mode=755", "tmpfs", d)


# --- cloud-init ---------------------------------------------------------------------------


def decode_user_data(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def _content(entry: dict) -> bytes:
    content = entry.get("content", "")
    data = content.encode() if isinstance(content, str) else bytes(content)
    encoding = str(entry.get("encoding", "text")).lower()
    if encoding in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        data = base64.b64decode(data)
    if encoding.startswith(("gz", "gzip")):
        data = gzip.decompress(data)
    return data


def write_file(entry: dict) -> None:
    path = entry["path"]
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    mode = int(str(entry.get("permissions", "0644")), 8)
    with open(path, "ab" if entry.get("append") else "wb") as f:
        f.write(_content(entry))
    os.chmod(path, mode)
    owner = str(entry.get("owner", "root:root"))
    user, _, group = owner.partition(":")
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)
    log(f"write_files: {path} ({oct(mode)}, {owner})")


def run_script(reaper: Reaper, script: str, name: str, env: dict[str, str]) -> int:
    path = f"/var/lib/cloud/instance/scripts/{name}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(script)
    os.chmod(path, 0o700)
    started = time.monotonic()
    proc = subprocess.Popen([path] if script.startswith("#!") else ["/bin/sh", path], cwd="/", env=env,
                            stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stdout)
    code = reaper.wait(proc.pid)
    log(f"{name}: exit {code} after {time.monotonic() - started:.1f}s")
    return code


def cloud_init(reaper: Reaper, user_data: bytes, env: dict[str, str]) -> bool:
    """Applies the user data; True when every step succeeded."""
    import yaml  # the kit's venv has PyYAML; imported here so the shim starts fast

    text = decode_user_data(user_data).decode("utf-8", errors="replace")
    if text.startswith("#!"):
        return run_script(reaper, text, "part-001", env) == 0
    if not text.startswith("#cloud-config"):
        log("user data is neither #cloud-config nor a #! script: nothing to run (cloud-init would say the same)")
        return True
    config = yaml.safe_load(text) or {}
    ok = True
    for key in sorted(set(config) - {"bootcmd", "write_files", "runcmd"}):
        log(f"module {key}: skipped (not supported by the kit)")

    def commands(items) -> str:
        lines = [shlex.join(str(a) for a in item) if isinstance(item, list) else str(item) for item in items or []]
        return "#!/bin/sh\n" + "\n".join(lines) + "\n"

    if config.get("bootcmd"):
        ok &= run_script(reaper, commands(config["bootcmd"]), "bootcmd", env) == 0
    entries = config.get("write_files") or []
    # Deferred files are written after the others (cloud-init: after users are made).
    for entry in [e for e in entries if not e.get("defer")] + [e for e in entries if e.get("defer")]:
        try:
            write_file(entry)
        except (OSError, KeyError, ValueError) as e:
            log(f"write_files: {entry.get('path')}: {e}")
            ok = False
    if config.get("runcmd"):
        ok &= run_script(reaper, commands(config["runcmd"]), "runcmd", env) == 0
    return ok


# --- boot -------------------------------------------------------------------------------------


def boot(instance_dir: str) -> int:
    with open(os.path.join(instance_dir, "instance.json"), encoding="utf-8") as f:
        spec = json.load(f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(os.path.join(instance_dir, "user-data"), "rb") as f:
        user_data = f.read()
    socket.sethostname(spec["hostname"])
    own_root(instance_dir)
    log_dir = os.path.join(instance_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    env = dict(spec["env"])
    reaper = Reaper()
    manager = Manager(reaper, env, log_dir)
    serve_control(manager)
    log(f"instance {spec['id']} ({spec['hostname']}) booting")
    marker = os.path.join(instance_dir, "cloud-init.done")
    started = time.monotonic()
    if not os.path.exists(marker):
        ok = cloud_init(reaper, user_data, env)
        with open(marker, "w", encoding="utf-8") as f:
            f.write("ok\n" if ok else "errors\n")
        log(f"cloud-init finished in {time.monotonic() - started:.1f}s{'' if ok else ' with errors'}")
    else:
        log("cloud-init already ran for this instance: starting the enabled units")
        manager.start_enabled()
    while not stop.wait(1):
        pass
    log("shutting down: stopping every unit")
    manager.shutdown()
    log("halted")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "boot":
        return boot(argv[1])
    if argv and argv[0] == "systemctl":
        return systemctl_main(argv[1:])
    print("usage: python -m kit_ext.instance_init boot <dir> | systemctl <args>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
