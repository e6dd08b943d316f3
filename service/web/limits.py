"""Bounds on what one request may ask of an instance."""

MAX_SKUS_PER_REQUEST = 50
MAX_BODY_BYTES = 8 * 1024
# Tornado's own cap on a body it reads at all; our handlers answer 413 above MAX_BODY_BYTES
SERVER_MAX_BODY_BYTES = 1024 * 1024
MAX_WS_MESSAGE_BYTES = 1024
SESSION_MAX_AGE_DAYS = 30
MAX_QUERY_CHARS = 200
