"""Fault injection: a /_kit/faults rule fails matching requests with an AWS error, in the
service's protocol, `count` times; GET lists its hits; DELETE removes it; a rule with a
region and no service fails every service of that region. Each rule is narrowed to this
test's own access key, as the kit is shared (test_rds_backups takes a whole region down)."""

import json
import os
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from kit import start


def faults(endpoint: str, method: str = "GET", body: dict | None = None, path: str = "") -> tuple[int, dict]:
    """Calls /_kit/faults[path]; returns the status and the JSON answer."""
    req = urllib.request.Request(
        f"{endpoint}/_kit/faults{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = start()
        # Shorter than 20 characters: LocalStack maps it to account 000000000000, like `test`.
        cls.key = f"flt-{os.getpid():x}-{os.urandom(3).hex()}"

    def client(self, service: str):
        """A client with this test's access key and no retries, so every fault shows."""
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.key, aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def rule(self, rule_id: int) -> dict | None:
        status, body = faults(self.endpoint)
        self.assertEqual(status, 200)
        return next((r for r in body["rules"] if r["id"] == rule_id), None)

    def test_throttles_count_times_then_succeeds(self):
        status, rule = faults(self.endpoint, "POST", {
            "service": "sts", "operation": "GetCallerIdentity", "access_key": self.key, "count": 2})
        self.assertEqual(status, 201, rule)
        self.assertEqual((rule["error"], rule["remaining"], rule["hits"]), ("Throttling", 2, 0))
        sts = self.client("sts")
        for _ in range(2):
            with self.assertRaises(ClientError) as raised:
                sts.get_caller_identity()
            self.assertEqual(raised.exception.response["Error"]["Code"], "Throttling")
            self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(sts.get_caller_identity()["Account"], "000000000000")
        listed = self.rule(rule["id"])
        self.assertEqual((listed["hits"], listed["remaining"]), (2, 0))
        status, body = faults(self.endpoint, "DELETE", path=f"/{rule['id']}")
        self.assertEqual((status, body), (200, {"removed": 1}))
        self.assertIsNone(self.rule(rule["id"]))

    def test_json_protocol_error_and_narrow_match(self):
        _, rule = faults(self.endpoint, "POST", {
            "service": "kms", "operation": "ListKeys", "access_key": self.key, "region": "eu-west-1",
            "error": "ThrottlingException", "count": 1})
        # Another region, or another access key, is not throttled.
        self.client("kms").list_keys()
        boto3.client("kms", endpoint_url=self.endpoint, region_name="eu-west-1",
                     aws_access_key_id="test", aws_secret_access_key="test").list_keys()
        self.assertEqual(self.rule(rule["id"])["hits"], 0)
        kms = boto3.client("kms", endpoint_url=self.endpoint, region_name="eu-west-1",
                           aws_access_key_id=self.key, aws_secret_access_key="test",
                           config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        with self.assertRaises(ClientError) as raised:
            kms.list_keys()
        self.assertEqual(raised.exception.response["Error"]["Code"], "ThrottlingException")
        kms.list_keys()
        self.assertEqual(self.rule(rule["id"])["hits"], 1)
        faults(self.endpoint, "DELETE", path=f"/{rule['id']}")

    def test_region_rule_without_service_fails_every_service_there(self):
        _, rule = faults(self.endpoint, "POST", {
            "region": "ap-south-1", "access_key": self.key, "error": "ServiceUnavailable", "status": 503, "count": 2})
        self.assertIsNone(rule["service"])

        def regional(service: str):
            return boto3.client(service, endpoint_url=self.endpoint, region_name="ap-south-1",
                                aws_access_key_id=self.key, aws_secret_access_key="test",
                                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))

        self.client("sts").get_caller_identity()  # another region
        for call in (regional("sts").get_caller_identity, regional("kms").list_keys):
            with self.assertRaises(ClientError) as raised:
                call()
            self.assertEqual(raised.exception.response["Error"]["Code"], "ServiceUnavailable")
            self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        self.assertEqual(self.rule(rule["id"])["hits"], 2)
        faults(self.endpoint, "DELETE", path=f"/{rule['id']}")

    def test_delete_clears_every_rule(self):
        ids = [faults(self.endpoint, "POST", {"service": "ec2", "access_key": self.key, "count": 5})[1]["id"]
               for _ in range(2)]
        status, body = faults(self.endpoint, "DELETE")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(body["removed"], 2)
        self.assertEqual([i for i in ids if self.rule(i)], [])
        self.client("ec2").describe_availability_zones()

    def test_bad_rules_are_refused(self):
        for body in ({}, {"service": "sts", "count": 0}, {"service": "sts", "status": "400"}, {"service": "sts", "x": 1}):
            status, answer = faults(self.endpoint, "POST", body)
            self.assertEqual(status, 400, body)
            self.assertIn("error", answer)
        self.assertEqual(faults(self.endpoint, "DELETE", path="/999999999")[0], 404)


if __name__ == "__main__":
    unittest.main()
