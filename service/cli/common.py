"""What the commands share: the log format (number arguments: service.arguments)."""

from __future__ import annotations

import logging


def setup_logging(instance_id: str = "-") -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{instance_id}] %(name)s: %(message)s")
