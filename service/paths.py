"""Where the checkout's files are: the package runs from a checkout (or an editable
install of one), with templates/, static/, deploy/ and nginx/ beside `service/`."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
DEPLOY = ROOT / "deploy"
NGINX = ROOT / "nginx"
# the built-in catalog ships inside the package (package data)
DEFAULT_CATALOG = PACKAGE / "data" / "books.json"
# where `up` writes configs, data and logs unless told otherwise
DEFAULT_VAR_DIR = ROOT / "var"
