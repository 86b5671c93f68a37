"""Text written into a drafted YAML file, safe on one line whatever the source holds.

A header or a sample value can hold anything (line breaks, a BOM, NEL, control
characters); a draft must still be one valid YAML document that means what it says.
"""

from __future__ import annotations

import re

# Characters written as they are inside a YAML double-quoted string or a comment: printable,
# and not one of the line breaks YAML 1.1 knows beyond \n and \r (NEL, LS, PS) nor a BOM.
PLAIN = re.compile(
    "[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}


def yaml_str(text: str) -> str:
    """``text`` as a YAML double-quoted string, safe on one line anywhere (values, comments)."""
    out = []
    for ch in text:
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif PLAIN.fullmatch(ch):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def yaml_scalar(text: str) -> str:
    """An option value as a plain YAML scalar when it is an identifier, else quoted."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text)
    reserved = text.lower() in ("true", "false", "yes", "no", "on", "off", "null", "y", "n")
    return text if plain and not reserved else yaml_str(text)


def comment_text(text: str) -> str:
    """``text`` as it is when a comment can hold it, else quoted and escaped."""
    return text if all(PLAIN.fullmatch(ch) for ch in text) else yaml_str(text)


def one_line(line: str) -> str:
    """Last guard: a draft line never carries a line break or unprintable character."""
    if all(PLAIN.fullmatch(ch) for ch in line):
        return line
    return "".join(ch if PLAIN.fullmatch(ch) else yaml_str(ch)[1:-1] for ch in line)
