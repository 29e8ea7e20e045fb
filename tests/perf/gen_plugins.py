"""Writes the plugin sets the harness measures: gen_plugins.py UPSTREAM OUTDIR.

One Kong declarative file per set, OUTDIR/plugins-NAME.yml: the route
/svc-0/ to UPSTREAM (host:port), the set's plugins on it, and the consumers
and credentials they need. Prints one line per set, in the order measured:
  NAME<TAB>HEADER<TAB>HEADER...
the request headers wrk sends for it. Every set gets the same request (a
key, a password and an Origin: what any set reads), so that a set differs
from "none" by its plugins' work alone, not by the bytes the client sends.
Every set answers the upstream's 200 "ok\\n" (limits are set far above the
load), so each one's cost is the cost of passing through it.
"""
import base64
import os
import sys

AUTH_KEY = "perf-key"
BASIC = base64.b64encode(b"perf:perf-password").decode()
BIG = 1_000_000_000

# The request headers of every set.
HEADERS = [f"apikey: {AUTH_KEY}", f"Authorization: Basic {BASIC}", "Origin: https://app.example"]

# name -> plugins as YAML list items
SETS = [
    ("none", ""),
    ("key-auth", "- name: key-auth\n"),
    ("rate-limiting", f"- name: rate-limiting\n  config: {{second: {BIG}, policy: local}}\n"),
    ("key-auth+rate-limiting",
     "- name: key-auth\n"
     f"- name: rate-limiting\n  config: {{second: {BIG}, policy: local, limit_by: consumer}}\n"),
    # The same with Kong's hide_client_headers: what the five rate-limit headers
    # to the client cost, by difference.
    ("key-auth+rate-limiting+hide_client_headers",
     "- name: key-auth\n"
     f"- name: rate-limiting\n  config: {{second: {BIG}, policy: local, limit_by: consumer, "
     "hide_client_headers: true}\n"),
    ("basic-auth", "- name: basic-auth\n"),
    ("key-auth+acl", "- name: key-auth\n- name: acl\n  config: {allow: [perf]}\n"),
    ("ip-restriction", "- name: ip-restriction\n  config: {allow: [127.0.0.0/8]}\n"),
    ("cors", "- name: cors\n  config: {origins: [\"https://app.example\"]}\n"),
    ("correlation-id", "- name: correlation-id\n"),
    ("request-size-limiting", "- name: request-size-limiting\n"),
    ("request-transformer", "- name: request-transformer\n  config: {add: {headers: [\"x-perf:1\"]}}\n"),
    ("response-transformer", "- name: response-transformer\n  config: {add: {headers: [\"x-perf:1\"]}}\n"),
    ("proxy-cache",
     "- name: proxy-cache\n  config: {strategy: memory, content_type: [\"text/plain\"], cache_ttl: 3600}\n"),
    ("prometheus",
     "- name: prometheus\n  config: {status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true}\n"),
    ("file-log", "- name: file-log\n  config: {path: /dev/null}\n"),
]

CONSUMERS = f"""consumers:
- username: perf
  keyauth_credentials:
  - key: {AUTH_KEY}
  basicauth_credentials:
  - username: perf
    password: perf-password
  acls:
  - group: perf
"""


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    upstream, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    for name, plugins in SETS:
        with open(os.path.join(outdir, f"plugins-{name}.yml"), "w", encoding="utf-8") as f:
            f.write('_format_version: "3.0"\nservices:\n')
            f.write(f"- name: svc-0\n  url: http://{upstream}\n  routes:\n")
            f.write('  - name: svc-0\n    paths: ["/svc-0/"]\n    strip_path: false\n')
            if plugins:
                f.write("    plugins:\n")
                f.write("".join("    " + line + "\n" for line in plugins.splitlines()))
            f.write(CONSUMERS)
        print("\t".join([name] + HEADERS))


if __name__ == "__main__":
    main()
