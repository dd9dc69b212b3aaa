"""State machines defined in Python (Step Functions SDK API), rendered to committed ASL JSON."""
