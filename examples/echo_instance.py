"""Prints the user data of an EC2 instance that runs examples/echo_upstream.py as a
systemd unit on PORT (default 9000): the upstream service the kit demo and tests launch
into a stack's VPC with RunInstances.

    python3 examples/echo_instance.py [PORT]
"""

import base64
import os
import sys


def user_data(port: int = 9000) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "echo_upstream.py"), "rb") as f:
        script = base64.b64encode(f.read()).decode()
    return f"""#cloud-config
write_files:
  - path: /usr/local/lib/echo_upstream.py
    encoding: b64
    content: {script}
  - path: /etc/systemd/system/echo.service
    content: |
      [Unit]
      Description=echo upstream
      [Service]
      User=nobody
      ExecStart=/usr/bin/python3 /usr/local/lib/echo_upstream.py {port} 0.0.0.0
      Restart=always
runcmd:
  - [systemctl, enable, --now, echo.service]
"""


if __name__ == "__main__":
    sys.stdout.write(user_data(int(sys.argv[1]) if len(sys.argv) > 1 else 9000))
