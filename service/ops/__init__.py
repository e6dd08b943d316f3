"""Running the shop on one machine: the local cluster of `up` under supervisord, `ctl`, and
the real processes tests and benchmarks start. The app itself never imports this."""
