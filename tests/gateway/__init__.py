"""Tests of the gateway: keys, quotas, routing, the pipeline and endpoints."""
