"""kit_ext/dns_server.py: Route53 names, ELB aliases and CNAME chains answered on a local
port, checked with a real resolver client (dig) over UDP and TCP, without LocalStack.

Only the last test touches moto (to read record sets as LocalStack stores them); it is
skipped when moto is not importable.
"""

import os
import random
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kit_ext"))

from kit_ext.dns_server import KitDns, Record  # noqa: E402

ELB = "my-elb-1234567890.us-east-1.elb.amazonaws.com"
ELB_ADDRESS = "127.0.0.11"
SOA = "ns-1.awsdns-1.com. hostmaster.example.com. 1 7200 900 1209600 86400"

RECORDS = [
    Record("example.com.", "SOA", 900, (SOA,)),
    Record("example.com.", "NS", 172800, ("ns-1.awsdns-1.com.", "ns-2.awsdns-2.net.")),
    Record("example.com.", "A", None, (), alias_target="v4.example.com."),
    Record("v4.example.com.", "A", 300, ("10.1.1.1",)),
    Record("api.example.com.", "A", None, (), alias_target=f"dualstack.{ELB}."),
    Record("www.example.com.", "CNAME", 300, ("api.example.com.",)),
    Record("shop.example.com", "CNAME", 300, (ELB + ".",)),
    Record("ext.example.com.", "CNAME", 300, ("www.example.org.",)),
    Record("root.example.com.", "A", None, (), alias_target="api.example.com."),
    Record("\\052.apps.example.com.", "A", 60, ("10.0.0.5",)),
    Record("fixed.apps.example.com.", "A", 60, ("10.0.0.6",)),
    Record("txt.example.com.", "TXT", 300, ('"hello world"', '"v=spf1 -all"')),
    Record("example.com.", "MX", 300, ("10 mx.example.com.",)),
    Record("v6.example.com.", "AAAA", 300, ("::1",)),
    Record("bad.example.com.", "A", 300, ("not-an-address", "10.9.9.9")),
    Record("c.deep.example.com.", "A", 300, ("10.2.2.2",)),
    Record("loop1.example.com.", "CNAME", 300, ("loop2.example.com.",)),
    Record("loop2.example.com.", "CNAME", 300, ("loop1.example.com.",)),
]


def balancer_address(dns_name: str) -> str | None:
    return ELB_ADDRESS if dns_name == ELB else None


# Ports for the test's DNS server, below the kernel's ephemeral range (32768 and
# up), where outgoing connections and bind(:0) take theirs: a port handed out here
# cannot be taken by one of those between the check and the server's bind. Below
# the kit's own spare ports (15000-19999) too.
TEST_PORTS = range(13000, 15000)
_next = iter(random.sample(TEST_PORTS, len(TEST_PORTS)))


def free_port() -> int:
    """A port free on both UDP and TCP, never handed out twice by this process."""
    for port in _next:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            try:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 13000-14999")


class Dig:
    def __init__(self, port: int):
        self.port = port

    def run(self, name: str, qtype: str, *flags: str) -> str:
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.port), name, qtype, "+time=2", "+tries=1", *flags],
            capture_output=True, text=True, timeout=20, check=False,
        )
        return out.stdout

    def short(self, name: str, qtype: str = "A", tcp: bool = False) -> list[str]:
        return self.run(name, qtype, "+short", *(["+tcp"] if tcp else [])).split()

    def status(self, name: str, qtype: str = "A", *flags: str, tcp: bool = False) -> tuple[str, str]:
        """(status, flags) of the reply header."""
        out = self.run(name, qtype, "+noall", "+comments", *flags, *(["+tcp"] if tcp else []))
        status = re.search(r"status: (\w+)", out)
        flags = re.search(r"flags: ([\w ]+);", out)
        assert status and flags, f"no reply from the DNS server:\n{out}"
        return status.group(1), flags.group(1)

    def sections(self, name: str, qtype: str) -> str:
        return self.run(name, qtype, "+noall", "+answer", "+authority")


class DnsServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.records = list(RECORDS)
        cls.dns = KitDns(free_port(), lambda: cls.records, balancer_address)
        cls.dns.start()
        cls.dig = Dig(cls.dns.address[1])

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def test_alias_to_elb(self):
        self.assertEqual(self.dig.short("api.example.com"), [ELB_ADDRESS])
        self.assertIn("60\tIN\tA\t" + ELB_ADDRESS, self.dig.sections("api.example.com", "A"))

    def test_alias_to_elb_over_tcp(self):
        self.assertEqual(self.dig.short("api.example.com", tcp=True), [ELB_ADDRESS])

    def test_cname_chased_to_alias_and_elb(self):
        self.assertEqual(self.dig.short("www.example.com"), ["api.example.com.", ELB_ADDRESS])
        self.assertEqual(self.dig.short("shop.example.com", tcp=True), [ELB + ".", ELB_ADDRESS])

    def test_cname_to_elsewhere_is_not_recursed(self):
        self.assertEqual(self.dig.short("ext.example.com"), ["www.example.org."])
        self.assertEqual(self.dig.status("ext.example.com")[0], "NOERROR")

    def test_cname_queried_as_cname(self):
        self.assertEqual(self.dig.short("www.example.com", "CNAME"), ["api.example.com."])

    def test_cname_loop_terminates(self):
        self.assertEqual(self.dig.status("loop1.example.com")[0], "NOERROR")

    def test_elb_name_directly(self):
        self.assertEqual(self.dig.short(ELB), [ELB_ADDRESS])
        self.assertEqual(self.dig.short("dualstack." + ELB, tcp=True), [ELB_ADDRESS])
        self.assertEqual(self.dig.short(ELB, "AAAA"), [])

    def test_alias_to_other_records(self):
        self.assertEqual(self.dig.short("root.example.com"), [ELB_ADDRESS])
        self.assertEqual(self.dig.short("example.com"), ["10.1.1.1"])
        self.assertIn("root.example.com.", self.dig.sections("root.example.com", "A"))

    def test_wildcard(self):
        self.assertEqual(self.dig.short("foo.apps.example.com"), ["10.0.0.5"])
        self.assertEqual(self.dig.short("a.b.apps.example.com", tcp=True), ["10.0.0.5"])
        self.assertEqual(self.dig.short("fixed.apps.example.com"), ["10.0.0.6"])  # exact wins
        self.assertEqual(self.dig.status("apps.example.com")[0], "NOERROR")  # empty non-terminal

    def test_case_insensitive(self):
        self.assertEqual(self.dig.short("API.Example.COM."), [ELB_ADDRESS])

    def test_plain_types(self):
        self.assertEqual(self.dig.short("v4.example.com"), ["10.1.1.1"])
        self.assertEqual(self.dig.short("v6.example.com", "AAAA"), ["::1"])
        self.assertEqual(self.dig.short("example.com", "MX"), ["10", "mx.example.com."])
        txt = self.dig.run("txt.example.com", "TXT", "+short", "+tcp")
        self.assertIn('"hello world"', txt)
        self.assertIn('"v=spf1 -all"', txt)
        self.assertEqual(sorted(self.dig.short("example.com", "NS")), ["ns-1.awsdns-1.com.", "ns-2.awsdns-2.net."])

    def test_unreadable_value_is_skipped(self):
        self.assertEqual(self.dig.short("bad.example.com"), ["10.9.9.9"])

    def test_nxdomain(self):
        status, flags = self.dig.status("nope.example.com")
        self.assertEqual(status, "NXDOMAIN")
        self.assertIn("aa", flags.split())
        self.assertNotIn("ra", flags.split())
        self.assertIn("SOA", self.dig.sections("nope.example.com", "A"))  # for negative caching
        self.assertEqual(self.dig.status("www.example.org", tcp=True)[0], "NXDOMAIN")  # never recursed
        self.assertEqual(self.dig.status("x.deep.example.com")[0], "NXDOMAIN")

    def test_nodata(self):
        self.assertEqual(self.dig.status("v4.example.com", "AAAA")[0], "NOERROR")
        self.assertEqual(self.dig.short("v4.example.com", "AAAA"), [])
        self.assertEqual(self.dig.short("txt.example.com", "A"), [])
        self.assertEqual(self.dig.status("txt.example.com", "A", tcp=True)[0], "NOERROR")
        self.assertEqual(self.dig.status("deep.example.com")[0], "NOERROR")  # empty non-terminal
        self.assertEqual(self.dig.status("api.example.com", "TYPE65280")[0], "NOERROR")  # unknown type

    def test_garbage_does_not_kill_the_server(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for junk in (b"\xff", b"\x12\x34garbage-not-dns", b"\x00" * 12 + b"\xff" * 40):
                s.sendto(junk, self.dns.address)
            s.sendto(b"\x12\x34garbage-not-dns", self.dns.address)
            while (reply := s.recv(512))[:2] != b"\x12\x34":  # replies to earlier junk first
                pass
            self.assertEqual(reply[3] & 0x0F, 1)  # FORMERR, echoing the id
        with socket.create_connection(self.dns.address, timeout=2) as t:
            t.sendall(b"\x00\x05abc")  # a truncated TCP query, then hang up
        self.assertEqual(self.dig.short("api.example.com"), [ELB_ADDRESS])
        self.assertEqual(self.dig.short("api.example.com", tcp=True), [ELB_ADDRESS])

    def test_large_answer_truncated_over_udp(self):
        big = '"' + "x" * 200 + '"'
        self.records.append(Record("big.example.com.", "TXT", 30, (big,) * 10))
        try:
            self.assertIn("tc", self.dig.status("big.example.com", "TXT", "+ignore")[1].split())
            self.assertEqual(len(self.dig.short("big.example.com", "TXT")), 10)  # dig retried over TCP
        finally:
            self.records.pop()

    def test_records_read_per_query(self):
        self.records.append(Record("new.example.com.", "A", 30, ("10.3.3.3",)))
        try:
            self.assertEqual(self.dig.short("new.example.com"), ["10.3.3.3"])
        finally:
            self.records.pop()
        self.assertEqual(self.dig.status("new.example.com")[0], "NXDOMAIN")


class DnsServerLifecycleTest(unittest.TestCase):
    def test_failing_data_source_gives_servfail(self):
        def broken():
            raise RuntimeError("backend gone")

        dns = KitDns(free_port(), broken, balancer_address)
        dns.start()
        try:
            with self.assertLogs("kit_ext.dns_server", "ERROR") as logs:
                self.assertEqual(Dig(dns.address[1]).status("api.example.com")[0], "SERVFAIL")
                self.assertEqual(Dig(dns.address[1]).status("api.example.com", tcp=True)[0], "SERVFAIL")
            self.assertIn("backend gone", logs.output[0])
        finally:
            dns.stop()

    def test_stop_frees_the_port(self):
        dns = KitDns(free_port(), lambda: RECORDS, balancer_address)
        dns.start()
        dns.start()  # idempotent
        port = dns.address[1]
        self.assertEqual(Dig(port).short("api.example.com"), [ELB_ADDRESS])
        with self.assertRaises(OSError):  # in use: a second server fails clearly
            KitDns(port, lambda: RECORDS, balancer_address).start()
        dns.stop()
        dns.stop()  # idempotent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", port))
            t.bind(("127.0.0.1", port))
        again = KitDns(port, lambda: RECORDS, balancer_address)
        again.start()
        try:
            self.assertEqual(Dig(port).short("api.example.com", tcp=True), [ELB_ADDRESS])
        finally:
            again.stop()

    def test_port_zero_picks_one(self):
        dns = KitDns(0, lambda: RECORDS, balancer_address)
        dns.start()
        try:
            self.assertNotEqual(dns.address[1], 0)
            self.assertEqual(Dig(dns.address[1]).short("v4.example.com", tcp=True), ["10.1.1.1"])
        finally:
            dns.stop()


class Route53RecordsTest(unittest.TestCase):
    """route53_records() against moto's backend, as LocalStack fills it (skipped without moto)."""

    def test_reads_every_zone(self):
        try:
            import boto3
            from moto import mock_aws
        except ImportError:
            self.skipTest("moto not importable")
        from kit_ext.dns_server import route53_records

        with mock_aws():
            r53 = boto3.client("route53", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
            zone = r53.create_hosted_zone(Name="example.net", CallerReference="t1")["HostedZone"]["Id"]
            changes = [
                {"Action": "CREATE", "ResourceRecordSet": {"Name": "*.example.net", "Type": "A", "TTL": 60,
                                                           "ResourceRecords": [{"Value": "10.0.0.1"}, {"Value": "10.0.0.2"}]}},
                {"Action": "CREATE", "ResourceRecordSet": {"Name": "lb.example.net", "Type": "A",
                                                           "AliasTarget": {"HostedZoneId": "Z35SXDOTRQ7X7K", "DNSName": ELB,
                                                                           "EvaluateTargetHealth": False}}},
            ]
            r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
            records = {(r.name, r.type): r for r in route53_records()}

        wild = records.get(("\\052.example.net.", "A")) or records.get(("*.example.net.", "A"))
        self.assertIsNotNone(wild, records)
        self.assertEqual((wild.ttl, wild.values), (60, ("10.0.0.1", "10.0.0.2")))
        self.assertEqual(records[("lb.example.net.", "A")].alias_target, ELB)
        self.assertIn(("example.net.", "SOA"), records)
        self.assertTrue(records[("example.net.", "NS")].values)


if __name__ == "__main__":
    unittest.main()
