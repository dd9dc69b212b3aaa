"""docs/architecture.md shows the state machines as they are committed."""

import pytest

from statemachines import diagram, render


@pytest.mark.parametrize("name", sorted(render.WORKFLOWS))
def test_diagram_matches_the_committed_asl(name):
    assert diagram.block(name) in diagram.DOC.read_text(), "run `make render` and commit docs/architecture.md"


def test_diagram_has_every_state_and_catch_edge():
    import json

    definition = json.loads(render.path("failover").read_text())
    text = diagram.mermaid(definition)
    for name in definition["States"]:
        assert f"  {name}" in text
    assert "-.->|ALL| RestoreConnectionsAfterFailure" in text
    assert "IsPromotionComplete -->|complete = true| RestoreConnections" in text
