"""Quoting input in messages: a problem report repeats at most a few hundred characters.

A report is stored and served back; a message that repeats an uploaded value whole lets a
small upload become a large stored report (a YAML alias bomb's expansion, a 1 MB class name).
"""

MAX_QUOTE = 200  # characters of input one message may repeat


def clip(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages that show what was found.

    Containers are cut before ``repr`` walks them, so quoting a list of a million items does
    not first build a million-item string.
    """
    if isinstance(value, (list, tuple)) and len(value) > limit:
        head = repr(type(value)(value[:limit]))
        return clip(f"{head[:-1]}, … {len(value)} items{head[-1]}", limit)
    if isinstance(value, dict) and len(value) > limit:
        return f"{{… {len(value)} keys}}"
    if isinstance(value, str) and len(value) > limit:
        return clip(repr(value[: limit + 1]), limit)
    return clip(repr(value), limit)
