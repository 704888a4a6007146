"""API views: thin, like the pages' (permission, input, service, answer), one module per area."""
