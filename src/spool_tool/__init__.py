"""spool_tool: ship files from spool directories into S3, verified and exactly once."""

__version__ = "0.1.0"
