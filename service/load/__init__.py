"""Load testing across instances, on Locust: `python -m service load` (or `locust -f
service/load/locustfile.py`) with shoppers, WebSocket and long-poll watchers and rate
readers, delivery lag per transport, per-instance figures and invariant verdicts."""
