"""Text from files made safe to print: control characters shown, never obeyed.

A DICOM header, a file name or an exception message quoting either can hold
terminal escapes (``ESC [2K`` erases the line, ``ESC [32m`` paints the next
one green), carriage returns, or Unicode bidirectional overrides that reorder
what is shown. :func:`printable` spells every such character out (``\\x1b``,
``\\u202e``), so what reaches a terminal, a log or a report is exactly the
text that was there and cannot rewrite what is around it.
"""

from __future__ import annotations

import unicodedata

# Cc: C0, DEL and C1 controls; Cf: format characters (bidi overrides and isolates, zero-width joiners);
# Zl / Zp: line and paragraph separators, which some terminals and editors treat as new lines.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` with every control, format or unassigned character escaped; everything else unchanged."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to do (isprintable is False for all of the above)
        return text
    return "".join(
        char if char == " " or unicodedata.category(char) not in _UNSAFE_CATEGORIES else _escape(char) for char in text
    )
