"""Fault-injection tools for tests (DESIGN.md section 5).

- :mod:`tests.faults.proxy`: a tiny threaded HTTP/1.1 proxy in front of an S3 server that can
  answer errors, reset connections mid-body and stall before or after forwarding.
- :mod:`tests.faults.hooks`: an in-process botocore ``before-send`` hook returning canned S3
  error responses, so botocore's real retry logic runs.
"""
