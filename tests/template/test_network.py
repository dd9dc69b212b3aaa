"""Private-only VPC: subnets, routing, endpoints, security groups, flow logs."""

import re
import tomllib

import pytest
from template_helpers import SAMCONFIG, SUBNETS, getatt, props, ref, resources, statements, sub

PUBLIC_PATH_TYPES = {
    "AWS::EC2::InternetGateway",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::EgressOnlyInternetGateway",
    "AWS::EC2::NatGateway",
    "AWS::EC2::EIP",
    "AWS::EC2::TransitGatewayAttachment",
    "AWS::EC2::VPNGateway",
    "AWS::EC2::VPCPeeringConnection",
}
INTERFACE_SERVICES = {"secretsmanager", "rds", "sns"}
GATEWAY_SERVICES = {"s3", "dynamodb"}
ACCOUNT = ref("AWS::AccountId")


def test_vpc(cfn):
    (vpc_id,) = resources(cfn, "AWS::EC2::VPC")
    p = props(cfn, vpc_id)
    assert p["CidrBlock"] == "10.0.0.0/16"
    assert p["EnableDnsSupport"] is True
    assert p["EnableDnsHostnames"] is True


@pytest.mark.parametrize(("index", "cidr"), [(0, "10.0.1.0/24"), (1, "10.0.2.0/24"), (2, "10.0.3.0/24")])
def test_private_subnet(cfn, index, cidr):
    p = props(cfn, f"PrivateSubnet{index + 1}")
    assert p["VpcId"] == ref("Vpc")
    assert p["CidrBlock"] == cidr
    assert p["AvailabilityZone"] == {"Fn::Select": [index, {"Fn::GetAZs": ""}]}
    assert p["MapPublicIpOnLaunch"] is False


def test_exactly_three_subnets_one_route_table(cfn):
    assert set(resources(cfn, "AWS::EC2::Subnet")) == {"PrivateSubnet1", "PrivateSubnet2", "PrivateSubnet3"}
    assert set(resources(cfn, "AWS::EC2::RouteTable")) == {"PrivateRouteTable"}
    associations = resources(cfn, "AWS::EC2::SubnetRouteTableAssociation").values()
    assert sorted(
        (a["Properties"]["SubnetId"]["Ref"], a["Properties"]["RouteTableId"]["Ref"]) for a in associations
    ) == [(f"PrivateSubnet{i}", "PrivateRouteTable") for i in (1, 2, 3)]


def test_no_path_to_the_internet(cfn):
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert not types & PUBLIC_PATH_TYPES
    # Gateway endpoints are the only things allowed to add routes.
    assert not resources(cfn, "AWS::EC2::Route")


def test_all_compute_shares_the_three_subnets(cfn):
    assert props(cfn, "DbSubnetGroup")["SubnetIds"] == SUBNETS
    functions = resources(cfn, "AWS::Lambda::Function")
    assert functions
    for logical_id, fn in functions.items():
        vpc = fn["Properties"]["VpcConfig"]
        assert vpc["SubnetIds"] == SUBNETS, logical_id
        assert vpc["SecurityGroupIds"] == [ref("LambdaSecurityGroup")], logical_id


def _endpoints(cfn, kind):
    found = {}
    for logical_id, ep in resources(cfn, "AWS::EC2::VPCEndpoint").items():
        p = ep["Properties"]
        if p["VpcEndpointType"] == kind:
            match = re.fullmatch(r"com\.amazonaws\.\$\{AWS::Region\}\.([a-z0-9.-]+)", p["ServiceName"]["Fn::Sub"])
            assert match, f"{logical_id}: ServiceName must be !Sub com.amazonaws.${{AWS::Region}}.<svc>"
            found[match.group(1)] = p
    return found


def test_interface_endpoints(cfn):
    endpoints = _endpoints(cfn, "Interface")
    assert set(endpoints) == INTERFACE_SERVICES
    for service, p in endpoints.items():
        assert p["VpcId"] == ref("Vpc"), service
        assert p["PrivateDnsEnabled"] is True, service
        assert p["SubnetIds"] == SUBNETS, service
        assert p["SecurityGroupIds"] == [ref("EndpointSecurityGroup")], service


def test_gateway_endpoints(cfn):
    endpoints = _endpoints(cfn, "Gateway")
    assert set(endpoints) == GATEWAY_SERVICES
    for service, p in endpoints.items():
        assert p["RouteTableIds"] == [ref("PrivateRouteTable")], service


def test_endpoint_policies_pin_this_account(cfn):
    for logical_id, ep in resources(cfn, "AWS::EC2::VPCEndpoint").items():
        stmts = statements(ep["Properties"]["PolicyDocument"])
        assert stmts, logical_id
        for s in stmts:
            assert s["Effect"] == "Allow"
            assert s["Condition"]["StringEquals"]["aws:PrincipalAccount"] == ACCOUNT, logical_id
            if ep["Properties"]["VpcEndpointType"] == "Gateway":
                assert s["Condition"]["StringEquals"]["aws:ResourceAccount"] == ACCOUNT, logical_id


# ---- security groups -------------------------------------------------------------------------


def _rules(cfn, direction, proxy=True):
    """Every (group logical id, rule) for 'Ingress' or 'Egress', inline and standalone; with proxy=False
    as deployed with EnableRdsProxy=false (no UseRdsProxy resources; tests/template/test_operations_resources.py)."""
    rules = []

    def deployed(res):
        return proxy or res.get("Condition") != "UseRdsProxy"

    for logical_id, sg in resources(cfn, "AWS::EC2::SecurityGroup").items():
        if deployed(sg):
            rules += [(logical_id, r) for r in sg["Properties"].get(f"SecurityGroup{direction}", [])]
    for standalone in resources(cfn, f"AWS::EC2::SecurityGroup{direction}").values():
        if deployed(standalone):
            p = dict(standalone["Properties"])
            rules.append((p.pop("GroupId")["Ref"], p))
    return rules


def _peer(rule):
    for key in ("SourceSecurityGroupId", "DestinationSecurityGroupId"):
        if key in rule:
            return rule[key]["Ref"]
    for key in ("DestinationPrefixListId", "SourcePrefixListId"):
        if key in rule:
            return rule[key]["Fn::FindInMap"][2]  # S3 / DynamoDB
    return rule.get("CidrIp") or rule.get("CidrIpv6")


def _summary(cfn, group, direction, proxy=False):
    return sorted(
        (r["IpProtocol"], r.get("FromPort"), r.get("ToPort"), _peer(r))
        for g, r in _rules(cfn, direction, proxy)
        if g == group
    )


def test_three_security_groups_with_descriptions(cfn):
    groups = resources(cfn, "AWS::EC2::SecurityGroup")
    assert {k for k, g in groups.items() if "Condition" not in g} == {
        "LambdaSecurityGroup",
        "DbSecurityGroup",
        "EndpointSecurityGroup",
    }
    assert {k: g["Condition"] for k, g in groups.items() if "Condition" in g} == {
        "RdsProxySecurityGroup": "UseRdsProxy"
    }
    for logical_id, sg in groups.items():
        assert len(sg["Properties"]["GroupDescription"]) > 10, logical_id
        assert sg["Properties"]["VpcId"] == ref("Vpc")


def test_every_rule_has_a_description(cfn):
    rules = _rules(cfn, "Ingress") + _rules(cfn, "Egress")
    assert len(rules) >= 8
    for group, rule in rules:
        assert rule.get("Description", "").strip(), f"{group}: {rule}"


def test_default_allow_all_egress_is_removed(cfn):
    # CloudFormation keeps the default 0.0.0.0/0 egress unless SecurityGroupEgress is inline.
    for logical_id, sg in resources(cfn, "AWS::EC2::SecurityGroup").items():
        assert sg["Properties"].get("SecurityGroupEgress"), logical_id


def test_nothing_is_open_to_the_world(cfn):
    for group, rule in _rules(cfn, "Ingress") + _rules(cfn, "Egress"):
        assert rule.get("CidrIp") != "0.0.0.0/0", group
        assert rule.get("CidrIpv6") != "::/0", group


def test_database_admits_only_lambda_on_5432(cfn):
    assert _summary(cfn, "DbSecurityGroup", "Ingress") == [("tcp", 5432, 5432, "LambdaSecurityGroup")]
    assert _summary(cfn, "DbSecurityGroup", "Egress") == [("-1", None, None, "127.0.0.1/32")]
    # EnableRdsProxy=true: and from the proxy
    assert _summary(cfn, "DbSecurityGroup", "Ingress", proxy=True) == [
        ("tcp", 5432, 5432, "LambdaSecurityGroup"),
        ("tcp", 5432, 5432, "RdsProxySecurityGroup"),
    ]


def test_endpoints_admit_only_lambda_on_443(cfn):
    assert _summary(cfn, "EndpointSecurityGroup", "Ingress") == [("tcp", 443, 443, "LambdaSecurityGroup")]
    assert _summary(cfn, "EndpointSecurityGroup", "Egress") == [("-1", None, None, "127.0.0.1/32")]
    # EnableRdsProxy=true: and from the proxy (it reads the app secret through the Secrets Manager endpoint)
    assert _summary(cfn, "EndpointSecurityGroup", "Ingress", proxy=True) == [
        ("tcp", 443, 443, "LambdaSecurityGroup"),
        ("tcp", 443, 443, "RdsProxySecurityGroup"),
    ]


def test_lambda_egress_is_exactly_db_endpoints_and_gateways(cfn):
    assert _summary(cfn, "LambdaSecurityGroup", "Ingress") == []
    assert _summary(cfn, "LambdaSecurityGroup", "Egress") == sorted(
        [
            ("tcp", 5432, 5432, "DbSecurityGroup"),
            ("tcp", 443, 443, "EndpointSecurityGroup"),
            ("tcp", 443, 443, "S3"),
            ("tcp", 443, 443, "DynamoDB"),
        ]
    )
    # EnableRdsProxy=true: and to the proxy (the health checker's probe)
    assert _summary(cfn, "LambdaSecurityGroup", "Egress", proxy=True) == sorted(
        [*_summary(cfn, "LambdaSecurityGroup", "Egress"), ("tcp", 5432, 5432, "RdsProxySecurityGroup")]
    )
    for _, rule in _rules(cfn, "Egress"):
        if "DestinationPrefixListId" in rule:
            assert rule["DestinationPrefixListId"]["Fn::FindInMap"][:2] == [
                "GatewayPrefixLists",
                ref("AWS::Region"),
            ]


def test_prefix_list_mapping_covers_every_deploy_region(sam):
    mapping = sam["Mappings"]["GatewayPrefixLists"]
    for region, ids in mapping.items():
        assert set(ids) == {"S3", "DynamoDB"}, region
        for pl in ids.values():
            assert re.fullmatch(r"pl-[0-9a-f]{8,17}", pl), (region, pl)
        assert ids["S3"] != ids["DynamoDB"], region
    config = tomllib.loads(SAMCONFIG.read_text())
    regions = {env["deploy"]["parameters"]["region"] for env in config.values() if isinstance(env, dict)}
    assert regions and regions <= set(mapping)


# ---- flow logs ---------------------------------------------------------------------------------


def test_flow_log_captures_all_traffic(cfn):
    (log_id,) = resources(cfn, "AWS::EC2::FlowLog")
    p = props(cfn, log_id)
    assert p["ResourceType"] == "VPC"
    assert p["ResourceId"] == ref("Vpc")
    assert p["TrafficType"] == "ALL"
    assert p["LogDestinationType"] == "cloud-watch-logs"
    assert p["LogGroupName"] == ref("FlowLogGroup")
    assert p["DeliverLogsPermissionArn"] == getatt("FlowLogRole", "Arn")
    group = props(cfn, "FlowLogGroup")
    assert group["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert group["RetentionInDays"] >= 365


def test_flow_log_role_is_least_privilege(cfn):
    role = props(cfn, "FlowLogRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == sub(
        "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc-flow-log/*"
    )
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    (stmt,) = statements(policy["PolicyDocument"])
    assert sorted(stmt["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert stmt["Resource"] == getatt("FlowLogGroup", "Arn")
