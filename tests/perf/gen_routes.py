"""Writes the same N routes for each contender: gen_routes.py N UPSTREAM OUTDIR.

Route i has the path prefix /svc-i/ and proxies to UPSTREAM (host:port).
Files written to OUTDIR:
  kong-N.yml          gateway: Kong declarative config, one service + route each
  nginx-routes-N.conf nginx: one `location /svc-i/ { proxy_pass http://up; }` each
  haproxy-N.map       HAProxy: one "/svc-i/ be_up" line each, for map_beg()
The benchmark requests /svc-{N//2}/, a route in the middle of the table.
"""
import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    n, upstream, outdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(outdir, exist_ok=True)

    with open(os.path.join(outdir, f"kong-{n}.yml"), "w", encoding="utf-8") as f:
        f.write('_format_version: "3.0"\nservices:\n')
        for i in range(n):
            f.write(
                f"- name: svc-{i}\n"
                f"  url: http://{upstream}\n"
                f"  routes:\n"
                f"  - name: svc-{i}\n"
                f'    paths: ["/svc-{i}/"]\n'
                # nginx's `proxy_pass http://up;` and HAProxy forward the path as is.
                f"    strip_path: false\n"
            )

    with open(os.path.join(outdir, f"nginx-routes-{n}.conf"), "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"location /svc-{i}/ {{ proxy_pass http://up; }}\n")

    with open(os.path.join(outdir, f"haproxy-{n}.map"), "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"/svc-{i}/ be_up\n")


if __name__ == "__main__":
    main()
