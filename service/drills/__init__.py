"""Runbook exercises as drills: Chaos Toolkit experiments (deploy/drills/*.json) whose
actions and probes live here, run under the load suite's load and judged."""
