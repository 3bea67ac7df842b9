"""Platform services every domain uses: notifications, e-mail, jobs, analytics, cache, gateway."""
