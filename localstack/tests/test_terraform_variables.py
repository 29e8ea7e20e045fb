"""terraform/variables.tf's validations, run by terraform itself: a bad value stops
`terraform plan` before anything is built, with the variable's own message. The DNS
values are checked against the same cases as the CloudFormation template's
`AllowedPattern`s (and provisioner/src/spec.rs's unit test has them too), so the
three front doors take and refuse the same values.

The variables are planned alone (a copy of variables.tf in a scratch directory, no
provider), so no kit or AWS account is needed; a case takes a fraction of a second.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIABLES = os.path.join(REPO, "terraform", "variables.tf")
TEMPLATE = os.path.join(REPO, "cloudformation", "gateway.yaml")

GOOD_DOMAINS = ["api.example.com", "a-1.b.example.co"]
BAD_DOMAINS = ["", "example", "api..example.com", "-api.example.com", "api_x.example.com", "API.example.com",
               "api.example.com.", "api.example.c0m"]
# AWS's zone ids start with Z; LocalStack's (the last good one) need not.
GOOD_ZONES = ["Z35SXDOTRQ7X7K", "Z1", "D3S5MTPM1K5LMM6GBMT19F"]
BAD_ZONES = ["", "z123", "/hostedzone/Z123", "Z123-4", "Z12345678901234567890123456789012"]


def allowed_pattern(parameter: str) -> re.Pattern:
    """The template's AllowedPattern of a parameter (CloudFormation matches it whole)."""
    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    m = re.search(rf"^  {parameter}:\n(?:    .*\n)*?    AllowedPattern: (.*)$", text, re.M)
    if not m:
        raise AssertionError(f"{TEMPLATE} has no AllowedPattern for {parameter}")
    return re.compile(m.group(1).strip())


class Variables(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("terraform"):
            raise AssertionError("terraform is not on PATH")
        cls.work = tempfile.mkdtemp(prefix="kit-tf-vars-")
        shutil.copy(VARIABLES, cls.work)
        rc = os.path.join(cls.work, "terraformrc")
        open(rc, "w").close()
        cls.env = {**os.environ, "TF_CLI_CONFIG_FILE": rc, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                   "CHECKPOINT_DISABLE": "1"}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def plan(self, **values) -> subprocess.CompletedProcess:
        args = [f"-var={k}={v}" for k, v in {"stack_name": "gw", **values}.items()]
        return subprocess.run(["terraform", "plan", "-no-color", "-lock=false", *args], cwd=self.work,
                              env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def assert_refused(self, message: str, **values):
        out = self.plan(**values)
        self.assertNotEqual(out.returncode, 0, f"{values} was accepted:\n{out.stdout[-2000:]}")
        text = " ".join((out.stdout + out.stderr).split())
        self.assertIn("Invalid value for variable", text, text[-2000:])
        self.assertIn(message, text, text[-2000:])

    def test_a_dns_name_and_zone_are_accepted(self):
        pairs = [(d, GOOD_ZONES[0]) for d in GOOD_DOMAINS] + [(GOOD_DOMAINS[0], z) for z in GOOD_ZONES]
        for domain, zone in pairs:
            out = self.plan(domain=domain, hosted_zone_id=zone)
            self.assertEqual(out.returncode, 0, f"{domain} {zone}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")

    def test_dns_values_are_checked_before_anything_is_built(self):
        self.assert_refused("give both or neither", domain="api.example.com")
        for bad in BAD_DOMAINS:
            with self.subTest(domain=bad):
                self.assert_refused("domain: a lower-case DNS name", domain=bad, hosted_zone_id="Z123")
        for bad in BAD_ZONES:
            with self.subTest(zone=bad):
                self.assert_refused("hosted_zone_id: a Route53 hosted zone id", domain="api.example.com",
                                    hosted_zone_id=bad)

    def test_the_template_takes_and_refuses_the_same_values(self):
        domain, zone = allowed_pattern("Domain"), allowed_pattern("HostedZoneId")
        for good in GOOD_DOMAINS:
            self.assertTrue(domain.fullmatch(good), good)
        for good in GOOD_ZONES:
            self.assertTrue(zone.fullmatch(good), good)
        # Empty is the template's "no DNS"; Terraform says that with null.
        for bad in [d for d in BAD_DOMAINS if d]:
            self.assertFalse(domain.fullmatch(bad), bad)
        for bad in [z for z in BAD_ZONES if z]:
            self.assertFalse(zone.fullmatch(bad), bad)


if __name__ == "__main__":
    unittest.main()
