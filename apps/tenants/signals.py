"""Signals the tenants app sends to apps above it (which connect in their AppConfig.ready)."""

from django.dispatch import Signal

# Sent by `manage.py seed_demo` after the demo tenants and users exist, with
# tenants=[Tenant, ...] and admin=<platform admin User>; higher apps add their demo data.
demo_seeded = Signal()
