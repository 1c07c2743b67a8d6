"""What every app shares: roles, tenant scoping, errors, Redis, middleware, notifications."""
