"""A small authoritative DNS server for the kit's Route53 zones, on a local port.

Why: on AWS, a Route53 name (say `api.example.com`, an alias to a classic ELB) resolves
through public DNS. In the kit, LocalStack community keeps Route53 zones only as API
data, and its own DNS server is off, so nothing resolves those names. This server answers
from the zones' record sets and from the kit's ELBs (their local addresses), so a client
pointed at 127.0.0.1:<port> (`dig @127.0.0.1 -p <port>`, a resolver's forward rule, a test)
sees what it would see on AWS.

It is authoritative only: a name outside the zones is NXDOMAIN, and it never asks another
server (no recursion, no forwarding to the internet). The data comes from two callables
given to `KitDns`, read again on every query, so records changed through the Route53 API
are served at once and the server can be tested without LocalStack:

- `records()` -> the Route53 record sets (`Record`); `route53_records()` reads them from
  moto's Route53 backend inside LocalStack;
- `balancer_address(dns_name)` -> the local IPv4 address of the ELB with that DNS name.

Answers follow Route53: exact names first, then wildcards (`*.example.com`); an alias A
record to an ELB gives the ELB's address (TTL 60), an alias to another record name gives
that record's data under the alias's name; a CNAME comes with the chased records of its
target when the target resolves here; an ELB's own DNS name gives its address. A name
that exists without the asked type is NOERROR with no answer (NODATA).
"""

from __future__ import annotations

import logging
import re
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from dnslib import OPCODE, QTYPE, RCODE, RR, A, DNSHeader, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["KitDns", "Record", "route53_records"]

LOG = logging.getLogger(__name__)

ELB_TTL = 60  # what Route53 gives an alias to an ELB
DEFAULT_TTL = 300
MAX_CHAIN = 8  # CNAME/alias hops followed before giving up (loops)
UDP_LIMIT = 512  # without EDNS0
TCP_TIMEOUT = 5.0  # seconds a TCP client may take to send its query
CLASS_IN, CLASS_ANY = 1, 255


@dataclass(frozen=True)
class Record:
    """One Route53 resource record set."""

    name: str  # fully qualified, may end with '.', may hold Route53's "\052" for '*'
    type: str  # A, AAAA, CNAME, TXT, MX, NS, SOA, ...
    ttl: int | None
    values: tuple[str, ...]  # ResourceRecords values, in zone-file syntax
    alias_target: str | None = None  # AliasTarget.DNSName


# --- names -----------------------------------------------------------------------------

_OCTAL = re.compile(r"\\([0-7]{3})")


def _norm(name: str) -> str:
    """Route53's spelling of a name -> lower case, no trailing dot, escapes decoded
    (Route53 writes '*' as "\\052", and other odd characters as octal escapes too)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), str(name)).strip().rstrip(".").lower()


def _without_dualstack(name: str) -> str:
    """ELB aliases are often written "dualstack.<elb dns name>"."""
    return name[len("dualstack."):] if name.startswith("dualstack.") else name


class _Zones:
    """The record sets of one query's moment, by normalized name."""

    def __init__(self, records: Iterable[Record]):
        self.by_name: dict[str, list[Record]] = {}
        for r in records:
            self.by_name.setdefault(_norm(r.name), []).append(r)

    def exact(self, name: str) -> list[Record] | None:
        return self.by_name.get(name)

    def wildcard(self, name: str) -> list[Record] | None:
        """RFC 4592 as Route53 applies it: the closest enclosing `*.<parent>`, unless a
        closer existing name (a record or an empty non-terminal) blocks it."""
        labels = name.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            found = self.by_name.get("*." + parent)
            if found:
                return found
            if self.exists(parent):
                return None
        return None

    def exists(self, name: str) -> bool:
        """The name holds records, or is an empty non-terminal above some (NODATA, not
        NXDOMAIN)."""
        return name in self.by_name or any(n.endswith("." + name) for n in self.by_name)

    def soa_for(self, name: str) -> Record | None:
        """The SOA of the zone holding name (for the authority section of negative answers)."""
        labels = name.split(".")
        for i in range(len(labels)):
            for r in self.by_name.get(".".join(labels[i:]), ()):
                if r.type.upper() == "SOA" and r.values:
                    return r
        return None


# --- resource records --------------------------------------------------------------------


def _ttl(record: Record) -> int:
    try:
        return max(0, int(record.ttl)) if record.ttl is not None else DEFAULT_TTL
    except (TypeError, ValueError):
        return DEFAULT_TTL


def _rrs(owner: DNSLabel, record: Record) -> list[RR]:
    """The record's values as RRs owned by owner; a value dnslib cannot read is skipped."""
    rtype = record.type.upper()
    code = QTYPE.reverse.get(rtype)
    out = []
    for value in record.values if code else ():
        try:
            # The owner is set afterwards: the zone parser only reads type and data here.
            # Only RRs of the record's type count (a value holding a newline cannot add others).
            for rr in RR.fromZone(f"x. {_ttl(record)} IN {rtype} {value}"):
                if rr.rtype == code:
                    rr.rname = owner
                    out.append(rr)
        except Exception as e:  # a value or type dnslib cannot parse
            LOG.debug("DNS: skipping %s %s value %r: %s", record.name, record.type, value, e)
    return out


def _a(owner: DNSLabel, address: str, ttl: int) -> list[RR]:
    try:
        return [RR(owner, QTYPE.A, CLASS_IN, ttl, A(address))]
    except Exception as e:  # not an IPv4 address
        LOG.debug("DNS: bad address %r for %s: %s", address, owner, e)
        return []


def _reowned(rrs: list[RR], owner: DNSLabel, rtype: int) -> list[RR]:
    return [RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in rrs if rr.rtype == rtype]


# --- resolution ----------------------------------------------------------------------------


class _Answerer:
    """Answers for one query against one snapshot of the zones."""

    def __init__(self, zones: _Zones, balancer_address: Callable[[str], str | None]):
        self.zones = zones
        self.balancer_address = balancer_address

    def balancer(self, name: str) -> str | None:
        for candidate in dict.fromkeys((name, _without_dualstack(name))):
            try:
                address = self.balancer_address(candidate)
            except Exception as e:  # a data source failing is not a reason to crash
                LOG.warning("DNS: ELB lookup of %s failed: %s", candidate, e)
                address = None
            if address:
                return address
        return None

    def answer(self, owner: DNSLabel, qtype: str, depth: int = 0) -> tuple[list[RR], bool]:
        """(answer RRs, whether the name exists here) for owner and qtype ("ANY" too)."""
        if depth > MAX_CHAIN:
            return [], True
        name = _norm(str(owner))
        records = self.zones.exact(name)
        if records is None:
            address = self.balancer(name)
            if address:
                return (_a(owner, address, ELB_TTL) if qtype in ("A", "ANY") else []), True
            records = self.zones.wildcard(name)
        if not records:
            return [], self.zones.exists(name)
        cnames = [r for r in records if r.type.upper() == "CNAME"]
        if cnames and qtype not in ("CNAME", "ANY"):
            return self.cname(owner, cnames[0], qtype, depth), True
        out: list[RR] = []
        for r in records:
            if qtype == "ANY" or r.type.upper() == qtype:
                out += self.alias(owner, r, depth) if r.alias_target else _rrs(owner, r)
        return out, True

    def cname(self, owner: DNSLabel, record: Record, qtype: str, depth: int) -> list[RR]:
        """The CNAME, then what its target resolves to here (nothing if it is elsewhere)."""
        rrs = self.alias(owner, record, depth) if record.alias_target else _rrs(owner, record)[:1]
        if not rrs:
            return []
        chased, _ = self.answer(rrs[0].rdata.label, qtype, depth + 1)
        return rrs + chased

    def alias(self, owner: DNSLabel, record: Record, depth: int) -> list[RR]:
        """A Route53 alias: an ELB's address, or the target record's data under owner."""
        target = _norm(record.alias_target or "")
        rtype = record.type.upper()
        address = self.balancer(target)
        if address:
            return _a(owner, address, ELB_TTL) if rtype == "A" else []  # ELBs here are IPv4 only
        if rtype not in QTYPE.reverse:
            return []
        rrs, _ = self.answer(DNSLabel(target), rtype, depth + 1)
        return _reowned(rrs, owner, getattr(QTYPE, rtype))


def _reply(request: DNSRecord, aa: int) -> DNSRecord:
    """A reply skeleton: no recursion available, no DNSSEC (AD) claim copied from the query."""
    reply = request.reply(ra=0, aa=aa)
    reply.header.ad = 0
    return reply


class _Resolver(BaseResolver):
    def __init__(self, records: Callable[[], Iterable[Record]], balancer_address: Callable[[str], str | None]):
        self.records = records
        self.balancer_address = balancer_address

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        reply = _reply(request, aa=1)
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply
        q = request.q
        if q.qclass not in (CLASS_IN, CLASS_ANY):
            reply.header.rcode = RCODE.REFUSED
            return reply
        zones = _Zones(self.records())
        answers, exists = _Answerer(zones, self.balancer_address).answer(q.qname, QTYPE.get(q.qtype))
        for rr in answers:
            reply.add_answer(rr)
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        if not answers:
            self._add_soa(reply, zones, _norm(str(q.qname)))
        return reply

    @staticmethod
    def _add_soa(reply: DNSRecord, zones: _Zones, name: str) -> None:
        """Negative answers carry the zone's SOA, so resolvers can cache them (RFC 2308)."""
        soa = zones.soa_for(name)
        if soa is None:
            return
        for rr in _rrs(DNSLabel(soa.name.rstrip(".") + "."), soa):
            rr.ttl = min(rr.ttl, rr.rdata.times[-1])
            reply.add_auth(rr)


# --- transport ------------------------------------------------------------------------------


def _servfail(request: DNSRecord) -> DNSRecord:
    reply = _reply(request, aa=0)
    reply.header.rcode = RCODE.SERVFAIL
    return reply


def _formerr(data: bytes) -> bytes:
    """FORMERR echoing the query id, when at least the id can be read."""
    if len(data) < 2:
        raise ValueError("packet too short to answer")
    header = DNSHeader(id=struct.unpack("!H", data[:2])[0], qr=1, ra=0, rcode=RCODE.FORMERR)
    return DNSRecord(header).pack()


def _udp_limit(request: DNSRecord) -> int:
    """512 bytes, or the size the client advertised with EDNS0."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_LIMIT, min(rr.edns_len, 65535))
    return UDP_LIMIT


class _Handler(DNSHandler):
    """dnslib's handler, made robust: a TCP client has TCP_TIMEOUT to send its query, a
    packet that does not parse gets FORMERR (or nothing), a resolver error gets SERVFAIL,
    and a UDP answer too large for the client is truncated (so it retries over TCP)."""

    def setup(self):
        if isinstance(self.request, socket.socket):
            self.request.settimeout(TCP_TIMEOUT)

    def handle(self):
        try:
            super().handle()
        except Exception as e:  # a client going away, a timeout, anything else
            LOG.debug("DNS: request from %s dropped: %s", self.client_address, e)

    def get_reply(self, data: bytes) -> bytes:
        try:
            request = DNSRecord.parse(data)
        except Exception as e:
            LOG.debug("DNS: malformed packet from %s: %s", self.client_address, e)
            return _formerr(data)
        try:
            reply = self.server.resolver.resolve(request, self)
        except Exception as e:  # a data source failing, say
            name = request.q.qname if request.questions else "?"
            LOG.error("DNS: answering %s failed: %s", name, e, exc_info=LOG.isEnabledFor(logging.DEBUG))
            reply = _servfail(request)
        rdata = reply.pack()
        if self.protocol == "udp" and len(rdata) > _udp_limit(request):
            rdata = reply.truncate().pack()
        return rdata


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    # No SO_REUSEADDR on UDP: with it, Linux lets a second server bind the same port.
    allow_reuse_address = False
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True  # only skips TIME_WAIT; two listeners still conflict
    daemon_threads = True


class KitDns:
    """The DNS server on host:port, UDP and TCP, in background threads.

    port 0 picks a free port (the same for UDP and TCP); `address` tells which.
    """

    def __init__(
        self,
        port: int,
        records: Callable[[], Iterable[Record]],
        balancer_address: Callable[[str], str | None],
        host: str = "127.0.0.1",
    ):
        self.host, self.port = host, port
        self._resolver = _Resolver(records, balancer_address)
        self._logger = DNSLogger(log="error", prefix=False, logf=LOG.debug)
        self._servers: list[DNSServer] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _server(self, port: int, tcp: bool) -> DNSServer:
        return DNSServer(
            self._resolver, address=self.host, port=port, tcp=tcp, logger=self._logger,
            handler=_Handler, server=_TCPServer if tcp else _UDPServer,
        )

    def _bind(self) -> list[DNSServer]:
        attempts = 20 if self.port == 0 else 1  # port 0: the UDP port may be taken on TCP
        for attempt in range(attempts):
            udp = self._server(self.port, tcp=False)
            port = udp.server.server_address[1]
            try:
                return [udp, self._server(port, tcp=True)]
            except OSError:
                udp.server.server_close()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> None:
        """Listens on UDP and TCP; a no-op when already started."""
        with self._lock:
            if self._servers:
                return
            try:
                servers = self._bind()
            except OSError as e:
                raise OSError(
                    e.errno, f"DNS server cannot listen on {self.host}:{self.port} (UDP and TCP): {e.strerror}"
                ) from e
            self.port = servers[0].server.server_address[1]
            for s in servers:
                s.start_thread()
            self._servers = servers
            LOG.info("DNS server for Route53 zones on %s:%d (UDP and TCP)", self.host, self.port)

    def stop(self) -> None:
        """Stops both listeners and frees the port; a no-op when not started."""
        with self._lock:
            servers, self._servers = self._servers, []
        for s in servers:
            s.server.shutdown()
            s.server.server_close()
            s.thread.join(timeout=5)


# --- data from LocalStack ------------------------------------------------------------------


def _record_from_moto(rrset) -> Record | None:
    name, rtype = getattr(rrset, "name", None), getattr(rrset, "type_", None)
    if not name or not rtype:
        return None
    values = tuple(
        str(v.get("Value", "")) if isinstance(v, dict) else str(v) for v in (getattr(rrset, "records", None) or [])
    )
    alias = getattr(rrset, "alias_target", None)
    alias_name = alias.get("DNSName") if isinstance(alias, dict) else None
    try:
        ttl = int(rrset.ttl) if getattr(rrset, "ttl", None) not in (None, "") else None
    except (TypeError, ValueError):
        ttl = None
    return Record(str(name), str(rtype), ttl, values, str(alias_name) if alias_name else None)


def route53_records() -> list[Record]:
    """Every record set of every hosted zone in moto's Route53 backend, which LocalStack's
    route53 provider uses (`route53_backends[account]["aws"]`). Reads the dicts as plain
    dicts: their `[]` would create an account or partition backend as a side effect."""
    from moto.route53.models import route53_backends

    out: list[Record] = []
    for _account, partitions in list(dict.items(route53_backends)):
        for _partition, backend in list(dict.items(partitions)):
            for zone in list(getattr(backend, "zones", {}).values()):
                for rrset in list(getattr(zone, "rrsets", [])):
                    record = _record_from_moto(rrset)
                    if record:
                        out.append(record)
    return out
