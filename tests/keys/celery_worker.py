"""Runs a real Celery worker with the keys tests' sample models loaded (for end-to-end tests)."""

import django

if __name__ == "__main__":
    django.setup()
    import tests.keys.sample_models  # noqa: F401  registers the sample encrypted models
    from console.celery import app

    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--without-heartbeat", "--without-gossip",
                     "--without-mingle", "--loglevel=INFO"])
