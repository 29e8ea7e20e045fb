"""Prints N free loopback TCP ports, one per line: ports.py N.

All sockets stay bound until every port is chosen, so the N are distinct.
"""
import socket
import sys


def main():
    n = int(sys.argv[1])
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for s in socks:
            print(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
