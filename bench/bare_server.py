"""Bench-only ceiling: the barest Tornado handler, for bench/seed.py.

One process, one route, a fixed page the size of the seed's (the query, a number,
"tweets per second"): no Redis, no template, no upstream. What siege measures against
it is what this machine gives one Tornado process with siege on the same cores.

    python bench/bare_server.py --port P
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import tornado.web
from tornado.httpserver import HTTPServer

PAGE = b"""<div style="text-align: center">
<div style="font-size: 72px">pants</div>
<div style="font-size: 144px">0.17</div>
<div style="font-size: 24px">tweets per second</div>
</div>"""


class BareHandler(tornado.web.RequestHandler):
    def get(self):
        self.write(PAGE)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # no access log, like the simulator: the ceiling of Tornado itself
    app = tornado.web.Application([(r"/.*", BareHandler)], log_function=lambda handler: None)
    server = HTTPServer(app)
    server.listen(args.port, "127.0.0.1")
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
