"""kit_ext/moto_fixes.py: what Terraform's AWS provider reads back must be what it wrote,
else every plan shows drift (ELB draining timeout, lifecycle hook targets, launch
template tags); a group launches from a later template version, and each instance
reports the version it was launched from (what a rolling replacement reads)."""

import base64
import unittest
import uuid

from kit import client, start


class MotoFixes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = start()
        cls.ec2 = client("ec2", cls.endpoint)
        cls.name = "fix-" + uuid.uuid4().hex[:6]

    def test_draining_keeps_its_timeout(self):
        elb = client("elb", self.endpoint)
        vpc = self.ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.1.0/24")["Subnet"]["SubnetId"]
        elb.create_load_balancer(LoadBalancerName=self.name, Subnets=[subnet],
                                 Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 8000}])
        try:
            def draining(value):
                elb.modify_load_balancer_attributes(LoadBalancerName=self.name, LoadBalancerAttributes={"ConnectionDraining": value})
                return elb.describe_load_balancer_attributes(LoadBalancerName=self.name)["LoadBalancerAttributes"]["ConnectionDraining"]

            self.assertEqual(draining({"Enabled": True, "Timeout": 30}), {"Enabled": True, "Timeout": 30})
            # Enabled alone (Terraform's second call) leaves the timeout as it was.
            self.assertEqual(draining({"Enabled": True}), {"Enabled": True, "Timeout": 30})
        finally:
            elb.delete_load_balancer(LoadBalancerName=self.name)
            self.ec2.delete_subnet(SubnetId=subnet)
            self.ec2.delete_vpc(VpcId=vpc)

    def test_lifecycle_hook_has_no_made_up_targets(self):
        asg = client("autoscaling", self.endpoint)
        template = self.ec2.create_launch_template(LaunchTemplateName=self.name, LaunchTemplateData={"ImageId": "ami-03cf127a"})
        template_id = template["LaunchTemplate"]["LaunchTemplateId"]
        asg.create_auto_scaling_group(AutoScalingGroupName=self.name, MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"],
                                      LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"})
        try:
            asg.put_lifecycle_hook(LifecycleHookName=self.name, AutoScalingGroupName=self.name,
                                   LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300, DefaultResult="CONTINUE")
            [hook] = asg.describe_lifecycle_hooks(AutoScalingGroupName=self.name)["LifecycleHooks"]
            self.assertNotIn("RoleARN", hook)
            self.assertNotIn("NotificationTargetARN", hook)
            self.assertEqual((hook["HeartbeatTimeout"], hook["DefaultResult"]), (300, "CONTINUE"))
        finally:
            asg.delete_auto_scaling_group(AutoScalingGroupName=self.name, ForceDelete=True)
            self.ec2.delete_launch_template(LaunchTemplateId=template_id)

    def test_template_tags_are_not_launch_data(self):
        tags = [{"Key": "Name", "Value": self.name}]
        template = self.ec2.create_launch_template(
            LaunchTemplateName=self.name + "-t",
            LaunchTemplateData={"ImageId": "ami-03cf127a",
                                "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]},
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
        )["LaunchTemplate"]
        try:
            self.assertEqual(template.get("Tags"), tags)
            [version] = self.ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])["LaunchTemplateVersions"]
            specs = version["LaunchTemplateData"]["TagSpecifications"]
            self.assertEqual([s["ResourceType"] for s in specs], ["instance"])
        finally:
            self.ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])

    def test_a_group_launches_from_a_second_template_version(self):
        """CreateLaunchTemplateVersion with user data, then the group scales onto it (the
        provisioner's rolling user data change): AWS launches, moto failed (InternalError)."""
        asg = client("autoscaling", self.endpoint)
        def user_data(word: str) -> str:
            return base64.b64encode(f"#!/bin/sh\necho {word}\n".encode()).decode()

        template = self.ec2.create_launch_template(
            LaunchTemplateName=self.name + "-v", LaunchTemplateData={"ImageId": "ami-03cf127a", "UserData": user_data("one")}
        )["LaunchTemplate"]["LaunchTemplateId"]
        name = self.name + "-v"
        asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=0,
                                      AvailabilityZones=["us-east-1a"],
                                      LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
        try:
            self.ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={"ImageId": "ami-03cf127a", "UserData": user_data("two")})
            asg.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, DesiredCapacity=1,
                                          LaunchTemplate={"LaunchTemplateId": template, "Version": "2"})
            [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            [instance] = group["Instances"]
            launched = self.ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
            self.assertEqual(launched["UserData"]["Value"], user_data("two"))
            self.assertEqual(instance["LaunchTemplate"]["Version"], "2")
            # A third version: the running instance stays on 2, a new one starts on 3.
            self.ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={"ImageId": "ami-03cf127a", "UserData": user_data("three")})
            asg.update_auto_scaling_group(AutoScalingGroupName=name, MaxSize=2, DesiredCapacity=2,
                                          LaunchTemplate={"LaunchTemplateId": template, "Version": "3"})
            [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            versions = {i["InstanceId"]: i["LaunchTemplate"]["Version"] for i in group["Instances"]}
            self.assertEqual(versions[instance["InstanceId"]], "2")
            self.assertEqual(sorted(versions.values()), ["2", "3"])
            self.assertEqual(group["LaunchTemplate"]["Version"], "3")
        finally:
            asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
            self.ec2.delete_launch_template(LaunchTemplateId=template)


if __name__ == "__main__":
    unittest.main()
