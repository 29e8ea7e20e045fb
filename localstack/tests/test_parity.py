"""One source of facts, every way to deploy, one parity test.

`provisioner facts --output json` is the stack's one source of facts (from the spec). This
test stands the stack up on the kit with each way to deploy it, reads each back through the AWS APIs (boto3
against the kit; never through a tool's own state or outputs), normalises what it finds
into the facts' shape, and compares it with the facts: every difference is reported by
name (`load_balancer.health_check.target: facts 'HTTP:8001/status', terraform 'TCP:8000'`).

It also shows that the comparison catches drift: a scratch copy of terraform/ with the
health check's target changed is applied over the Terraform stack, and the comparison
must then name exactly that fact.

From the results it writes a Markdown table of what each way deploys and where they
differ ($PARITY_TABLE, default ~/.cache/gateway-kit/parity/parity.md) for the README.

The ways: the provisioner, terraform/ (through terraform/run-example) and
cloudformation/gateway.yaml (through cloudformation/deploy, i.e. `aws cloudformation
deploy`, on LocalStack's engine with the kit's resource providers). Adding a way: write a
class with `up()` and `down()` (see `Provisioner`) and add it to `DEPLOYMENTS`. Resources are found by the
stack tag, so the one reader, `read_stack`, reads any of them back; a deployment that needs
another reader sets its `read` attribute.

Needs the built `provisioner` and `gateway` (debug) in CARGO_TARGET_DIR, terraform and the
provider mirror (as test_terraform_stack), the kit's AWS CLI. PARITY_WAYS=provisioner,cloudformation
runs only those (while working on one; the test command runs all). Everything is torn down at the end, also when a
step fails.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
import unittest
import urllib.request
import uuid

from botocore.exceptions import ClientError

from kit import KIT_DIR, client, start

REPO = os.path.dirname(KIT_DIR)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/gateway-kit/target")
PROVISIONER = os.path.join(TARGET, "debug", "provisioner")
GATEWAY = os.path.join(TARGET, "debug", "gateway")
TERRAFORM = os.path.join(REPO, "terraform")
CFN_DEPLOY = os.path.join(REPO, "cloudformation", "deploy")
AWS_CLI = os.path.join(KIT_DIR, ".venv", "bin", "aws")
REGION = "us-east-1"
TABLE = os.environ.get("PARITY_TABLE") or os.path.expanduser("~/.cache/gateway-kit/parity/parity.md")

# The spec every deployment is held to: what terraform/examples/localstack sets (small
# instances, one node), so they all deploy the same stack. Everything else is a default.
STACK_TOML = """
db_instance_class = "db.t3.micro"
db_allocated_storage = 20
instance_type = "t3.micro"
min_size = 1
desired_capacity = 1
max_size = 2
"""


RUNNING: set = set()  # the process groups run() has started and not yet reaped


def run(args, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Runs args in their own process group (killed whole on timeout); output kept as text."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
        RUNNING.add(proc.pid)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        finally:
            RUNNING.discard(proc.pid)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    what = " ".join(os.path.basename(a) for a in args[:2])
    if code is None:
        raise AssertionError(f"{what} timed out after {timeout}s:\n{stderr[-3000:]}\n{stdout[-3000:]}")
    if check and code != 0:
        raise AssertionError(f"{what} failed ({code}):\n{stderr[-3000:]}\n{stdout[-3000:]}")
    return subprocess.CompletedProcess(args, code, stdout, stderr)


def kit_session(endpoint: str) -> str | None:
    """The kit's session id: it changes when the kit restarts (and forgets every stack)."""
    try:
        with urllib.request.urlopen(endpoint + "/_localstack/info", timeout=5) as r:
            return json.load(r).get("session_id")
    except (OSError, ValueError):
        return None


def facts(stack: str, config: str) -> dict:
    """The one source: `provisioner facts --output json` for `stack`."""
    out = run([PROVISIONER, "facts", "--output", "json", "--stack", stack, "--region", REGION, "--config", config], timeout=60)
    return json.loads(out.stdout)


# --- the ways to deploy ---------------------------------------------------------------


class Provisioner:
    """`provisioner up` / `down` with the test's stack.toml."""

    label = "provisioner"

    def __init__(self, stack: str, endpoint: str, tmp: str, config: str):
        self.stack, self.endpoint, self.config = stack, endpoint, config
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

    def _run(self, *args, timeout=900, check=True):
        return run([PROVISIONER, *args, "--stack", self.stack, "--region", REGION, "--endpoint-url", self.endpoint],
                   env=self.env, timeout=timeout, check=check)

    def up(self):
        self._run("up", "--config", self.config, "--gateway-binary", GATEWAY, "--output", "json")

    def down(self):
        return self._run("down", "--yes", "--force", "--skip-final-snapshot", timeout=600, check=False)


class Terraform:
    """terraform/run-example (the module through examples/localstack), from `source`: the
    repo's terraform/ or a scratch copy of it."""

    label = "terraform"

    def __init__(self, stack: str, endpoint: str, tmp: str, config: str, source: str = TERRAFORM):
        self.stack, self.endpoint, self.source = stack, endpoint, source
        self.work = os.path.join(tmp, "terraform-work")
        rc = os.path.join(tmp, "terraformrc")
        open(rc, "a").close()
        self.env = {**os.environ, "TF_CLI_CONFIG_FILE": rc, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

    def _run(self, action, *extra, source=None, timeout=600, check=True):
        script = os.path.join(source or self.source, "run-example")
        return run([script, action, "--stack", self.stack, "--region", REGION, "--endpoint", self.endpoint,
                    "--work", self.work, "--", *extra], env=self.env, timeout=timeout, check=check)

    def up(self, source=None):
        # Deletion protection on, as the module's default and the provisioner have it.
        self._run("apply", "-var", "deletion_protection=true", source=source)

    def down(self):
        # Lift deletion protection through the API, then destroy (the example's default: off).
        rds = client("rds", self.endpoint, REGION)
        try:
            rds.modify_db_instance(DBInstanceIdentifier=f"{self.stack}-db", DeletionProtection=False, ApplyImmediately=True)
        except rds.exceptions.DBInstanceNotFoundFault:
            pass
        return self._run("destroy", timeout=600, check=False)


class CloudFormation:
    """cloudformation/deploy (`aws cloudformation deploy` with the kit's AWS CLI) with the
    test's stack.toml as parameter overrides; down deletes the stack, then its final
    snapshot and the artifact bucket."""

    label = "cloudformation"
    # stack.toml's keys as the template's parameters: the one mapping of the two names.
    PARAMETER_OF = {"db_instance_class": "DBInstanceClass", "db_allocated_storage": "DBAllocatedStorage",
                    "instance_type": "InstanceType", "min_size": "MinSize", "desired_capacity": "DesiredCapacity",
                    "max_size": "MaxSize"}

    def __init__(self, stack: str, endpoint: str, tmp: str, config: str):
        self.stack, self.endpoint = stack, endpoint
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_ENDPOINT_URL": endpoint, "AWS_CLI": AWS_CLI}
        with open(config, "rb") as f:
            toml = tomllib.load(f)
        unmapped = set(toml) - set(self.PARAMETER_OF)
        if unmapped:
            raise AssertionError(f"stack.toml keys with no template parameter here: {sorted(unmapped)}")
        self.overrides = [f"{self.PARAMETER_OF[k]}={v}" for k, v in toml.items()]

    def up(self):
        run([CFN_DEPLOY, "--stack", self.stack, "--region", REGION, "--gateway-binary", GATEWAY, "--", *self.overrides],
            env=self.env, timeout=1200)

    def down(self):
        out = run([CFN_DEPLOY, "--delete", "--stack", self.stack, "--region", REGION], env=self.env, timeout=900,
                  check=False)
        rds, s3 = client("rds", self.endpoint, REGION), client("s3", self.endpoint, REGION)
        for snap in rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]:
            if snap["DBSnapshotIdentifier"].startswith(f"{self.stack}-db-final-"):
                rds.delete_db_snapshot(DBSnapshotIdentifier=snap["DBSnapshotIdentifier"])
        bucket = f"{self.stack}-artifacts-000000000000-{REGION}"
        try:
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)
        except ClientError:
            pass
        return out


# A way with resources read_stack cannot find by the stack tag sets a `read` attribute.
DEPLOYMENTS = [Provisioner, Terraform, CloudFormation]
WAYS = [w for w in DEPLOYMENTS if w.label in os.environ.get("PARITY_WAYS", w.label).split(",")]


# --- reading a stack back through the AWS APIs -----------------------------------------


def tag_dict(items) -> dict:
    return {t["Key"]: t["Value"] for t in items or []}


def ours(tags: dict, keep: set) -> dict:
    """The tags the facts speak of (Name and the stack tag); other tags are not drift."""
    return {k: v for k, v in tags.items() if k in keep}


def rule(protocol, from_port, to_port, cidr=None, source_group=None) -> dict:
    out = {"protocol": "all" if protocol == "-1" else protocol}
    if out["protocol"] != "all":
        out["from_port"], out["to_port"] = from_port, to_port
    if cidr is not None:
        out["cidr"] = cidr
    if source_group is not None:
        out["source_group"] = source_group
    return out


def rules(permissions, role_of: dict) -> list:
    out = []
    for p in permissions:
        args = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
        out += [rule(*args, cidr=r["CidrIp"]) for r in p.get("IpRanges", [])]
        out += [rule(*args, cidr=r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])]
        out += [rule(*args, cidr=r["PrefixListId"]) for r in p.get("PrefixListIds", [])]
        out += [rule(*args, source_group=role_of.get(r["GroupId"], r["GroupId"])) for r in p.get("UserIdGroupPairs", [])]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def one(items: list, what: str):
    """The one item, or a marker the comparison reports (none, or several)."""
    if len(items) == 1:
        return items[0]
    return f"<{len(items)} {what}>"


def read_stack(endpoint: str, stack: str, stack_tag: str) -> dict:
    """The stack as the AWS APIs show it, in the facts' shape. Resources are found by the
    stack tag, whatever tool made them and whatever their names."""
    ec2 = client("ec2", endpoint, REGION)
    keep = {"Name", stack_tag}
    mine = [{"Name": f"tag:{stack_tag}", "Values": [stack]}]
    carried = []  # every resource's tags, for the common tags

    # Network.
    vpcs = ec2.describe_vpcs(Filters=mine)["Vpcs"]
    network: dict = {}
    vpc_ids = [v["VpcId"] for v in vpcs]
    if len(vpcs) == 1:
        vpc = vpcs[0]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["Subnets"]
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["RouteTables"]
        public_ids = {a["SubnetId"] for t in tables for a in t.get("Associations", []) if a.get("SubnetId")
                      and any(r.get("GatewayId", "").startswith("igw-") and r.get("DestinationCidrBlock") == "0.0.0.0/0"
                              for r in t.get("Routes", []))}
        nats = [n for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["NatGateways"]
                if n["State"] in ("pending", "available")]
        azs = {s["AvailabilityZone"] for s in subnets}
        network = {
            "vpc_cidr": vpc["CidrBlock"],
            "az_count": len(azs),
            "nat": "single" if len(nats) == 1 else "per_az" if len(nats) == len(azs) else f"<{len(nats)} NAT gateways>",
            "nat_gateways": len(nats),
            "public_subnet_cidrs": sorted((s["CidrBlock"] for s in subnets if s["SubnetId"] in public_ids), key=cidr_key),
            "private_subnet_cidrs": sorted((s["CidrBlock"] for s in subnets if s["SubnetId"] not in public_ids), key=cidr_key),
            "tags": ours(tag_dict(vpc.get("Tags")), keep),
        }
        carried += [tag_dict(vpc.get("Tags"))] + [tag_dict(s.get("Tags")) for s in subnets]
    else:
        network = f"<{len(vpcs)} VPCs>"

    # Security groups, by role: the Name tag (or group name) `<stack>-<role>`.
    groups = ec2.describe_security_groups(Filters=mine)["SecurityGroups"]
    prefix = stack + "-"

    def role(g):
        name = tag_dict(g.get("Tags")).get("Name") or g.get("GroupName", "")
        return name[len(prefix):] if name.startswith(prefix) else name

    role_of = {g["GroupId"]: role(g) for g in groups}
    security_groups = {}
    for g in groups:
        security_groups[role(g)] = {
            "name": g["GroupName"],
            "ingress": rules(g.get("IpPermissions", []), role_of),
            "egress": rules(g.get("IpPermissionsEgress", []), role_of),
            "tags": ours(tag_dict(g.get("Tags")), keep),
        }
        carried.append(tag_dict(g.get("Tags")))

    # The database.
    rds = client("rds", endpoint, REGION)
    dbs = [d for page in rds.get_paginator("describe_db_instances").paginate() for d in page["DBInstances"]
           if tag_dict(d.get("TagList")).get(stack_tag) == stack]
    database = one([{
        "identifier": d["DBInstanceIdentifier"],
        "engine": d["Engine"],
        "engine_version": d["EngineVersion"],
        "instance_class": d["DBInstanceClass"],
        "allocated_storage": d["AllocatedStorage"],
        "storage_type": d.get("StorageType"),
        "multi_az": d["MultiAZ"],
        "storage_encrypted": d["StorageEncrypted"],
        "backup_retention_period": d["BackupRetentionPeriod"],
        "deletion_protection": d["DeletionProtection"],
        "copy_tags_to_snapshot": d["CopyTagsToSnapshot"],
        "publicly_accessible": d["PubliclyAccessible"],
        "db_name": d.get("DBName"),
        "master_username": d["MasterUsername"],
        "tags": ours(tag_dict(d.get("TagList")), keep),
    } for d in dbs], "DB instances")
    carried += [tag_dict(d.get("TagList")) for d in dbs]

    # The classic ELB.
    elb = client("elb", endpoint, REGION)
    names = [lb["LoadBalancerName"] for page in elb.get_paginator("describe_load_balancers").paginate()
             for lb in page["LoadBalancerDescriptions"]]
    elb_tags = {}
    for i in range(0, len(names), 20):
        try:
            described = elb.describe_tags(LoadBalancerNames=names[i:i + 20])["TagDescriptions"]
        except elb.exceptions.AccessPointNotFoundException:
            # Another stack's ELB went meanwhile: one by one, skipping the gone.
            described = []
            for name in names[i:i + 20]:
                try:
                    described += elb.describe_tags(LoadBalancerNames=[name])["TagDescriptions"]
                except elb.exceptions.AccessPointNotFoundException:
                    pass
        for d in described:
            elb_tags[d["LoadBalancerName"]] = tag_dict(d.get("Tags"))
    balancers = []
    for name in (n for n in names if elb_tags.get(n, {}).get(stack_tag) == stack):
        [lb] = elb.describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"]
        attrs = elb.describe_load_balancer_attributes(LoadBalancerName=name)["LoadBalancerAttributes"]
        policies = {p["PolicyName"]: p for p in
                    elb.describe_load_balancer_policies(LoadBalancerName=name)["PolicyDescriptions"]}

        def proxy(policy_names):
            return [p for p in (policies.get(n) for n in policy_names) if p and p["PolicyTypeName"] == "ProxyProtocolPolicyType"
                    and any(a["AttributeName"] == "ProxyProtocol" and a["AttributeValue"].lower() == "true"
                            for a in p.get("PolicyAttributeDescriptions", []))]

        backends = {b["InstancePort"]: proxy(b.get("PolicyNames", [])) for b in lb.get("BackendServerDescriptions", [])}
        types = sorted({p["PolicyTypeName"] for ps in backends.values() for p in ps})
        draining = attrs.get("ConnectionDraining", {})
        hc = lb["HealthCheck"]
        balancers.append({
            "name": name,
            "scheme": lb["Scheme"],
            "listeners": sorted(({
                "load_balancer_port": d["Listener"]["LoadBalancerPort"],
                "protocol": d["Listener"]["Protocol"].upper(),
                "instance_port": d["Listener"]["InstancePort"],
                "instance_protocol": d["Listener"].get("InstanceProtocol", d["Listener"]["Protocol"]).upper(),
            } for d in lb["ListenerDescriptions"]), key=lambda l: (l["load_balancer_port"], l["instance_port"])),
            "proxy_protocol_ports": sorted(port for port, ps in backends.items() if ps),
            "proxy_protocol_policy_type": one(types, "proxy policy types"),
            "health_check": {"target": hc["Target"], "interval": hc["Interval"], "timeout": hc["Timeout"],
                             "healthy_threshold": hc["HealthyThreshold"], "unhealthy_threshold": hc["UnhealthyThreshold"]},
            "cross_zone": attrs.get("CrossZoneLoadBalancing", {}).get("Enabled"),
            "idle_timeout": attrs.get("ConnectionSettings", {}).get("IdleTimeout"),
            "connection_draining": ({"enabled": True, "timeout": draining.get("Timeout")} if draining.get("Enabled")
                                    else {"enabled": False}),
            "tags": ours(elb_tags[name], keep),
        })
        carried.append(elb_tags[name])
    load_balancer = one(balancers, "load balancers")

    # The Auto Scaling group and its lifecycle hook.
    asg = client("autoscaling", endpoint, REGION)
    found = [g for page in asg.get_paginator("describe_auto_scaling_groups").paginate() for g in page["AutoScalingGroups"]
             if tag_dict(g.get("Tags")).get(stack_tag) == stack]
    groups_read = []
    for g in found:
        hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=g["AutoScalingGroupName"])["LifecycleHooks"]
        propagated = {t["Key"]: t["Value"] for t in g.get("Tags", []) if t.get("PropagateAtLaunch")}
        groups_read.append({
            "name": g["AutoScalingGroupName"],
            "min_size": g["MinSize"],
            "max_size": g["MaxSize"],
            "desired_capacity": g["DesiredCapacity"],
            "health_check_type": g["HealthCheckType"],
            "health_check_grace_period": g.get("HealthCheckGracePeriod"),
            "load_balancers": sorted(g.get("LoadBalancerNames", [])),
            "lifecycle_hook": one([{
                "name": h["LifecycleHookName"],
                "transition": h["LifecycleTransition"],
                "heartbeat_timeout": h["HeartbeatTimeout"],
                "default_result": h["DefaultResult"],
            } for h in hooks], "lifecycle hooks"),
            "tags": ours(propagated, keep),
        })
        carried.append(tag_dict(g.get("Tags")))
    auto_scaling_group = one(groups_read, "Auto Scaling groups")

    # The launch template: its default version, and the tags it gives what it launches.
    templates = ec2.describe_launch_templates(Filters=mine)["LaunchTemplates"]
    templates_read = []
    for t in templates:
        [version] = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"],
                                                          Versions=["$Default"])["LaunchTemplateVersions"]
        data = version["LaunchTemplateData"]
        meta = data.get("MetadataOptions", {})
        ebs = [m.get("Ebs", {}) for m in data.get("BlockDeviceMappings", [])]
        spec_tags = {s["ResourceType"]: ours(tag_dict(s.get("Tags")), keep) for s in data.get("TagSpecifications", [])}
        template_tags = ours(tag_dict(t.get("Tags")), keep)
        every = [template_tags, spec_tags.get("instance", {}), spec_tags.get("volume", {})]
        templates_read.append({
            "name": t["LaunchTemplateName"],
            "instance_type": data.get("InstanceType"),
            "metadata_options": {"http_tokens": meta.get("HttpTokens"), "http_endpoint": meta.get("HttpEndpoint"),
                                 "http_put_response_hop_limit": meta.get("HttpPutResponseHopLimit")},
            "root_volume": one([{"volume_type": e.get("VolumeType"), "encrypted": e.get("Encrypted")} for e in ebs],
                               "block devices"),
            "tags": every[0] if all(x == every[0] for x in every) else
            {"template": every[0], "instances": every[1], "volumes": every[2]},
        })
        carried.append(tag_dict(t.get("Tags")))
    launch_template = one(templates_read, "launch templates")

    # The tags every resource carries, besides Name.
    common = {}
    if carried:
        common = {k: v for k, v in carried[0].items() if k != "Name" and all(c.get(k) == v for c in carried)}
    return {
        "stack": stack,
        "region": REGION,
        "tags": ours(common, keep),
        "network": network,
        "security_groups": security_groups,
        "database": database,
        "load_balancer": load_balancer,
        "auto_scaling_group": auto_scaling_group,
        "launch_template": launch_template,
    }


def cidr_key(cidr: str):
    addr, prefix = cidr.split("/")
    return tuple(int(x) for x in addr.split(".")) + (int(prefix),)


# --- comparing ------------------------------------------------------------------------

# Facts that match by a rule other than equality: a major engine version (`15`) is met
# by any minor of it, as the provisioner's own plan has it.
def engine_version_matches(want, have) -> bool:
    return isinstance(have, str) and (have == want or have.startswith(f"{want}."))


LOOSE = {"database.engine_version": engine_version_matches}
# Not facts of what is deployed.
IGNORED = {"format_version"}


def differences(want, have, path="") -> list[tuple[str, object, object]]:
    """(fact, facts' value, deployed value) for each fact that differs; dict keys by name,
    lists as sets (the facts' lists are sorted)."""
    if path in IGNORED:
        return []
    if path in LOOSE:
        return [] if LOOSE[path](want, have) else [(path, want, have)]
    if isinstance(want, dict) and isinstance(have, dict):
        out = []
        for key in sorted(set(want) | set(have)):
            sub = f"{path}.{key}" if path else key
            if sub in IGNORED:
                continue
            if key not in have:
                out.append((sub, want[key], "<missing>"))
            elif key not in want:
                out.append((sub, "<not a fact>", have[key]))
            else:
                out += differences(want[key], have[key], sub)
        return out
    if isinstance(want, list) and isinstance(have, list) and any(isinstance(x, dict) for x in want + have):
        w, h = {compact(x): x for x in want}, {compact(x): x for x in have}
        return [(f"{path}[{k}]", want_x, "<missing>") for k, want_x in w.items() if k not in h] + \
               [(f"{path}[{k}]", "<not a fact>", have_x) for k, have_x in h.items() if k not in w]
    return [] if want == have else [(path, want, have)]


def describe(label: str, diffs) -> str:
    return "\n".join(f"  {label}: {path}: facts {want!r}, deployed {have!r}" for path, want, have in diffs)


# --- the README's table -----------------------------------------------------------------


def compact(value) -> str:
    """An item of a list of objects, short: `tcp 80 from 0.0.0.0/0`, `TCP 80 -> TCP 8000`."""
    if isinstance(value, dict) and "protocol" in value and ("cidr" in value or "source_group" in value):
        ports = "" if value["protocol"] == "all" else (
            f" {value['from_port']}" if value["from_port"] == value["to_port"] else f" {value['from_port']}-{value['to_port']}")
        return f"{value['protocol']}{ports} from {value.get('cidr') or value.get('source_group')}"
    if isinstance(value, dict) and "load_balancer_port" in value:
        return f"{value['protocol']} {value['load_balancer_port']} -> {value['instance_protocol']} {value['instance_port']}"
    return json.dumps(value, sort_keys=True)


def rows(value, path="") -> list[tuple[str, object]]:
    """(the fact's name, value), one row per fact: a list of objects is one row, and so is
    an object of plain values below the top two levels (a health check, a resource's tags)."""
    if isinstance(value, dict) and (path.count(".") < 1 or any(isinstance(v, (dict, list)) for v in value.values())):
        out = []
        for k, v in value.items():
            out += rows(v, f"{path}.{k}" if path else k)
        return out
    return [(path, value)]


def cell(value, stack: str) -> str:
    if isinstance(value, list):
        text = "; ".join(cell(x, stack) for x in value) or "(none)"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict) and ("protocol" in value or "load_balancer_port" in value):
        text = compact(value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {cell(v, stack)}" for k, v in value.items())
    else:
        text = str(value)
    return text.replace(stack, "&lt;stack&gt;").replace("|", "\\|")


def what_differs(row: str, path: str, want, have, stack: str) -> str:
    """A difference in a row: `target TCP:8000` for a field of the row's object, `also X`
    or `without X` for an item of its list, else what is deployed."""
    if path.startswith(row + "["):
        return "without " + cell(want, stack) if have == "<missing>" else "also " + cell(have, stack)
    if path.startswith(row + "."):
        return f"{path[len(row) + 1:]} {cell(have, stack)}"
    return cell(have, stack)


def value_at(doc, path: str):
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def table(results: dict) -> str:
    """Markdown: one row per fact; each way's column says `same`, or what it deploys."""
    labels = list(results)
    first = next(iter(results.values()))[0]
    lines = ["| Fact | `provisioner facts` | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for name, value in rows({k: v for k, v in first.items() if k not in IGNORED | {"stack", "region"}}):
        row = [f"`{name}`", cell(value, first["stack"])]
        for label in labels:
            want, have, diffs = results[label]
            hit = [(p, w, h) for p, w, h in diffs if p == name or p.startswith(name + ".") or p.startswith(name + "[")]
            if hit:
                row.append("**" + "; ".join(what_differs(name, p, w, h, want["stack"]) for p, w, h in hit) + "**")
            elif name in LOOSE and value_at(have, name) != value:
                row.append(f"same ({cell(value_at(have, name), want['stack'])})")
            else:
                row.append("same")
        lines.append("| " + " | ".join(row) + " |")
    extra = [(label, p, h) for label, (want, _, diffs) in results.items() for p, w, h in diffs if w == "<not a fact>"]
    notes = ["", "Written by `localstack/tests/test_parity.py` from one run on the kit: each way deployed the stack "
             "with the same settings, read back through the AWS APIs. `same`: the APIs show the fact (in brackets: "
             "the value, where the fact allows several); in bold: what they show instead."]
    if extra:
        notes += ["", "Deployed beyond the facts:", ""] + [
            f"- {label}: `{p}`: {cell(h, results[label][0]['stack'])}" for label, p, h in extra]
    return "\n".join(lines + notes) + "\n"


README = os.path.join(REPO, "README.md")
BEGIN, END = "<!-- parity table: written by localstack/tests/test_parity.py -->", "<!-- end of parity table -->"


def readme_table(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"


# --- the test ---------------------------------------------------------------------------


class Comparison(unittest.TestCase):
    """The comparison and the table on their own (no kit)."""

    WANT = {"format_version": 1, "stack": "gw", "region": REGION, "tags": {"gateway-kit:stack": "gw"},
            "database": {"engine_version": "15", "multi_az": True},
            "load_balancer": {"health_check": {"target": "HTTP:8001/status"}, "proxy_protocol_ports": [8000, 8443]},
            "security_groups": {"db": {"ingress": [rule("tcp", 5432, 5432, cidr="10.0.0.0/16")]}}}

    def test_every_difference_is_named(self):
        have = json.loads(json.dumps(self.WANT))
        del have["format_version"]
        have["database"]["engine_version"] = "15.7"  # a minor of the major: the same
        self.assertEqual(differences(self.WANT, have), [])
        have["load_balancer"]["health_check"]["target"] = "TCP:8000"
        have["load_balancer"]["proxy_protocol_ports"] = [8000]
        have["database"]["engine_version"] = "16.1"
        have["security_groups"]["db"]["ingress"].append(rule("tcp", 22, 22, cidr="0.0.0.0/0"))
        del have["database"]["multi_az"]
        self.assertEqual([p for p, _, _ in differences(self.WANT, have)], [
            "database.engine_version", "database.multi_az", "load_balancer.health_check.target",
            "load_balancer.proxy_protocol_ports", "security_groups.db.ingress[tcp 22 from 0.0.0.0/0]"])
        text = table({"provisioner": (self.WANT, self.WANT, []),
                      "terraform": (self.WANT, have, differences(self.WANT, have))})
        self.assertIn("| `load_balancer.health_check` | target HTTP:8001/status | same | **target TCP:8000** |", text)
        self.assertIn("| `load_balancer.proxy_protocol_ports` | 8000; 8443 | same | **8000** |", text)
        self.assertIn("| `database.engine_version` | 15 | same | **16.1** |", text)
        self.assertIn("| `security_groups.db.ingress` | tcp 5432 from 10.0.0.0/16 | same | "
                      "**also tcp 22 from 0.0.0.0/0** |", text)
        self.assertIn("| `database.multi_az` | yes | same | **<missing>** |", text)
        have["database"]["engine_version"] = "15.7"
        text = table({"terraform": (self.WANT, have, differences(self.WANT, have))})
        self.assertIn("| `database.engine_version` | 15 | same (15.7) |", text)
        self.assertIn("- terraform: `security_groups.db.ingress[tcp 22 from 0.0.0.0/0]`: tcp 22 from 0.0.0.0/0", text)



class Parity(unittest.TestCase):
    endpoint = ""

    @classmethod
    def setUpClass(cls):
        for path in (PROVISIONER, GATEWAY):
            if not os.path.exists(path):
                raise AssertionError(f"{path} is missing: cargo build -p gateway -p provisioner")
        if not shutil.which("terraform"):
            raise AssertionError("terraform is not on PATH")
        cls.endpoint = start()
        cls.tmp = tempfile.mkdtemp(prefix="kit-parity-")
        cls.config = os.path.join(cls.tmp, "stack.toml")
        with open(cls.config, "w", encoding="utf-8") as f:
            f.write(STACK_TOML)
        suffix = uuid.uuid4().hex[:5]
        cls.deployments = [kind(f"pa{suffix}-{kind.label[:2]}", cls.endpoint, cls.tmp, cls.config) for kind in WAYS]
        cls.timings = {}
        errors = {}

        def up(d):
            started = time.monotonic()
            try:
                d.up()
            except BaseException as e:  # reported below, after the others finish
                errors[d.label] = e
            cls.timings[d.label] = time.monotonic() - started

        threads = [threading.Thread(target=up, args=(d,)) for d in cls.deployments]
        for t in threads:
            t.start()
        # The kit may be restarted by someone else meanwhile: then every stack is gone and
        # an apply waits for ever on resources that no longer exist. Stop early and say so.
        session, restarted = kit_session(cls.endpoint), None
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(10)
            now = kit_session(cls.endpoint)
            if session and now and now != session and not restarted:
                restarted = f"the kit restarted during the test (session {session} -> {now}): run it again"
                for pgid in list(RUNNING):
                    try:
                        os.killpg(pgid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        if errors or restarted:
            cls.tearDownClass()
            raise AssertionError(restarted or "\n".join(f"{label} up failed: {e}" for label, e in errors.items()))

    @classmethod
    def tearDownClass(cls):
        # Whatever happened, take every stack down again.
        threads = [threading.Thread(target=d.down) for d in getattr(cls, "deployments", [])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)

    def compare(self, d) -> tuple[dict, dict, list]:
        want = facts(d.stack, self.config)
        read = getattr(d, "read", read_stack)
        have = read(self.endpoint, d.stack, next(iter(want["tags"])))
        return want, have, differences(want, have)

    def test_1_every_way_deploys_the_facts(self):
        results = {d.label: self.compare(d) for d in self.deployments}
        written = table(results)
        os.makedirs(os.path.dirname(TABLE), exist_ok=True)
        with open(TABLE, "w", encoding="utf-8") as f:
            f.write(written)
        print(f"\nparity table: {TABLE}; up: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items()))
        report = [describe(label, diffs) for label, (_, _, diffs) in results.items() if diffs]
        self.assertFalse(report, "deployments differ from `provisioner facts`:\n" + "\n".join(report))

        # The README's table is this run's (when every way ran).
        if len(self.deployments) < len(DEPLOYMENTS):
            return
        with open(README, encoding="utf-8") as f:
            text = f.read()
        self.assertIsNotNone(readme_table(text), f"README.md lacks the parity table's markers: {BEGIN} ... {END}")
        if os.environ.get("PARITY_WRITE_README") == "1":
            text = text.replace(text[text.index(BEGIN):text.index(END)], f"{BEGIN}\n{written}")
            with open(README, "w", encoding="utf-8") as f:
                f.write(text)
        self.assertEqual(readme_table(text), written, "README.md's parity table is not what this run found: "
                         f"see {TABLE}, or run the test again with PARITY_WRITE_README=1 to write it in")

    def test_2_a_drifted_fact_fails_the_comparison(self):
        """A scratch copy of terraform/ with the health check's target changed, applied over
        the Terraform stack: the comparison names that fact, and only it."""
        tfs = [d for d in self.deployments if isinstance(d, Terraform)]
        if not tfs:
            self.skipTest("PARITY_WAYS leaves terraform out")
        [tf] = tfs
        _, _, before = self.compare(tf)
        scratch = os.path.join(self.tmp, "terraform-drifted")
        shutil.copytree(TERRAFORM, scratch, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
        target = facts(tf.stack, self.config)["load_balancer"]["health_check"]["target"]
        path = os.path.join(scratch, "balancer.tf")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        drifted = re.sub(r'(target\s*=\s*)"[^"]*"', r'\1"TCP:8000"', text, count=1)
        self.assertNotEqual(drifted, text, "balancer.tf has no health check target to drift")
        with open(path, "w", encoding="utf-8") as f:
            f.write(drifted)
        tf.up(source=scratch)
        _, _, after = self.compare(tf)
        new = [d for d in after if d not in before]
        self.assertEqual(new, [("load_balancer.health_check.target", target, "TCP:8000")],
                         "the drifted fact is not the one new difference:\n" + describe("terraform", after))


if __name__ == "__main__":
    unittest.main()
