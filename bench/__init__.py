"""Benchmarks: spool_tool against s5cmd, rclone and the AWS CLI on a local SeaweedFS server.

Entry point: ``python -m bench.run --help`` (``make bench`` runs it with the defaults).

Modules:

* ``bench.tools``     - the reference tools (own venv ``bench/.tools-venv``) and their commands
* ``bench.workloads`` - workload definitions and fast file generation
* ``bench.measure``   - one tool run as an isolated child process (wall time, rusage via wait4)
* ``bench.report``    - statistics, Markdown tables and the raw JSON record
* ``bench.run``       - command line and orchestration (server, round robin, verification)
"""
