"""The kit serves the APIs the Rust SDK tests do not cover: CloudFormation (LocalStack
community's engine) and IAM; RDS with a Secrets Manager managed master password; the
extension's identity route."""

import json
import time
import unittest
import urllib.request

from kit import client, psql, start, wait

TEMPLATE = """
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Param:
    Type: AWS::SSM::Parameter
    Properties: {Type: String, Value: from-cloudformation}
Outputs:
  ParamName: {Value: !Ref Param}
"""


class Services(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = start()
        cls.suffix = str(int(time.time() * 1000))

    def test_kit_identifies_itself(self):
        with urllib.request.urlopen(f"{self.endpoint}/_kit/info", timeout=5) as r:
            info = json.load(r)
        self.assertEqual(info["kit"], "gateway-kit")

    def test_cloudformation_creates_and_deletes_a_stack(self):
        cfn = client("cloudformation", self.endpoint)
        name = f"kit-cfn-{self.suffix}"
        cfn.create_stack(StackName=name, TemplateBody=TEMPLATE)
        stack = wait("stack created", lambda: next(
            (s for s in cfn.describe_stacks(StackName=name)["Stacks"] if s["StackStatus"] != "CREATE_IN_PROGRESS"), None))
        self.assertEqual(stack["StackStatus"], "CREATE_COMPLETE", stack)
        param = stack["Outputs"][0]["OutputValue"]
        ssm = client("ssm", self.endpoint)
        self.assertEqual(ssm.get_parameter(Name=param)["Parameter"]["Value"], "from-cloudformation")
        cfn.delete_stack(StackName=name)
        wait("stack deleted", lambda: not [
            s for s in cfn.list_stacks()["StackSummaries"]
            if s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"])

    def test_rds_managed_master_password_opens_the_database(self):
        rds = client("rds", self.endpoint)
        name = f"kit-managed-{self.suffix}"
        rds.create_db_instance(
            DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro",
            AllocatedStorage=20, MasterUsername="kong", ManageMasterUserPassword=True,
        )
        try:
            db = wait("instance available", lambda: next(
                (i for i in rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
                 if i["DBInstanceStatus"] == "available"), None))
            secret = client("secretsmanager", self.endpoint).get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])
            creds = json.loads(secret["SecretString"])
            self.assertEqual(creds["username"], "kong")
            endpoint = db["Endpoint"]
            self.assertEqual(psql(endpoint["Address"], endpoint["Port"], "kong", creds["password"], "postgres", "SELECT 1"), "1")
        finally:
            rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)

    def test_iam_role_round_trip(self):
        iam = client("iam", self.endpoint)
        name = f"kit-role-{self.suffix}"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        self.assertEqual(iam.get_role(RoleName=name)["Role"]["RoleName"], name)
        iam.delete_role(RoleName=name)
        with self.assertRaises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=name)


if __name__ == "__main__":
    unittest.main()
