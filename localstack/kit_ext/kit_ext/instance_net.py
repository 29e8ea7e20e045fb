"""What the kit serves inside each instance's network namespace, from the host process:

- IMDS on 169.254.169.254:80 (kit_ext.imds answers);
- the kit's AWS endpoint and every RDS endpoint, forwarded: inside the instance,
  127.0.0.1:<port> reaches the host's 127.0.0.1:<port>. On AWS the endpoints are
  reached through the VPC's router; on a laptop they listen on the host's loopback,
  which a namespace cannot see, so the kit carries those ports (and only those) in.

One asyncio loop in one thread serves every instance; the listening sockets are
created inside the namespaces (netns.listen_in), everything else runs on the host.
"""

import asyncio
import logging
import threading
from collections.abc import Callable

from . import imds, netns

LOG = logging.getLogger("kit.instances")
HOST = "127.0.0.1"
MAX_HEAD = 16 * 1024


class _Instance:
    def __init__(self, ns: str, meta: Callable[[], imds.Meta]):
        self.ns = ns
        self.meta = meta
        self.tokens = imds.Tokens()
        self.servers: dict[int | str, asyncio.AbstractServer] = {}
        self.conns: set[asyncio.StreamWriter] = set()  # closed when the instance goes


class InstanceNet:
    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._instances: dict[str, _Instance] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="kit-instance-net", daemon=True)
        self._thread.start()

    def _call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- public, called from any thread ------------------------------------------

    def attach(self, ns: str, meta: Callable[[], imds.Meta], ports: set[int]) -> None:
        """Serves IMDS and forwards `ports` inside `ns`."""
        self._call(self._attach(ns, meta, ports))

    def set_ports(self, ns: str, ports: set[int]) -> None:
        self._call(self._set_ports(ns, ports))

    def detach(self, ns: str) -> None:
        self._call(self._detach(ns))

    # --- on the loop -------------------------------------------------------------

    async def _attach(self, ns: str, meta, ports: set[int]) -> None:
        inst = self._instances.get(ns)
        if inst is None:
            inst = self._instances[ns] = _Instance(ns, meta)
            sock = netns.listen_in(ns, netns.IMDS_ADDRESS, 80)
            inst.servers["imds"] = await asyncio.start_server(
                lambda r, w: self._imds(inst, r, w), sock=sock
            )
        await self._set_ports(ns, ports)

    async def _set_ports(self, ns: str, ports: set[int]) -> None:
        inst = self._instances.get(ns)
        if inst is None:
            return
        for port in [p for p in inst.servers if isinstance(p, int) and p not in ports]:
            inst.servers.pop(port).close()
        for port in ports:
            if port in inst.servers:
                continue
            try:
                sock = netns.listen_in(ns, HOST, port)
            except netns.NetnsError as e:
                LOG.warning("instance %s: %s", ns, e)
                continue
            inst.servers[port] = await asyncio.start_server(
                lambda r, w, port=port: self._forward(inst, port, r, w), sock=sock
            )

    async def _detach(self, ns: str) -> None:
        inst = self._instances.pop(ns, None)
        if inst is not None:
            for server in inst.servers.values():
                server.close()
            for writer in list(inst.conns):
                writer.close()

    async def _forward(self, inst: _Instance, port: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, port)
        except OSError:
            writer.close()
            return
        inst.conns.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    if dst.can_write_eof():
                        dst.write_eof()
                except (ConnectionError, OSError):
                    pass

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
                inst.conns.discard(w)

    async def _imds(self, inst: _Instance, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.1 server: one request per connection (Connection: close),
        which every IMDS client handles."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        try:
            lines = head[:MAX_HEAD].decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            status, ctype, body = imds.respond(method, path, headers, inst.tokens, inst.meta())
        except Exception:  # a malformed request, or the instance is gone
            status, ctype, body = 400, "text/plain", b"Bad Request"
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
        writer.write(
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + (body if method != "HEAD" else b"")
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
