"""The translation helper itself, including the state-machine path later slices rely on."""

import json

from template_helpers import resources, translate

ASL = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


def test_translate_inlines_local_asl_and_stages_code(tmp_path):
    (tmp_path / "statemachines").mkdir()
    (tmp_path / "statemachines/demo.asl.json").write_text(json.dumps(ASL))
    sam = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "functions/demo/", "Handler": "index.h", "Runtime": "python3.11"},
            },
            "Machine": {
                "Type": "AWS::Serverless::StateMachine",
                "Properties": {"DefinitionUri": "statemachines/demo.asl.json"},
            },
        },
    }
    cfn = translate(sam, root=tmp_path)
    (machine,) = resources(cfn, "AWS::StepFunctions::StateMachine").values()
    separator, parts = machine["Properties"]["DefinitionString"]["Fn::Join"]
    assert json.loads(separator.join(parts)) == ASL
    (fn,) = resources(cfn, "AWS::Lambda::Function").values()
    assert fn["Properties"]["Code"] == {"S3Bucket": "artifacts", "S3Key": "functions/demo.zip"}
    assert sam["Resources"]["Machine"]["Properties"] == {"DefinitionUri": "statemachines/demo.asl.json"}
