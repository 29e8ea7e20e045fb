"""terraform/: fmt and validate the module and its examples, then apply the whole stack
(terraform/run-example) on the kit, check it through the AWS APIs, and destroy it."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest
import uuid

from kit import client, plugin_dir, psql, start

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(REPO, "terraform")
RUN = os.path.join(MODULE, "run-example")
REGION = "us-east-1"
STACK_TAG = "gateway-kit:stack"


def run(args, cwd=None, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Runs args in their own process group (killed whole on timeout); output kept as text."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        log.seek(0)
        output = log.read()
    what = " ".join(os.path.basename(a) for a in args[:2])
    if code is None:
        raise AssertionError(f"{what} timed out after {timeout}s:\n{output[-4000:]}")
    if check and code != 0:
        raise AssertionError(f"{what} failed ({code}):\n{output[-4000:]}")
    return subprocess.CompletedProcess(args, code, output, "")


def tags(items) -> dict:
    return {t["Key"]: t["Value"] for t in items or []}


class TerraformStack(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("terraform"):
            raise AssertionError("terraform is not on PATH")
        cls.endpoint = start()
        cls.tmp = tempfile.mkdtemp(prefix="kit-tf-stack-")
        cls.work = os.path.join(cls.tmp, "work")
        cls.stack = "tfs-" + uuid.uuid4().hex[:6]
        rc = os.path.join(cls.tmp, "terraformrc")
        open(rc, "w").close()
        cls.env = {**os.environ, "TF_CLI_CONFIG_FILE": rc, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

    @classmethod
    def tearDownClass(cls):
        # Whatever happened, take the stack down again.
        run(cls.example("destroy"), env=cls.env, timeout=420, check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def example(cls, action, *extra):
        return [RUN, action, "--stack", cls.stack, "--region", REGION, "--endpoint", cls.endpoint, "--work", cls.work, *extra]

    def test_1_fmt_and_validate(self):
        run(["terraform", "fmt", "-check", "-recursive", "-diff", MODULE], env=self.env, timeout=60)
        self.assertIn("apply|plan|destroy", run([RUN, "--help"], env=self.env).stdout)
        run(["shellcheck", RUN], timeout=60)
        copy = os.path.join(self.tmp, "validate")
        shutil.copytree(MODULE, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
        mirror = plugin_dir()
        for sub in ("", "examples/localstack", "examples/aws"):
            d = os.path.join(copy, sub)
            run(["terraform", "init", "-backend=false", "-input=false", f"-plugin-dir={mirror}"], cwd=d, env=self.env, timeout=120)
            out = run(["terraform", "validate", "-no-color"], cwd=d, env=self.env, timeout=120)
            self.assertIn("The configuration is valid", out.stdout, sub or "module")

    def test_2_apply_check_destroy(self):
        run(self.example("apply"), env=self.env, timeout=480)
        example = os.path.join(self.work, "src", "examples", "localstack")
        out = json.loads(run(["terraform", f"-chdir={example}", "output", "-json"], env=self.env).stdout)["stack"]["value"]
        vpc_id = out["vpc_id"]

        ec2 = client("ec2", self.endpoint, REGION)
        [vpc] = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        cidr = vpc["CidrBlock"]
        self.assertEqual(tags(vpc.get("Tags"))[STACK_TAG], self.stack)
        self.assertEqual(len(out["public_subnet_ids"]), 3)
        self.assertEqual(len(out["private_subnet_ids"]), 3)

        wanted = {
            "nodes": {("tcp", 8000, 8003, cidr), ("tcp", 8443, 8446, cidr)},
            "db": {("tcp", 5432, 5432, cidr)},
            "elb": {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")},
        }
        for role, group_id in out["security_group_ids"].items():
            [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
            rules = {(p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
                     for p in group["IpPermissions"] for r in p.get("IpRanges", [])}
            self.assertEqual(rules, wanted[role], role)
            self.assertFalse(any(p.get("UserIdGroupPairs") or p.get("Ipv6Ranges") for p in group["IpPermissions"]), role)

        rds = client("rds", self.endpoint, REGION)
        [db] = rds.describe_db_instances(DBInstanceIdentifier=out["db_identifier"])["DBInstances"]
        self.assertTrue(db["MultiAZ"])
        self.assertTrue(db["StorageEncrypted"])
        self.assertEqual(db["KmsKeyId"], out["db_kms_key_arn"])
        self.assertEqual(db["BackupRetentionPeriod"], 7)
        self.assertTrue(db["CopyTagsToSnapshot"])
        self.assertEqual((db["DBName"], db["MasterUsername"]), ("kong", "kong"))
        self.assertEqual(tags(db.get("TagList"))[STACK_TAG], self.stack)
        kms = client("kms", self.endpoint, REGION)
        self.assertTrue(kms.get_key_rotation_status(KeyId=out["db_kms_key_arn"])["KeyRotationEnabled"])

        # The generated password: in SSM, accepted by PostgreSQL, absent from the state.
        ssm = client("ssm", self.endpoint, REGION)
        secret = ssm.get_parameter(Name=out["secret_names"]["db_password"], WithDecryption=True)["Parameter"]
        self.assertEqual(secret["Type"], "SecureString")
        self.assertEqual(psql(out["db_address"], out["db_port"], "kong", secret["Value"], "kong", "SELECT current_user"), "kong")
        with open(os.path.join(example, "terraform.tfstate")) as f:
            self.assertNotIn(secret["Value"], f.read())

        elb = client("elb", self.endpoint, REGION)
        [lb] = elb.describe_load_balancers(LoadBalancerNames=[out["elb_name"]])["LoadBalancerDescriptions"]
        self.assertEqual(lb["DNSName"], out["elb_dns_name"])
        listeners = {(d["Listener"]["LoadBalancerPort"], d["Listener"]["InstancePort"], d["Listener"]["Protocol"].upper())
                     for d in lb["ListenerDescriptions"]}
        self.assertEqual(listeners, {(80, 8000, "TCP"), (443, 8443, "TCP")})
        self.assertEqual(sorted(lb["Subnets"]), sorted(out["public_subnet_ids"]))
        self.assertEqual(lb["HealthCheck"]["Target"], "HTTP:8001/status")
        backends = {b["InstancePort"]: b.get("PolicyNames", []) for b in lb.get("BackendServerDescriptions", [])}
        self.assertEqual(set(backends), {8000, 8443})
        for port, names in backends.items():
            [policy] = elb.describe_load_balancer_policies(LoadBalancerName=out["elb_name"], PolicyNames=names)["PolicyDescriptions"]
            self.assertEqual(policy["PolicyTypeName"], "ProxyProtocolPolicyType", port)
        attrs = elb.describe_load_balancer_attributes(LoadBalancerName=out["elb_name"])["LoadBalancerAttributes"]
        self.assertTrue(attrs["CrossZoneLoadBalancing"]["Enabled"])
        self.assertEqual(attrs["ConnectionDraining"], {"Enabled": True, "Timeout": 30})
        [described] = elb.describe_tags(LoadBalancerNames=[out["elb_name"]])["TagDescriptions"]
        self.assertEqual(tags(described["Tags"])[STACK_TAG], self.stack)

        asg = client("autoscaling", self.endpoint, REGION)
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"]
        self.assertEqual(group["HealthCheckType"], "ELB")
        self.assertEqual(group["HealthCheckGracePeriod"], 300)
        self.assertEqual(sorted(group["VPCZoneIdentifier"].split(",")), sorted(out["private_subnet_ids"]))
        self.assertEqual(group["LoadBalancerNames"], [out["elb_name"]])
        [hook] = asg.describe_lifecycle_hooks(AutoScalingGroupName=out["asg_name"])["LifecycleHooks"]
        self.assertEqual(hook["LifecycleTransition"], "autoscaling:EC2_INSTANCE_TERMINATING")
        [version] = ec2.describe_launch_template_versions(LaunchTemplateId=out["launch_template_id"])["LaunchTemplateVersions"]
        data = version["LaunchTemplateData"]
        self.assertEqual(data["MetadataOptions"]["HttpTokens"], "required")
        [root] = data["BlockDeviceMappings"]
        self.assertEqual((root["Ebs"]["VolumeType"], root["Ebs"]["Encrypted"]), ("gp3", True))

        # A second plan finds nothing to change.
        plan = run(self.example("plan", "--", "-detailed-exitcode"), env=self.env, timeout=180, check=False)
        self.assertEqual(plan.returncode, 0, f"the second plan is not empty:\n{plan.stdout[-4000:]}\n{plan.stderr[-2000:]}")

        run(self.example("destroy"), env=self.env, timeout=420)
        self.assertEqual(ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"], [])
        with self.assertRaises(rds.exceptions.DBInstanceNotFoundFault):
            rds.describe_db_instances(DBInstanceIdentifier=out["db_identifier"])
        self.assertEqual(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"], [])


if __name__ == "__main__":
    unittest.main()
