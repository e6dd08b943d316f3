"""One app instance put together: its services, its server, its background loops, its drain."""
