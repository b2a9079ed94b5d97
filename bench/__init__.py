"""Benchmarks: spool_tool against s5cmd, rclone and the AWS CLI on a local SeaweedFS server.

Entry point: ``python -m bench.run --help`` (``make bench`` runs it with the defaults).

Modules:

* ``bench.tools``     - the reference tools (own venv ``bench/.tools-venv``) and their commands
* ``bench.workloads`` - workload definitions and fast file generation
* ``bench.measure``   - one tool run as an isolated child process (wall time, rusage via wait4)
* ``bench.report``    - statistics, Markdown tables and the raw JSON record
* ``bench.run``       - command line and orchestration (server, round robin, verification)
* ``bench.fleet``     - N spool_tool agents into one bucket through ``bench.throttle_proxy``
  (503 SlowDown above R requests/s per key prefix): throughput, requests per file, fairness,
  exactly-once (``python -m bench.fleet --help``)
* ``bench.gate_probe`` - ``spool_tool.throttle`` in-process through the same proxy: fixed vs
  adaptive concurrency
"""
