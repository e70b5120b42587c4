"""``edge-app review DIR``: the page where collected frames become a training set, and the collect folder behind it.

The page and its JSON API are routes of the one web application (``edge_app.web.review``): served by the edge-app
process itself at ``/review`` and ``/api/review/*`` when it runs with ``--collect DIR`` and ``--http`` (the same port
and token as the live view), and by ``edge-app review DIR`` on a workstation (review routes only; there ``/`` is the
page as well, and the earlier ``/api/inbox``, ``/api/label``, ``/api/discard``, ``/api/dataset.tar.gz``,
``/api/candidate`` and ``/inbox/<image>`` still answer). It shows ``DIR/inbox`` (what ``--collect DIR`` saved) as
thumbnails with the predicted label and score, lowest score first; the user selects many and assigns a class (an
existing one or a new one) or discards them; labelled images move into ``DIR/train/<class>/``, the layout
``train-model`` reads, and ``/api/review/dataset.tar.gz`` downloads that folder. ``docs/API.md`` lists the routes.

Security (the application's middleware, ``edge_app.web.security``): with a token every route but ``/healthz`` needs
it (``Authorization: Bearer``, or ``?token=`` for reading; changes take it only in the header). A change must be JSON
with the ``X-Edge-App: 1`` header and, when the browser sends an ``Origin``, this server's own origin. Every
request's ``Host`` must name this server (``edge_app.web.hosts.AllowedHosts``), else 400 before any route. A batch
(``images``) is checked whole before anything moves (``Dataset.check_names``): one bad name is a 400 naming every bad
entry, and nothing on disk changes. Served beyond loopback without a token, ``run`` logs a warning.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_app.collect import INBOX, TRAIN
from edge_app.errors import ConfigError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.jpg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_BATCH = 5000
HOST_HINT = "; add it with --host-name NAME to serve it"
SHOWN_BAD = 10  # bad names quoted in an error message (the JSON's "bad" lists them all)


def _need_starlette() -> None:
    try:
        import starlette  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError:
        raise ConfigError("the review page needs Starlette and uvicorn: pip install edge-recognition (they are dependencies)") from None


def check_class(name: object) -> str:
    if not isinstance(name, str) or not CLASS_NAME.fullmatch(name.strip()) or name.strip() in (INBOX, TRAIN):
        raise ValueError(f"bad class name {name!r}: use 1-64 letters, digits, spaces, '_', '-' or '.', starting with a letter or digit")
    return name.strip()


class BadBatch(ValueError):
    """A batch with entries that are no inbox image name; ``bad`` holds them all, as they came."""

    def __init__(self, bad: list[Any]) -> None:
        shown = ", ".join(repr(b) for b in bad[:SHOWN_BAD]) + (f" and {len(bad) - SHOWN_BAD} more" if len(bad) > SHOWN_BAD else "")
        super().__init__(f"bad image name(s), nothing was changed: {shown}")
        self.bad = bad


class Dataset:
    """The collect folder: ``inbox/`` (unreviewed, with ``.json`` predictions) and ``train/<class>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox = root / INBOX
        self.train = root / TRAIN
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.train.mkdir(exist_ok=True)

    def inbox_items(self) -> list[dict[str, Any]]:
        items = []
        for jpg in sorted(self.inbox.glob("*.jpg")):
            meta: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):  # an image dropped in by hand has no prediction
                meta = json.loads(jpg.with_suffix(".json").read_text())
            items.append({"image": jpg.name, "label": meta.get("label"), "score": meta.get("score"), "zone": meta.get("zone"),
                          "time": meta.get("time"), "reasons": meta.get("reasons", []), "model": meta.get("model")})
        items.sort(key=lambda i: (i["score"] if isinstance(i["score"], int | float) else -1.0, i["image"]))
        return items

    def classes(self) -> dict[str, int]:
        return {d.name: sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                for d in sorted(self.train.iterdir()) if d.is_dir() and not d.name.startswith(".")}

    @staticmethod
    def check_names(names: Sequence[Any]) -> list[str]:
        """The batch as inbox image names, checked whole before anything changes: ``BadBatch`` names every entry
        that is not one (``../x.jpg``, a number, ...)."""
        bad = [name for name in names if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name)]
        if bad:
            raise BadBatch(bad)
        return list(names)

    def _present(self, names: list[str]) -> list[Path]:
        """The inbox images of checked ``names`` that are still there (gone ones were done already: another tab)."""
        paths = [self.inbox / name for name in dict.fromkeys(names)]
        return [p for p in paths if p.is_file()]

    def move(self, names: Sequence[Any], label: str) -> list[str]:
        """Move inbox images into ``train/<label>/`` (their prediction files stay out of the dataset); the names moved.
        The label and every name are checked first: a bad one raises ``ValueError`` with nothing moved."""
        target = self.train / check_class(label)
        sources = self._present(self.check_names(names))
        target.mkdir(exist_ok=True)
        moved = []
        for src in sources:
            try:
                shutil.move(str(src), str(target / src.name))
            except FileNotFoundError:
                continue  # moved meanwhile (another tab): not an error
            src.with_suffix(".json").unlink(missing_ok=True)
            moved.append(src.name)
        log.info("review: %d image(s) labelled %s", len(moved), label)
        return moved

    def discard(self, names: Sequence[Any]) -> list[str]:
        """Delete inbox images and their predictions; the names deleted. Every name is checked first (``BadBatch``)."""
        sources = self._present(self.check_names(names))
        for src in sources:
            src.unlink(missing_ok=True)
            src.with_suffix(".json").unlink(missing_ok=True)
        log.info("review: %d image(s) discarded", len(sources))
        return [src.name for src in sources]

    def tar_gz(self) -> bytes:
        """``train/<class>/*`` as a .tar.gz (``train-model --data dataset.tar.gz`` reads it as it is)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for cls, _count in self.classes().items():
                for f in sorted((self.train / cls).iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        tar.add(f, arcname=f"{TRAIN}/{cls}/{f.name}")
        return buf.getvalue()


def create_app(root: Path, token: str | None = None, labels: Sequence[str] | None = None, *,
               bind: str = "127.0.0.1", host_names: Sequence[str] = (), model: Any = None) -> Any:
    """The web application in its workstation mode (review routes only) for the collect folder ``root``; ``labels``
    (a model's) are offered as classes. ``bind`` (the address it will be served on) and ``host_names`` decide the
    ``Host`` names it answers to (``edge_app.web.hosts.AllowedHosts``). ``model`` (a loaded ``edge_app.model.Classifier``):
    its input size and scores serve the dataset doctor's small-photo and mislabel checks."""
    _need_starlette()
    from edge_app.web.app import create_app as web_app  # noqa: PLC0415
    from edge_app.web.hosts import AllowedHosts  # noqa: PLC0415

    input_size, features = None, None
    if model is not None:
        from edge_app.doctor import model_features  # noqa: PLC0415

        size, function = (int(model.size[0]), int(model.size[1])), model_features(model)  # one function: the features stay cached
        input_size, features = (lambda: size), (lambda: function)
    return web_app(review=root, labels=list(labels or []), token=token, hosts=AllowedHosts(bind, host_names, HOST_HINT),
                   input_size=input_size, features=features)


DESCRIPTION = (
    "Review the frames --collect saved: label them in a web page into DIR/train/<class>/ for train-model. The workstation mode of "
    "the review page that edge-app --collect DIR --http HOST:PORT also serves at /review on its own port (same token)."
)


def add_arguments(parser: Any) -> None:
    parser.add_argument("folder", type=Path, help="the --collect folder (holds inbox/ and train/)")
    parser.add_argument("--http", default="127.0.0.1:8081", help="[HOST:]PORT to serve on (default 127.0.0.1:8081; 0.0.0.0:PORT for every interface)")
    parser.add_argument("--token", help="require this token (Authorization: Bearer, or ?token= in the page URL; changes take it only in the header)")
    parser.add_argument("--model", type=Path, help="offer this model bundle's labels as classes; the dataset doctor checks "
                        "small photos against its input and suspected mislabels with its scores")
    parser.add_argument("--host-name", action="append", default=[], metavar="NAME",
                        help="also answer requests for this host name (repeatable; *.example.com for a domain): besides the "
                             "bound address, localhost and this machine's names, which are always allowed")


def run(args: Any) -> int:
    from edge_app.config import parse_hostport  # noqa: PLC0415

    _need_starlette()
    from edge_app.web import server  # noqa: PLC0415
    from edge_app.web.hosts import warn_without_token  # noqa: PLC0415

    try:
        host, port = parse_hostport(args.http)
    except ValueError as exc:
        raise ConfigError(f"--http: {exc}") from None
    labels, model = None, None
    if args.model is not None:
        from edge_app.model import Classifier, load_labels, resolve_model  # noqa: PLC0415

        files = resolve_model(args.model, None)
        labels = load_labels(files.labels) if files.labels else None
        model = Classifier(files)  # the doctor's input size and features (the page's mislabel check)
    app = create_app(args.folder, args.token, labels, bind=host, host_names=args.host_name, model=model)
    log.info("review page on http://%s:%d/review%s", host, port, "?token=..." if args.token else "")
    warn_without_token(log, "the review page", host, args.token, "pass --token or serve 127.0.0.1 only")
    server.serve(app, host, port, what="the review page")
    return 0
