"""The integrations app keeps no rows: every export is built from the tenants when asked for."""
