"""Monitoring of the served students: confidence drift against the offline reference, F1 on
delayed labels, and A/B verdicts, per scenario and arm, with Evidently reports."""
