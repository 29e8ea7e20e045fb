"""The kit's commands: start is idempotent, bad input gets a clear error, reset empties the
state (S3, RDS and PostgreSQL files), stop leaves no process behind. Restarts the kit and
leaves it started, with a fresh state."""

import socket
import subprocess
import tempfile
import unittest

from kit import (client, cluster_dirs, dataplane_pids, kit_mounts, kit_namespaces, kit_postgres_pids,
                 localstack_pids, run, start, wait)


def no_traceback(test: unittest.TestCase, out: subprocess.CompletedProcess) -> None:
    test.assertNotIn("Traceback", out.stdout + out.stderr)


class Lifecycle(unittest.TestCase):
    def test_1_second_start_is_a_no_op(self):
        endpoint = start()
        pids = localstack_pids()
        out = run("start")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("already running", out.stderr)
        self.assertEqual(out.stdout.strip(), endpoint)
        self.assertEqual(localstack_pids(), pids)
        status = run("status")
        self.assertEqual(status.returncode, 0)
        for word in (endpoint, "rds", "elb", "autoscaling", "localstack.log"):
            self.assertIn(word, status.stdout)

    def test_2_bad_input_gets_a_clear_error(self):
        out = run("start", env={"LOCALSTACK_PORT": "not-a-port"})
        self.assertEqual(out.returncode, 1)
        self.assertIn("LOCALSTACK_PORT must be a TCP port number", out.stderr)
        no_traceback(self, out)
        # A port held by something that is not the kit.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            with tempfile.TemporaryDirectory() as home:
                out = run("start", env={"LOCALSTACK_PORT": str(port), "LOCALSTACK_KIT_HOME": home})
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn(f"port {port} on 127.0.0.1 is taken by another program (not this kit)", out.stderr)
        no_traceback(self, out)

    def test_3_reset_empties_the_state(self):
        endpoint = start()
        s3 = client("s3", endpoint)
        rds = client("rds", endpoint)
        s3.create_bucket(Bucket="kit-reset-check")
        rds.create_db_instance(
            DBInstanceIdentifier="kit-reset-check", Engine="postgres", DBInstanceClass="db.t3.micro",
            AllocatedStorage=20, MasterUsername="kit", MasterUserPassword="kit-reset-1",
        )
        wait("instance available", lambda: rds.describe_db_instances(DBInstanceIdentifier="kit-reset-check")
             ["DBInstances"][0]["DBInstanceStatus"] == "available")
        self.assertTrue(cluster_dirs())
        self.assertTrue(kit_postgres_pids())

        out = run("reset")
        self.assertEqual(out.returncode, 0, out.stderr)
        endpoint = out.stdout.strip().splitlines()[-1]
        s3, rds = client("s3", endpoint), client("rds", endpoint)
        self.assertNotIn("kit-reset-check", [b["Name"] for b in s3.list_buckets()["Buckets"]])
        self.assertEqual(rds.describe_db_instances()["DBInstances"], [])
        self.assertEqual(cluster_dirs(), [])
        self.assertEqual(kit_postgres_pids(), [])

    def test_4_stop_leaves_no_process(self):
        endpoint = start()
        rds = client("rds", endpoint)
        rds.create_db_instance(
            DBInstanceIdentifier="kit-stop-check", Engine="postgres", DBInstanceClass="db.t3.micro",
            AllocatedStorage=20, MasterUsername="kit", MasterUserPassword="kit-stop-1",
        )
        wait("instance available", lambda: rds.describe_db_instances(DBInstanceIdentifier="kit-stop-check")
             ["DBInstances"][0]["DBInstanceStatus"] == "available")
        self.assertTrue(kit_postgres_pids())
        # A booted instance behind an ELB: the data plane's processes and namespaces.
        ec2, elb = client("ec2", endpoint), client("elb", endpoint)
        vpc = ec2.create_vpc(CidrBlock="10.93.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24")["Subnet"]["SubnetId"]
        instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet,
                                     UserData="#cloud-config\nruncmd:\n  - [true]\n")["Instances"][0]["InstanceId"]
        elb.create_load_balancer(LoadBalancerName="kit-stop-check", Subnets=[subnet],
                                 Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 8000}])
        elb.register_instances_with_load_balancer(LoadBalancerName="kit-stop-check", Instances=[{"InstanceId": instance}])
        wait("the instance and the ELB running", lambda: len(dataplane_pids()) >= 2 and len(kit_namespaces()) >= 2)

        out = run("stop")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(localstack_pids(), [])
        self.assertEqual(kit_postgres_pids(), [])
        self.assertEqual(cluster_dirs(), [])
        self.assertEqual(dataplane_pids(), [])
        self.assertEqual(kit_namespaces(), [])
        self.assertEqual(kit_mounts(), [])
        status = run("status")
        self.assertEqual(status.returncode, 3)
        self.assertIn("not running", status.stdout)
        again = run("stop")
        self.assertEqual(again.returncode, 0)
        self.assertIn("not running", again.stderr)
        start()  # leave the kit started


if __name__ == "__main__":
    unittest.main()
