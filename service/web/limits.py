"""Bounds on what one request may ask of an instance."""

MAX_SKUS_PER_REQUEST = 50
# a catalog page watches its books over one socket, so it stays within the above
BOOKS_PER_PAGE = 24
API_BOOKS_PER_PAGE = 100
# a page of 1,000 books kept an instance busy for over 100 ms (every other request on it
# waited); 200 is about 20 ms
API_MAX_BOOKS_PER_PAGE = 200
MAX_BODY_BYTES = 8 * 1024
# Tornado's own cap on a body it reads at all; our handlers answer 413 above MAX_BODY_BYTES
SERVER_MAX_BODY_BYTES = 1024 * 1024
MAX_WS_MESSAGE_BYTES = 1024
# Request line and headers together. nginx passes at most 32 KB of a client's headers
# (large_client_header_buffers 4 8k, nginx/http.conf) and adds a few of its own: 48 KB
# is above that, so a request nginx accepted is never cut here (an instance closes the
# connection without an answer), and below Tornado's 64 KB for direct clients.
MAX_HEADER_BYTES = 48 * 1024
SESSION_MAX_AGE_DAYS = 30
MAX_QUERY_CHARS = 200
