"""terraform apply and destroy of tests/terraform (RDS, classic ELB with PROXY protocol,
an ASG behind it) against the kit, with the AWS provider from a local mirror (offline)."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from kit import HOME, client, cluster_dir_serving, cluster_dirs, plugin_dir, psql, start

MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "terraform")
PASSWORD = "tf-Kit-pass-1"


class TerraformApplyDestroy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("terraform"):
            raise AssertionError("terraform is not on PATH")
        cls.endpoint = start()
        cls.work = tempfile.mkdtemp(prefix="kit-tf-")
        shutil.copy(os.path.join(MODULE, "main.tf"), cls.work)
        rc = os.path.join(cls.work, "terraformrc")
        open(rc, "w").close()
        cls.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": rc,
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "TF_VAR_endpoint": cls.endpoint,
            "TF_VAR_db_password": PASSWORD,
        }

    @classmethod
    def tearDownClass(cls):
        # Whatever happened, take the resources down again.
        if os.path.exists(os.path.join(cls.work, "terraform.tfstate")):
            cls.terraform("destroy", "-auto-approve", timeout=300, check=False)
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def terraform(cls, *args, timeout=600, check=True) -> str:
        try:
            out = subprocess.run(
                ["terraform", *args, "-no-color"], cwd=cls.work, env=cls.env,
                capture_output=True, text=True, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"terraform {args[0]} timed out after {timeout}s") from e
        if check and out.returncode != 0:
            raise AssertionError(f"terraform {args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def test_apply_then_destroy(self):
        self.terraform("init", f"-plugin-dir={plugin_dir()}", "-input=false", timeout=120)
        self.terraform("apply", "-auto-approve", "-input=false", timeout=600)
        out = {k: v["value"] for k, v in json.loads(self.terraform("output", "-json")).items()}

        rds = client("rds", self.endpoint)
        found = rds.describe_db_instances(Filters=[{"Name": "dbi-resource-id", "Values": [out["db_resource_id"]]}])
        [db] = found["DBInstances"]
        self.assertEqual(db["DBInstanceIdentifier"], out["db_identifier"])
        self.assertTrue(db["MultiAZ"])
        self.assertTrue(db["StorageEncrypted"])
        self.assertIn(out["db_address"], ("127.0.0.1", "localhost"))
        self.assertEqual(psql(out["db_address"], out["db_port"], "kong", PASSWORD, "kong", "SELECT current_database()"), "kong")
        # This instance's own files: the runbooks' tests, run beside this one, make and
        # drop instances of their own meanwhile.
        ours = cluster_dir_serving(int(out["db_port"]))
        self.assertIsNotNone(ours, f"no cluster under {HOME}/rds/clusters listens on port {out['db_port']}")

        elb = client("elb", self.endpoint)
        [lb] = elb.describe_load_balancers(LoadBalancerNames=[out["elb_name"]])["LoadBalancerDescriptions"]
        backend = {b["InstancePort"]: b.get("PolicyNames", []) for b in lb.get("BackendServerDescriptions", [])}
        self.assertTrue(backend.get(8000), f"no backend policy on 8000: {lb}")
        [policy] = elb.describe_load_balancer_policies(LoadBalancerName=out["elb_name"], PolicyNames=backend[8000])["PolicyDescriptions"]
        self.assertEqual(policy["PolicyTypeName"], "ProxyProtocolPolicyType")

        asg = client("autoscaling", self.endpoint)
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"]
        self.assertEqual(group["LoadBalancerNames"], [out["elb_name"]])
        self.assertEqual(len(group["Instances"]), 1)

        self.terraform("destroy", "-auto-approve", "-input=false", timeout=300)
        with self.assertRaises(rds.exceptions.DBInstanceNotFoundFault):
            rds.describe_db_instances(DBInstanceIdentifier=out["db_identifier"])
        self.assertEqual(rds.describe_db_instances(Filters=[{"Name": "dbi-resource-id", "Values": [out["db_resource_id"]]}])["DBInstances"], [])
        self.assertNotIn(ours, cluster_dirs(), f"PostgreSQL files left under {HOME}/rds/clusters/{ours}")
        self.assertEqual(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["asg_name"]])["AutoScalingGroups"], [])


if __name__ == "__main__":
    unittest.main()
