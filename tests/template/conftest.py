"""Session fixtures: the SAM template as written, and as CloudFormation after the SAM transform."""

import pytest
from template_helpers import load_sam, translate


@pytest.fixture(scope="session")
def sam() -> dict:
    """template.yaml as written (short-form intrinsics expanded to Ref/Fn::*)."""
    return load_sam()


@pytest.fixture(scope="session")
def cfn(sam) -> dict:
    """The translated template: what CloudFormation actually deploys."""
    return translate(sam)
