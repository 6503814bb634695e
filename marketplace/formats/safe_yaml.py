"""YAML for files a stranger uploaded: no aliases, no anchors, bounded depth and size.

``yaml.safe_load`` refuses to build Python objects but still expands aliases: a 1 KB file
whose anchors refer to each other eight levels deep ("billion laughs") expands to gigabytes
while it is constructed, and any message that repeats the value repeats the expansion. The
configuration files a dataset delivery carries (Ultralytics' ``data.yaml``) never need
anchors, so this loader refuses the first anchor or alias it meets, before anything is
built, and refuses nesting deeper than a data.yaml ever goes (PyYAML composes recursively,
so deep nesting would otherwise end in a RecursionError). Integers longer than Python's
``int`` parser accepts end as a YAML error, not a ValueError from deep inside PyYAML.

The checks read the parser's event stream first (linear, nothing expanded); only a document
that passes them is loaded, with PyYAML's SafeLoader (libyaml's when available).

No Django here: this module is part of the pure codecs.
"""

import yaml

from . import strict_json
from .quoting import clip

MAX_DEPTH = 32  # data.yaml nests 2-3 levels (names: {0: person}, kpt_names: {0: [...]})
MAX_NODES = 200_000  # 60,000 class names is ~60,000 nodes; each node costs ~1 KB while composed

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class UnsafeYAML(yaml.YAMLError):
    """The document uses a feature refused here (alias, anchor, depth, size)."""

    def __init__(self, message: str, mark=None):
        super().__init__(message)
        self.problem_mark = mark
        self.message = message

    def __str__(self) -> str:
        if self.problem_mark is not None:
            return f"{self.message} (line {self.problem_mark.line + 1})"
        return self.message


def _check_events(text: str) -> None:
    """Refuse anchors, aliases, deep nesting and too many values, from the parser's events.

    Only the event stream is read here (no node is composed and nothing is expanded), so the
    cost is linear in the text; the loader that runs afterwards meets no alias to expand.
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise UnsafeYAML("YAML aliases (*name) are not accepted", event.start_mark)
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                raise UnsafeYAML("YAML anchors (&name) are not accepted", event.start_mark)
            nodes += 1
            if nodes > MAX_NODES:
                raise UnsafeYAML(f"more than {MAX_NODES} YAML values", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeYAML(f"YAML nested deeper than {MAX_DEPTH} levels", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _load(text: str, compose_only: bool):
    try:
        _check_events(text)
        if compose_only:
            return yaml.compose(text, Loader=_Loader)
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader, after the checks above
        strict_json.check_strings(value)  # "\0" and "\ud800" escapes: no NUL, no lone surrogate
        return value
    except strict_json.StrictJSONError as exc:
        raise UnsafeYAML(str(exc)) from None
    except ValueError as exc:
        # int("9" * 5000) raises ValueError (Python's limit on digits), not a YAMLError.
        raise UnsafeYAML(f"a value cannot be read: {clip(str(exc), 120)}") from None
    except RecursionError:  # belt and braces: the depth check stops nesting long before this
        raise UnsafeYAML(f"YAML nested deeper than {MAX_DEPTH} levels") from None


def load(text: str):
    """Parse one YAML document into plain Python values; raises yaml.YAMLError when refused."""
    return _load(text, compose_only=False)


def compose(text: str):
    """The node tree of one YAML document (for line numbers), with the same refusals."""
    return _load(text, compose_only=True)
