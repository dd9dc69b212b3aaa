"""Stack outputs: values and export names other stacks/tools rely on."""

import pytest
from template_helpers import getatt, ref, sub

EXPECTED = {
    "VpcId": ref("Vpc"),
    "PrivateSubnetIds": {"Fn::Join": [",", [ref("PrivateSubnet1"), ref("PrivateSubnet2"), ref("PrivateSubnet3")]]},
    "LambdaSecurityGroupId": ref("LambdaSecurityGroup"),
    "DbSecurityGroupId": ref("DbSecurityGroup"),
    "ClusterIdentifier": ref("AuroraCluster"),
    "ClusterEndpoint": getatt("AuroraCluster", "Endpoint.Address"),
    "ReaderEndpoint": getatt("AuroraCluster", "ReadEndpoint.Address"),
    "ClusterPort": getatt("AuroraCluster", "Endpoint.Port"),
    "MasterSecretArn": ref("MasterSecret"),
    "AlertTopicArn": ref("AlertTopic"),
    "HealthCheckerFunctionArn": getatt("HealthCheckerFunction", "Arn"),
    "DbLayerArn": ref("DbLayer"),
    "FailoverStateMachineArn": ref("FailoverStateMachine"),
    "StateTableName": ref("StateTable"),
    "FailoverCoordinatorFunctionArn": getatt("FailoverCoordinatorFunction", "Arn"),
    "ConnectionDrainerFunctionArn": getatt("ConnectionDrainerFunction", "Arn"),
}


@pytest.mark.parametrize(("key", "value"), EXPECTED.items())
def test_output_value(sam, key, value):
    assert sam["Outputs"][key]["Value"] == value


def test_every_output_is_exported_under_the_stack_name(sam):
    assert set(EXPECTED) <= set(sam["Outputs"])
    for key, output in sam["Outputs"].items():
        assert output["Export"] == {"Name": sub(f"${{AWS::StackName}}-{key}")}, key
        assert output.get("Description"), key


def test_layer_output_survives_translation(cfn):
    (layer_id,) = (k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::LayerVersion")
    assert cfn["Outputs"]["DbLayerArn"]["Value"] == ref(layer_id)
