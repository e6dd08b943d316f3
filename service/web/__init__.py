"""The HTTP and WebSocket face of an instance: routes, handlers, sessions, limits."""
