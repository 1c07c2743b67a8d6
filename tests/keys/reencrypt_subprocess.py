"""Runs `manage.py rotate_keys` with the keys tests' sample models loaded, in its own process
(so a test can kill it with SIGKILL mid-way). Arguments are passed to the command."""

import sys

import django

if __name__ == "__main__":
    django.setup()
    from django.core.management import call_command

    import tests.keys.sample_models  # noqa: F401  registers the sample encrypted models

    call_command("rotate_keys", *sys.argv[1:])
