"""The HTTP API: one router module per URL prefix, gathered in `service.routes.api`."""
