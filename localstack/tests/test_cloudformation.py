"""cloudformation/: the template lints clean (cfn-lint, checkov), deploys with the AWS CLI
(`cloudformation/deploy`, i.e. `aws cloudformation deploy`) through LocalStack's own
CloudFormation engine and the kit's resource providers, and every resource it reports is
real: read back through the service APIs, never through CloudFormation, with the stack's
facts. A parameter change goes through a change set; the nodes boot and serve through
the stack's ELB; deleting the stack leaves the final DB snapshot and nothing else.

Needs the built `gateway` (debug) in CARGO_TARGET_DIR, root (namespaces), haproxy, curl."""

import base64
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

from botocore.exceptions import ClientError

from kit import KIT_DIR, client, psql, start, wait

REPO = os.path.dirname(KIT_DIR)
CFN = os.path.join(REPO, "cloudformation")
DEPLOY = os.path.join(CFN, "deploy")
LINT = os.path.join(CFN, "lint")
AWS_CLI = os.path.join(KIT_DIR, ".venv", "bin", "aws")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/gateway-kit/target")
GATEWAY = os.path.join(TARGET, "debug", "gateway")
REGION = "us-east-1"
DR_REGION = "us-west-2"
STACK_TAG = "gateway-kit:stack"
CIDR = "10.0.0.0/16"  # the template's defaults: 3 AZs, per-AZ NAT, the provisioner's split
# Small and quick on the kit; everything else is the template's default.
OVERRIDES = ["DBInstanceClass=db.t3.micro", "DBAllocatedStorage=20", "InstanceType=t3.small",
             "HealthCheckGracePeriod=60", "ConnectionDrainingTimeout=5", "TerminationDrainSeconds=60"]


def run(args, env=None, timeout=900, cwd=None) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(os.path.basename(a) for a in args[:2])} failed ({out.returncode}):\n"
                             f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def tags(items) -> dict:
    return {t["Key"]: t["Value"] for t in items or []}


def gone(call, *codes) -> bool:
    """True when `call` fails with one of the not-found `codes` (or returns nothing)."""
    try:
        return not call()
    except ClientError as e:
        code = e.response["Error"]["Code"]
        if code in codes or "NotFound" in code:
            return True
        raise


class Load:
    """Requests on new connections until stopped (each may reach either node); counts failures."""

    def __init__(self, url: str):
        self.url, self.ok, self.failed, self.errors = url, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 900
        while not self._stop.is_set() and time.monotonic() < deadline:
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", self.url],
                                 capture_output=True, text=True, timeout=10, check=False)
            if out.stdout == "200":
                self.ok += 1
            else:
                self.failed += 1
                self.errors.append(f"{out.stdout} {out.stderr.strip()[:200]}")
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


class Lint(unittest.TestCase):
    def test_template_lints_clean(self):
        out = run([LINT], timeout=900)
        self.assertIn("cloudformation lint: clean", out.stderr)
        self.assertIn("Failed checks: 0", out.stdout)
        run(["shellcheck", "-x", "cloudformation/deploy", "cloudformation/lint", "cloudformation/lib.sh"], timeout=60, cwd=REPO)
        self.assertIn("--stack NAME", run([DEPLOY, "--help"]).stdout)


PARTS = """
Parameters:
  Tag: {Type: String, Default: one}
  Port: {Type: Number, Default: 9000}
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.90.0.0/16}
  Group:
    Type: AWS::EC2::SecurityGroup
    Properties: {GroupDescription: parts, VpcId: !Ref Vpc}
  In:
    Type: AWS::EC2::SecurityGroupIngress
    Properties: {GroupId: !Ref Group, IpProtocol: tcp, FromPort: !Ref Port, ToPort: !Ref Port, CidrIp: 10.90.0.0/16,
                 Description: parts in}
  Out:
    Type: AWS::EC2::SecurityGroupEgress
    Properties: {GroupId: !Ref Group, IpProtocol: tcp, FromPort: 5432, ToPort: 5432, CidrIp: 10.91.0.0/16,
                 Description: parts out}
  Address:
    Type: AWS::EC2::EIP
    Properties:
      Domain: vpc
      Tags: [{Key: parts, Value: !Ref Tag}]
  Params:
    Type: AWS::RDS::DBParameterGroup
    Properties:
      Family: postgres15
      Description: parts
      Parameters: {rds.force_ssl: "1"}
      Tags: [{Key: parts, Value: !Ref Tag}]
Outputs:
  AllocationId: {Value: !GetAtt Address.AllocationId}
"""


class ProviderParts(unittest.TestCase):
    """The kit's providers the stack does not use, or uses only one way: SecurityGroupEgress,
    DBParameterGroup, EIP tags on update, a rule replaced when its port changes; each read
    back through EC2 and RDS, and gone after delete."""

    def test_parts_create_update_delete(self):
        endpoint = start()
        cfn, ec2, rds = (client(s, endpoint, REGION) for s in ("cloudformation", "ec2", "rds"))
        name = "cfparts" + uuid.uuid4().hex[:6]

        def settle(want):
            status = wait(f"stack {name}", lambda: (s := cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
                          .endswith(("_COMPLETE", "_FAILED")) and s, limit=180, step=1)
            self.assertEqual(status, want)
            return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in
                    cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}

        cfn.create_stack(StackName=name, TemplateBody=PARTS)
        try:
            ids = settle("CREATE_COMPLETE")
            group = ids["Group"]
            rules = ec2.describe_security_group_rules(SecurityGroupRuleIds=[ids["In"], ids["Out"]])["SecurityGroupRules"]
            got = {(r["IsEgress"], r["FromPort"], r["CidrIpv4"], r.get("Description")) for r in rules}
            self.assertEqual(got, {(False, 9000, "10.90.0.0/16", "parts in"), (True, 5432, "10.91.0.0/16", "parts out")})
            self.assertTrue(all(r["GroupId"] == group for r in rules))
            [address] = ec2.describe_addresses(PublicIps=[ids["Address"]])["Addresses"]
            self.assertEqual(tags(address.get("Tags")), {"parts": "one"})
            [pg] = rds.describe_db_parameter_groups(DBParameterGroupName=ids["Params"])["DBParameterGroups"]
            self.assertEqual(pg["DBParameterGroupFamily"], "postgres15")
            params = rds.describe_db_parameters(DBParameterGroupName=ids["Params"], Source="user")["Parameters"]
            self.assertIn(("rds.force_ssl", "1"), {(p["ParameterName"], p.get("ParameterValue")) for p in params})

            # An update: the ingress rule is replaced (a new port), the EIP re-tagged in place.
            cfn.update_stack(StackName=name, TemplateBody=PARTS, Parameters=[
                {"ParameterKey": "Tag", "ParameterValue": "two"}, {"ParameterKey": "Port", "ParameterValue": "9001"}])
            after = settle("UPDATE_COMPLETE")
            self.assertEqual(after["Address"], ids["Address"])
            # Read through EC2: the group holds the new rule and not the old one. (LocalStack's
            # engine then drops a replaced resource from the stack's resource list.)
            rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroupRules"]
            ingress = {(r["FromPort"], r["ToPort"], r["CidrIpv4"]) for r in rules if not r["IsEgress"]}
            self.assertEqual(ingress, {(9001, 9001, "10.90.0.0/16")})
            self.assertTrue(gone(lambda: ec2.describe_security_group_rules(SecurityGroupRuleIds=[ids["In"]])["SecurityGroupRules"],
                                 "InvalidSecurityGroupRuleId.NotFound"))
            [address] = ec2.describe_addresses(PublicIps=[ids["Address"]])["Addresses"]
            self.assertEqual(tags(address.get("Tags")), {"parts": "two"})
        finally:
            cfn.delete_stack(StackName=name)
        wait(f"stack {name} deleted", lambda: gone(lambda: [s for s in cfn.describe_stacks(StackName=name)["Stacks"]
                                                             if s["StackStatus"] != "DELETE_COMPLETE"], "ValidationError"),
             limit=180, step=1)
        self.assertTrue(gone(lambda: ec2.describe_addresses(Filters=[{"Name": "public-ip", "Values": [ids["Address"]]}])["Addresses"]))
        self.assertTrue(gone(lambda: rds.describe_db_parameter_groups(DBParameterGroupName=ids["Params"])["DBParameterGroups"],
                             "DBParameterGroupNotFound"))
        self.assertTrue(gone(lambda: ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroups"]))


class CloudFormationStack(unittest.TestCase):
    """One stack through its life; the tests run in order and share it."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(GATEWAY):
            raise unittest.SkipTest(f"{GATEWAY} is missing: cargo build -p gateway")
        cls.endpoint = start()
        cls.stack = "cf" + uuid.uuid4().hex[:6]
        cls.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_ENDPOINT_URL": cls.endpoint, "AWS_CLI": AWS_CLI}
        cls.cfn = client("cloudformation", cls.endpoint, REGION)
        cls.ec2 = client("ec2", cls.endpoint, REGION)
        cls.rds = client("rds", cls.endpoint, REGION)
        cls.elb = client("elb", cls.endpoint, REGION)
        cls.asg = client("autoscaling", cls.endpoint, REGION)
        cls.kms = client("kms", cls.endpoint, REGION)
        cls.sm = client("secretsmanager", cls.endpoint, REGION)
        cls.iam = client("iam", cls.endpoint, REGION)
        cls.s3 = client("s3", cls.endpoint, REGION)
        cls.resources: list[dict] = []
        cls.dr_key = None
        cls.tmp = tempfile.mkdtemp(prefix="kit-cfn-")

    @classmethod
    def tearDownClass(cls):
        # Whatever happened: the stack, its final snapshot and the artifact bucket go.
        subprocess.run([DEPLOY, "--delete", "--stack", cls.stack, "--region", REGION], env=cls.env,
                       capture_output=True, timeout=900, check=False)
        for snap in cls.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]:
            if snap["DBSnapshotIdentifier"].startswith(f"{cls.stack}-db-final-"):
                cls.rds.delete_db_snapshot(DBSnapshotIdentifier=snap["DBSnapshotIdentifier"])
        # The backups replicated to the DR region (kept there after the delete, as on
        # AWS) and the DR key.
        dr = client("rds", cls.endpoint, DR_REGION)
        for b in dr.describe_db_instance_automated_backups()["DBInstanceAutomatedBackups"]:
            if b["DBInstanceIdentifier"] == f"{cls.stack}-db":
                try:
                    dr.stop_db_instance_automated_backups_replication(SourceDBInstanceArn=b["DBInstanceArn"])
                except ClientError:
                    pass
                dr.delete_db_instance_automated_backup(DBInstanceAutomatedBackupsArn=b["DBInstanceAutomatedBackupsArn"])
        if cls.dr_key:
            client("kms", cls.endpoint, DR_REGION).schedule_key_deletion(KeyId=cls.dr_key, PendingWindowInDays=7)
        bucket = f"{cls.stack}-artifacts-000000000000-{REGION}"
        try:
            for obj in cls.s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                cls.s3.delete_object(Bucket=bucket, Key=obj["Key"])
            cls.s3.delete_bucket(Bucket=bucket)
        except ClientError:
            pass

    def deploy(self, *extra: str, overrides=()):
        return run([DEPLOY, "--stack", self.stack, "--region", REGION, "--gateway-binary", GATEWAY, *extra,
                    "--", *OVERRIDES, *overrides], env=self.env)

    def outputs(self) -> dict:
        [stack] = self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    # --- the tests, in order ---------------------------------------------------------------

    def test_1_deploys_to_create_complete(self):
        started = time.monotonic()
        self.__class__.deploy_started = started
        self.deploy()
        print(f"figure: cloudformation deploy to CREATE_COMPLETE: {time.monotonic() - started:.0f}s")
        [stack] = self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
        self.assertEqual(stack["StackStatus"], "CREATE_COMPLETE")
        resources = self.cfn.list_stack_resources(StackName=self.stack)["StackResourceSummaries"]
        self.__class__.resources = resources
        self.assertTrue(all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in resources), resources)
        # 3 AZs with a NAT gateway each: every conditional resource is in.
        count = {}
        for r in resources:
            count[r["ResourceType"]] = count.get(r["ResourceType"], 0) + 1
        self.assertEqual(count["AWS::EC2::Subnet"], 6)
        self.assertEqual(count["AWS::EC2::NatGateway"], 3)
        self.assertEqual(count["AWS::EC2::EIP"], 3)
        self.assertNotIn("AWS::Route53::RecordSet", count)  # no Domain given

    def test_2_every_physical_id_is_real(self):
        """Each physical id read back through its service's API: a provider that "succeeds"
        without doing anything (LocalStack's fallback gives the id `unknown`) fails here."""
        self.assertTrue(self.resources, "the stack was not deployed")
        ec2, rds, elb, asg = self.ec2, self.rds, self.elb, self.asg
        out = self.outputs()

        def attachment(pid):
            igw = pid.split("|")[0]
            igws = ec2.describe_internet_gateways(
                Filters=[{"Name": "attachment.vpc-id", "Values": [out["VpcId"]]}])["InternetGateways"]
            return igws and (igw == "IGW" or igws[0]["InternetGatewayId"] == igw)

        def route(pid):
            table, dest = pid.split("~")
            [rt] = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
            return [r for r in rt["Routes"] if r.get("DestinationCidrBlock") == dest and
                    (r.get("NatGatewayId") or r.get("GatewayId", "").startswith("igw-"))]

        readers = {
            "AWS::EC2::VPC": lambda p: ec2.describe_vpcs(VpcIds=[p])["Vpcs"],
            "AWS::EC2::Subnet": lambda p: ec2.describe_subnets(SubnetIds=[p])["Subnets"],
            "AWS::EC2::InternetGateway": lambda p: ec2.describe_internet_gateways(InternetGatewayIds=[p])["InternetGateways"],
            "AWS::EC2::VPCGatewayAttachment": attachment,
            "AWS::EC2::RouteTable": lambda p: ec2.describe_route_tables(RouteTableIds=[p])["RouteTables"],
            "AWS::EC2::Route": route,
            "AWS::EC2::SubnetRouteTableAssociation": lambda p: ec2.describe_route_tables(
                Filters=[{"Name": "association.route-table-association-id", "Values": [p]}])["RouteTables"],
            "AWS::EC2::EIP": lambda p: ec2.describe_addresses(PublicIps=[p])["Addresses"],
            "AWS::EC2::NatGateway": lambda p: [n for n in ec2.describe_nat_gateways(NatGatewayIds=[p])["NatGateways"]
                                               if n["State"] == "available"],
            "AWS::EC2::SecurityGroup": lambda p: ec2.describe_security_groups(GroupIds=[p])["SecurityGroups"],
            "AWS::EC2::SecurityGroupIngress": lambda p: ec2.describe_security_group_rules(
                SecurityGroupRuleIds=[p])["SecurityGroupRules"],
            "AWS::EC2::LaunchTemplate": lambda p: ec2.describe_launch_templates(LaunchTemplateIds=[p])["LaunchTemplates"],
            "AWS::KMS::Key": lambda p: self.kms.describe_key(KeyId=p)["KeyMetadata"]["Enabled"],
            "AWS::KMS::Alias": lambda p: [a for a in self.kms.list_aliases()["Aliases"] if a["AliasName"] == p],
            "AWS::SecretsManager::Secret": lambda p: self.sm.describe_secret(SecretId=p)["ARN"] == p,
            "AWS::RDS::DBSubnetGroup": lambda p: rds.describe_db_subnet_groups(DBSubnetGroupName=p)["DBSubnetGroups"],
            "AWS::RDS::DBInstance": lambda p: [d for d in rds.describe_db_instances(DBInstanceIdentifier=p)["DBInstances"]
                                               if d["DBInstanceStatus"] == "available"],
            "AWS::IAM::Role": lambda p: self.iam.get_role(RoleName=p)["Role"],
            "AWS::IAM::InstanceProfile": lambda p: self.iam.get_instance_profile(InstanceProfileName=p)["InstanceProfile"]["Roles"],
            "AWS::ElasticLoadBalancing::LoadBalancer": lambda p: elb.describe_load_balancers(
                LoadBalancerNames=[p])["LoadBalancerDescriptions"],
            "AWS::AutoScaling::AutoScalingGroup": lambda p: asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=[p])["AutoScalingGroups"],
            "AWS::AutoScaling::LifecycleHook": lambda p: asg.describe_lifecycle_hooks(
                AutoScalingGroupName=out["AutoScalingGroupName"], LifecycleHookNames=[p])["LifecycleHooks"],
        }
        for r in self.resources:
            pid, kind = r.get("PhysicalResourceId"), r["ResourceType"]
            with self.subTest(resource=r["LogicalResourceId"], type=kind, id=pid):
                self.assertIn(kind, readers, f"no reader for {kind}: add one")
                self.assertTrue(pid and pid != "unknown", f"{r['LogicalResourceId']} has no real physical id")
                self.assertTrue(readers[kind](pid), f"{kind} {pid} is not there")

    def test_3_resources_carry_the_facts(self):
        out = self.outputs()
        ec2, stack = self.ec2, self.stack
        [vpc] = ec2.describe_vpcs(VpcIds=[out["VpcId"]])["Vpcs"]
        self.assertEqual(vpc["CidrBlock"], CIDR)
        self.assertEqual(tags(vpc.get("Tags")), {"Name": f"{stack}-vpc", STACK_TAG: stack})
        self.assertTrue(ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"])
        self.assertTrue(ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"])

        # The provisioner's split: public block i, private block 8 + i, one per AZ.
        public, private = out["PublicSubnetIds"].split(","), out["PrivateSubnetIds"].split(",")
        subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=public + private)["Subnets"]}
        self.assertEqual(sorted(subnets[s]["CidrBlock"] for s in public), ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"])
        self.assertEqual(sorted(subnets[s]["CidrBlock"] for s in private), ["10.0.128.0/20", "10.0.144.0/20", "10.0.160.0/20"])
        self.assertEqual(len({subnets[s]["AvailabilityZone"] for s in private}), 3)
        for s in subnets.values():
            self.assertEqual(tags(s.get("Tags"))[STACK_TAG], stack)
            self.assertFalse(s.get("MapPublicIpOnLaunch"))
        # One NAT gateway per AZ (NatMode=per_az), each private subnet routed to its own AZ's.
        nats = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["NatGateways"]
        nats = [n for n in nats if n["State"] == "available"]
        self.assertEqual(sorted(subnets[n["SubnetId"]]["CidrBlock"] for n in nats),
                         ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"])
        for n in nats:
            self.assertEqual(tags(n.get("Tags")).get(STACK_TAG), stack, "NAT gateway tags")
        nat_az = {subnets[n["SubnetId"]]["AvailabilityZone"]: n["NatGatewayId"] for n in nats}
        for sid in private:
            [rt] = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
            [default] = [r for r in rt["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
            self.assertEqual(default.get("NatGatewayId"), nat_az[subnets[sid]["AvailabilityZone"]])
        addresses = ec2.describe_addresses(AllocationIds=[n["NatGatewayAddresses"][0]["AllocationId"] for n in nats])["Addresses"]
        self.assertEqual({tags(a.get("Tags")).get(STACK_TAG) for a in addresses}, {stack})

        # Security groups: their rules are facts, compared by test_parity; here, that the
        # outputs name the stack's groups.
        for key in ("NodesSecurityGroupId", "DbSecurityGroupId", "ElbSecurityGroupId"):
            [group] = ec2.describe_security_groups(GroupIds=[out[key]])["SecurityGroups"]
            self.assertEqual(group["VpcId"], vpc["VpcId"], key)
            self.assertEqual(tags(group.get("Tags"))[STACK_TAG], stack, key)

        # The database (its facts: test_parity): encrypted with the stack's key, the pinned
        # minor version, no automatic minor upgrades; its password from Secrets Manager works.
        [db] = self.rds.describe_db_instances(DBInstanceIdentifier=out["DbInstanceIdentifier"])["DBInstances"]
        self.assertEqual(db["KmsKeyId"], out["DbKmsKeyArn"])
        self.assertEqual((db["Engine"], db["EngineVersion"]), ("postgres", "15.12"))
        self.assertFalse(db["AutoMinorVersionUpgrade"])
        self.assertEqual(db["DBSubnetGroup"]["DBSubnetGroupName"], f"{stack}-db")
        self.assertEqual(sorted(s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]), sorted(private))
        self.assertEqual([g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]], [out["DbSecurityGroupId"]])
        key = self.kms.describe_key(KeyId=out["DbKmsKeyArn"])["KeyMetadata"]
        self.assertTrue(self.kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"])
        self.assertIn(f"alias/{stack}-db", [a["AliasName"] for a in self.kms.list_aliases(KeyId=key["KeyId"])["Aliases"]])
        password = self.sm.get_secret_value(SecretId=f"/{stack}/db/master-password")["SecretString"]
        self.assertEqual(len(password), 32)
        self.assertEqual(psql(db["Endpoint"]["Address"], db["Endpoint"]["Port"], "kong", password, "kong",
                         "SELECT current_user"), "kong")
        token = self.sm.get_secret_value(SecretId=f"/{stack}/gateway/admin-token")["SecretString"]
        self.assertEqual(len(token), 48)
        for name in (f"/{stack}/db/master-password", f"/{stack}/gateway/admin-token"):
            secret = self.sm.describe_secret(SecretId=name)
            self.assertIn(secret.get("KmsKeyId"), (out["DbKmsKeyArn"], key["KeyId"]), name)
            self.assertEqual(tags(secret.get("Tags"))[STACK_TAG], stack)
        # No secret is a parameter or sits in the template's outputs.
        [described] = self.cfn.describe_stacks(StackName=stack)["Stacks"]
        self.assertNotIn(password, json.dumps(described, default=str))
        self.assertNotIn(token, json.dumps(described, default=str))

        # The load balancer (its facts: test_parity): its DNS name, subnets and group;
        # draining as the parameter set it.
        elb_name = out["LoadBalancerName"]
        [lb] = self.elb.describe_load_balancers(LoadBalancerNames=[elb_name])["LoadBalancerDescriptions"]
        self.assertEqual(lb["DNSName"], out["LoadBalancerDnsName"])
        self.assertEqual(sorted(lb["Subnets"]), sorted(public))
        self.assertEqual(lb["SecurityGroups"], [out["ElbSecurityGroupId"]])
        attrs = self.elb.describe_load_balancer_attributes(LoadBalancerName=elb_name)["LoadBalancerAttributes"]
        self.assertEqual(attrs["ConnectionDraining"], {"Enabled": True, "Timeout": 5})

        # The group (its facts: test_parity): the template's default sizes, the private
        # subnets, the launch template, the hook's heartbeat as the parameter set it.
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["AutoScalingGroupName"]])["AutoScalingGroups"]
        self.assertEqual(group["AutoScalingGroupName"], f"{stack}-nodes")
        self.assertEqual((group["MinSize"], group["MaxSize"], group["DesiredCapacity"]), (2, 6, 2))
        self.assertEqual(group["HealthCheckGracePeriod"], 60)
        self.assertEqual(sorted(group["VPCZoneIdentifier"].split(",")), sorted(private))
        self.assertEqual(group["LoadBalancerNames"], [elb_name])
        self.assertEqual(group["LaunchTemplate"]["LaunchTemplateId"], out["LaunchTemplateId"])
        [hook] = self.asg.describe_lifecycle_hooks(AutoScalingGroupName=group["AutoScalingGroupName"])["LifecycleHooks"]
        self.assertEqual(hook["HeartbeatTimeout"], 60)

        # The launch template (its facts: test_parity): the nodes' group, the instance
        # profile, tags on what it launches, and the provisioner's cloud-config
        # (provisioner/tests/userdata.rs holds the template's to it) without a secret value.
        [version] = ec2.describe_launch_template_versions(LaunchTemplateId=out["LaunchTemplateId"])["LaunchTemplateVersions"]
        data = version["LaunchTemplateData"]
        self.assertEqual(data["SecurityGroupIds"], [out["NodesSecurityGroupId"]])
        self.assertIn(f"{stack}-node-{REGION}", data["IamInstanceProfile"]["Arn"])
        for spec in data["TagSpecifications"]:
            self.assertEqual(tags(spec["Tags"])[STACK_TAG], stack, spec["ResourceType"])
        user_data = base64.b64decode(data["UserData"]).decode()
        self.assertTrue(user_data.startswith("#cloud-config\n"))
        self.assertIn(f'pg_host = "{db["Endpoint"]["Address"]}"\n      pg_port = {db["Endpoint"]["Port"]}\n', user_data)
        self.assertIn(f'trusted_ips = ["{CIDR}"]', user_data)
        self.assertIn(f"DB_PASSWORD_SECRET='/{stack}/db/master-password'", user_data)
        self.assertIn(f"GROUP='{stack}-nodes'\nHOOK='{stack}-drain'", user_data.replace("      ", ""))
        self.assertNotIn(password, user_data)
        self.assertNotIn(token, user_data)
        role = self.iam.get_role(RoleName=f"{stack}-node-{REGION}")["Role"]
        self.assertEqual(tags(role.get("Tags"))[STACK_TAG], stack)

    def test_4_nodes_serve_through_the_elb(self):
        """Both nodes InService by the ELB's real health checks; a route made on one node's
        Admin API (token from the stack's secret, from inside the VPC) is served through
        the stack's ELB by the cluster."""
        out = self.outputs()
        elb_name = out["LoadBalancerName"]
        started = time.monotonic()

        def in_service():
            states = self.elb.describe_instance_health(LoadBalancerName=elb_name)["InstanceStates"]
            return len(states) == 2 and all(s["State"] == "InService" for s in states) and states

        wait("two nodes InService behind the stack's ELB", in_service, limit=240, step=1)
        balancer = wait("the ELB's HAProxy", lambda: next(
            (b for b in json.load(urllib.request.urlopen(self.endpoint + "/_kit/dataplane", timeout=10))["balancers"]
             if b["name"] == elb_name and b["key"].endswith(f"/{REGION}/{elb_name}")), None), limit=30)
        address = balancer["address"]
        self.__class__.address = address
        nodes = [i for i in json.load(urllib.request.urlopen(self.endpoint + "/_kit/dataplane", timeout=10))["instances"]
                 if i["stack"] == self.stack and i["region"] == REGION]
        self.assertEqual(len(nodes), 2, nodes)

        token = self.sm.get_secret_value(SecretId=f"/{self.stack}/gateway/admin-token")["SecretString"]
        vpc_ns = "kit-vpc-" + out["VpcId"].removeprefix("vpc-")
        header = os.path.join(self.tmp, "admin-token")
        with open(os.open(header, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"Kong-Admin-Token: {token}\n")

        def admin(method, path, body):
            args = ["ip", "netns", "exec", vpc_ns, "curl", "-sS", "--max-time", "10", "-X", method, "-H", f"@{header}",
                    "-H", "Content-Type: application/json", "--data", json.dumps(body),
                    f"http://{nodes[0]['private_ip']}:8001{path}"]
            return json.loads(run(args, timeout=20).stdout)

        admin("POST", "/services", {"name": "cfn-canary", "url": "http://127.0.0.1:8001/status"})
        admin("POST", "/services/cfn-canary/routes", {"name": "cfn-canary", "paths": ["/cfn-canary"]})

        def served():
            got = []
            for _ in range(6):  # new connections: the ELB spreads them over both nodes
                code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                       f"http://{address}/cfn-canary"], capture_output=True, text=True,
                                      timeout=10, check=False).stdout
                got.append(code)
            return all(c == "200" for c in got)

        wait("/cfn-canary served through the stack's ELB by every node", served, limit=60, step=1)
        print(f"figure: cloudformation deploy start to a route served through the ELB by both nodes: "
              f"{time.monotonic() - getattr(self, 'deploy_started', started):.0f}s")

    def test_5_a_parameter_change_goes_through_a_change_set(self):
        versions = self.ec2.describe_launch_template_versions(LaunchTemplateName=f"{self.stack}-nodes")["LaunchTemplateVersions"]
        self.deploy("--no-execute-changeset", overrides=["MaxSize=8"])
        [summary] = [s for s in self.cfn.list_change_sets(StackName=self.stack)["Summaries"]
                     if s["Status"] == "CREATE_COMPLETE" and s["ExecutionStatus"] == "AVAILABLE"]
        changes = self.cfn.describe_change_set(ChangeSetName=summary["ChangeSetId"])["Changes"]
        actions = {c["ResourceChange"]["LogicalResourceId"]: (c["ResourceChange"]["Action"], c["ResourceChange"].get("Replacement"))
                   for c in changes}
        self.assertEqual(actions["NodeGroup"], ("Modify", "False"))
        # Nothing is added, removed or replaced. (LocalStack also lists the launch template,
        # whose user data reads DbInstance.Endpoint.*, as Modify; it applies no change.)
        self.assertFalse([k for k, (a, r) in actions.items() if a != "Modify" or r not in ("False", None)], actions)
        # Not applied until executed.
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{self.stack}-nodes"])["AutoScalingGroups"]
        self.assertEqual(group["MaxSize"], 6)
        self.cfn.execute_change_set(ChangeSetName=summary["ChangeSetId"])
        wait("the stack's update", lambda: self.cfn.describe_stacks(StackName=self.stack)["Stacks"][0]["StackStatus"]
             in ("UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_FAILED"), limit=300, step=1)
        [stack] = self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
        self.assertEqual(stack["StackStatus"], "UPDATE_COMPLETE")
        self.assertEqual({p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["MaxSize"], "8")
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{self.stack}-nodes"])["AutoScalingGroups"]
        self.assertEqual((group["MinSize"], group["MaxSize"], group["DesiredCapacity"]), (2, 8, 2))
        after = self.ec2.describe_launch_template_versions(LaunchTemplateName=f"{self.stack}-nodes")["LaunchTemplateVersions"]
        self.assertEqual(len(after), len(versions), "the launch template got a new version")

    def test_5b_a_dr_region_replicates_the_backups(self):
        """The DR-region condition: DrRegion and DrKmsKeyArn, set by a stack update, replicate
        the database's automated backups to that region, encrypted with that key; neither the
        database nor the nodes are replaced for it."""
        key = client("kms", self.endpoint, DR_REGION).create_key(
            Description=f"{self.stack}: replicated DB backups")["KeyMetadata"]["Arn"]
        self.__class__.dr_key = key
        versions = self.ec2.describe_launch_template_versions(LaunchTemplateName=f"{self.stack}-nodes")["LaunchTemplateVersions"]
        [was] = self.rds.describe_db_instances(DBInstanceIdentifier=f"{self.stack}-db")["DBInstances"]
        self.deploy(overrides=["MaxSize=8", f"DrRegion={DR_REGION}", f"DrKmsKeyArn={key}"])
        [stack] = self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
        self.assertEqual(stack["StackStatus"], "UPDATE_COMPLETE")
        [db] = self.rds.describe_db_instances(DBInstanceIdentifier=f"{self.stack}-db")["DBInstances"]
        self.assertEqual(db["DbiResourceId"], was["DbiResourceId"], "the update replaced the database")
        dr = client("rds", self.endpoint, DR_REGION)
        [replica] = dr.describe_db_instance_automated_backups(
            Filters=[{"Name": "db-instance-id", "Values": [db["DBInstanceArn"]]}])["DBInstanceAutomatedBackups"]
        self.assertEqual(replica["Region"], REGION, replica)
        self.assertEqual(replica["KmsKeyId"], key, replica)
        self.assertTrue(replica["Encrypted"], replica)
        [source] = self.rds.describe_db_instance_automated_backups(DBInstanceIdentifier=f"{self.stack}-db")[
            "DBInstanceAutomatedBackups"]
        self.assertEqual([r["DBInstanceAutomatedBackupsArn"] for r in source.get("DBInstanceAutomatedBackupsReplications", [])],
                         [replica["DBInstanceAutomatedBackupsArn"]])
        after = self.ec2.describe_launch_template_versions(LaunchTemplateName=f"{self.stack}-nodes")["LaunchTemplateVersions"]
        self.assertEqual(len(after), len(versions), "the DR region gave the launch template a new version")

    def test_6_a_launch_template_change_rolls_the_nodes(self):
        """UpdatePolicy AutoScalingRollingUpdate: a new launch template version replaces the
        nodes one at a time (a new node first, then an old one drains through the hook),
        and the stack keeps serving."""
        group_name = f"{self.stack}-nodes"
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
        before = {i["InstanceId"] for i in group["Instances"]}
        started = time.monotonic()
        with Load(f"http://{self.address}/cfn-canary") as load:
            self.deploy(overrides=["RootVolumeSize=21"])
        print(f"figure: cloudformation rolling update of 2 nodes: {time.monotonic() - started:.0f}s, "
              f"{load.ok} requests served, {load.failed} failed")
        self.assertGreater(load.ok, 0)
        self.assertEqual(load.failed, 0, load.errors[:5])
        [stack] = self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
        self.assertEqual(stack["StackStatus"], "UPDATE_COMPLETE")
        versions = self.ec2.describe_launch_template_versions(LaunchTemplateName=group_name)["LaunchTemplateVersions"]
        latest = max(v["VersionNumber"] for v in versions)
        self.assertEqual(latest, 2)
        [group] = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
        self.assertEqual(str(group["LaunchTemplate"]["Version"]), "2")
        self.assertEqual(group["DesiredCapacity"], 2)
        now = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
        self.assertEqual(len(now), 2, group["Instances"])
        self.assertFalse(before & {i["InstanceId"] for i in now}, "old nodes are still in the group")
        self.assertEqual({str(i["LaunchTemplate"]["Version"]) for i in now}, {"2"})
        states = self.elb.describe_instance_health(LoadBalancerName=f"{self.stack}-elb")["InstanceStates"]
        self.assertEqual(sorted(s["InstanceId"] for s in states if s["State"] == "InService"),
                         sorted(i["InstanceId"] for i in now))

    def test_7_deleting_leaves_the_final_snapshot_and_nothing_else(self):
        out = self.outputs()
        resources = self.cfn.list_stack_resources(StackName=self.stack)["StackResourceSummaries"]
        started = time.monotonic()
        run([DEPLOY, "--delete", "--stack", self.stack, "--region", REGION], env=self.env)
        print(f"figure: cloudformation delete (with the deletion-protection update): {time.monotonic() - started:.0f}s")
        self.assertTrue(gone(lambda: [s for s in self.cfn.describe_stacks(StackName=self.stack)["Stacks"]
                                      if s["StackStatus"] != "DELETE_COMPLETE"], "ValidationError"))
        # The final snapshot, with the data's tags.
        snaps = [s for s in self.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
                 if s["DBSnapshotIdentifier"].startswith(f"{self.stack}-db-final-")]
        self.assertEqual(len(snaps), 1, snaps)
        self.assertEqual(snaps[0]["Status"], "available")
        self.assertEqual(snaps[0]["DBInstanceIdentifier"], f"{self.stack}-db")
        self.assertTrue(snaps[0]["Encrypted"])

        ec2, rds, elb, asg = self.ec2, self.rds, self.elb, self.asg
        checks = {
            "AWS::EC2::VPC": lambda p: ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [p]}])["Vpcs"],
            "AWS::EC2::Subnet": lambda p: ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [p]}])["Subnets"],
            "AWS::EC2::InternetGateway": lambda p: ec2.describe_internet_gateways(
                Filters=[{"Name": "internet-gateway-id", "Values": [p]}])["InternetGateways"],
            "AWS::EC2::RouteTable": lambda p: ec2.describe_route_tables(
                Filters=[{"Name": "route-table-id", "Values": [p]}])["RouteTables"],
            "AWS::EC2::EIP": lambda p: ec2.describe_addresses(Filters=[{"Name": "public-ip", "Values": [p]}])["Addresses"],
            "AWS::EC2::NatGateway": lambda p: [n for n in ec2.describe_nat_gateways(NatGatewayIds=[p])["NatGateways"]
                                               if n["State"] not in ("deleted", "deleting")],
            "AWS::EC2::SecurityGroup": lambda p: ec2.describe_security_groups(
                Filters=[{"Name": "group-id", "Values": [p]}])["SecurityGroups"],
            "AWS::EC2::LaunchTemplate": lambda p: ec2.describe_launch_templates(
                Filters=[{"Name": "launch-template-name", "Values": [f"{self.stack}-nodes"]}])["LaunchTemplates"],
            "AWS::KMS::Key": lambda p: self.kms.describe_key(KeyId=p)["KeyMetadata"]["KeyState"] not in ("PendingDeletion", "Disabled"),
            "AWS::KMS::Alias": lambda p: [a for a in self.kms.list_aliases()["Aliases"] if a["AliasName"] == p],
            "AWS::SecretsManager::Secret": lambda p: not self.sm.describe_secret(SecretId=p).get("DeletedDate"),
            "AWS::RDS::DBSubnetGroup": lambda p: rds.describe_db_subnet_groups(DBSubnetGroupName=p)["DBSubnetGroups"],
            "AWS::RDS::DBInstance": lambda p: rds.describe_db_instances(DBInstanceIdentifier=p)["DBInstances"],
            "AWS::IAM::Role": lambda p: self.iam.get_role(RoleName=p)["Role"],
            "AWS::IAM::InstanceProfile": lambda p: self.iam.get_instance_profile(InstanceProfileName=p)["InstanceProfile"],
            "AWS::ElasticLoadBalancing::LoadBalancer": lambda p: elb.describe_load_balancers(
                LoadBalancerNames=[p])["LoadBalancerDescriptions"],
            "AWS::AutoScaling::AutoScalingGroup": lambda p: asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=[p])["AutoScalingGroups"],
        }
        for r in resources:
            check = checks.get(r["ResourceType"])
            if check is None:  # rules, routes, associations, hooks: gone with what holds them
                continue
            with self.subTest(resource=r["LogicalResourceId"], id=r["PhysicalResourceId"]):
                self.assertTrue(gone(lambda: check(r["PhysicalResourceId"]), "ResourceNotFoundException",
                                     "NoSuchEntity", "AccessPointNotFound", "LoadBalancerNotFound",
                                     "DBInstanceNotFound", "DBSubnetGroupNotFoundFault", "ValidationError"),
                                f"{r['ResourceType']} {r['PhysicalResourceId']} is still there")
        # Nothing runs: no node, no HAProxy, no namespace of the VPC.
        plane = json.load(urllib.request.urlopen(self.endpoint + "/_kit/dataplane", timeout=10))
        self.assertEqual([i for i in plane["instances"] if i["stack"] == self.stack], [])
        self.assertEqual([b for b in plane["balancers"] if b["name"] == out["LoadBalancerName"]
                          and b["key"].endswith(f"/{REGION}/{out['LoadBalancerName']}")], [])
        ns = "kit-vpc-" + out["VpcId"].removeprefix("vpc-")
        self.assertNotIn(ns, os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
        running = ec2.describe_instances(Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [self.stack]},
                                                  {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        self.assertEqual(running["Reservations"], [])


if __name__ == "__main__":
    unittest.main()
