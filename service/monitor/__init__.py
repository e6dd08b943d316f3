"""What an instance tells about itself: Prometheus figures and its heartbeat in Redis."""
