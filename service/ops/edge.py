"""What the local nginx needs besides its template: the addresses exempt from the rate
limits (BB_LIMIT_EXEMPT) and the user its workers run as.

The limits themselves are in nginx/http.conf and nginx/locations.conf, shared with the
compose deployment (whose nginx renders BB_LIMIT_EXEMPT with nginx/limit-exempt.sh).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import subprocess
from collections.abc import Mapping

from service.ops.errors import OpsError
from service.paths import STATIC

LIMIT_EXEMPT_VARIABLE = "BB_LIMIT_EXEMPT"
# Debian's web server user first; `nobody` exists everywhere else
WORKER_USERS = ("www-data", "nobody")
# a file every page loads: if the workers can read it, they can read static/
STATIC_PROBE = STATIC / "js" / "shop.js"


def limit_exempt_networks(env: Mapping[str, str]) -> list[str]:
    """BB_LIMIT_EXEMPT's networks (comma-separated addresses or CIDRs), checked."""
    raw = env.get(LIMIT_EXEMPT_VARIABLE, "")
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            # strict=False: 127.0.0.1/8 means 127.0.0.0/8, as nginx reads it
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise OpsError(f"{LIMIT_EXEMPT_VARIABLE}: {item!r} is not an address or a network "
                           "(e.g. 127.0.0.0/8 or 10.1.2.3); separate several with commas") \
                from None
    return networks


def geo_entries(networks: list[str]) -> str:
    """The lines of nginx's `geo $bb_limit_exempt` block for these networks."""
    lines = [f"# {LIMIT_EXEMPT_VARIABLE} when `up` started: addresses the rate limits leave "
             "alone"]
    lines += [f"{network} 1;" for network in networks]
    return "\n".join(lines) + "\n"


def worker_user() -> pwd.struct_passwd | None:
    """The unprivileged user nginx's workers run as when `up` runs as root; None when it
    does not (nginx then cannot switch users: its workers run as whoever started it)."""
    if os.geteuid() != 0:
        return None
    for name in WORKER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise OpsError(f"none of the users {', '.join(WORKER_USERS)} exists for nginx's workers: "
                   "create one (`useradd --system www-data`)")


def user_directive(user: pwd.struct_passwd | None) -> str:
    """nginx's `user` line for the workers (empty when not root)."""
    if user is None:
        return ""
    return f"user {user.pw_name} {grp.getgrgid(user.pw_gid).gr_name};"


def static_warning(user: pwd.struct_passwd | None) -> str | None:
    """A note when nginx's workers cannot read the checkout's static files.

    A checkout under /root, or any folder on the way closed to others, hides static/
    from the workers' user. nginx then passes those requests to the instances (the
    `try_files … @app` of locations.conf), which works but costs an instance the file."""
    if user is None:
        return None
    # the kernel's own answer, as that user: every folder on the way, ACLs included
    readable = subprocess.run(["test", "-r", str(STATIC_PROBE)], user=user.pw_uid,
                              group=user.pw_gid, extra_groups=[], check=False).returncode == 0
    if readable:
        return None
    return (f"nginx's workers run as {user.pw_name}, who cannot read {STATIC}: the instances "
            "serve static files instead (slower). Let them in with `chmod o+x` on each folder "
            f"above {STATIC.parent}, or move the checkout out of a private folder")
