"""Live fan-out: one Redis subscription per process feeding a local hub of clients."""

from service.live.feed import InventoryFeed
from service.live.hub import (
    Entry,
    LiveHub,
    Subscriber,
    websocket_text_frame,
    with_server_time,
)

__all__ = ["Entry", "InventoryFeed", "LiveHub", "Subscriber", "websocket_text_frame",
           "with_server_time"]
