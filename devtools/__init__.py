"""Developer tools: throw-away S3 servers (seaweed) and the demo. Not part of the package."""
