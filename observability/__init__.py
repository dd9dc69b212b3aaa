"""The operations dashboard and the alarms, defined in Python and rendered into template.yaml.

`make render` (observability.render) writes two generated blocks into template.yaml (the
threshold Parameters and the Observability resources) and the layout picture docs/dashboard.png;
tests/template/test_observability.py fails when either is stale. Metric names, dimensions, state
and function names come from hapg.names, so the code that emits a metric and the widget or alarm
that reads it cannot drift apart (tests/integration/test_emitted_metrics.py runs the handlers and
checks that every custom metric used here is really emitted, with these dimensions).
"""
