"""A shell op's command template: its ``{name}`` fields, where they sit, and filling them in.

A field's value is shell-quoted (``shlex.quote``) and so stays one word, but only where the
shell reads words: inside the template's own quotes (``"got {x}"``, ``'{x}'``), a heredoc,
a comment, backquotes or ``${…}`` the quoting itself would be text, and a value could end
it and run as code. :func:`check` refuses such templates before anything runs, saying how
to write them; ``$(…)`` is a fresh shell context, so fields work there.

>>> fields("sort {input} -o {output}; echo ${HOME} {{literal}}")
['input', 'output']
>>> fill("echo got {x}", {"x": "a b; rm -rf ~"})
"echo got 'a b; rm -rf ~'"
>>> problem("echo \\"got {x}\\"")  # doctest: +ELLIPSIS
'{x} is inside double quotes, where its value could end them and run as code; write it outside the quotes: ...'
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .secrets import REDACTED, redact_text

# A field, a doubled brace (a literal one), or the shell's own ${…} (its name is not a field).
_TOKEN = re.compile(r"\{\{|\}\}|\$\{|\{(\w+)\}")
_QUOTES = {"'": "single quotes", '"': "double quotes", "`": "backquotes"}
_MARK = "\x00"  # where a field sits, in the shell text a template is scanned as
_WORD_BREAKS = " \t\n;&|()<>"

_UNSAFE = {
    "double quotes": "is inside double quotes, where its value could end them and run as code; write it "
                     "outside the quotes: {fix} (a value is quoted for the shell already)",
    "single quotes": "is inside single quotes, where its value could end them and run as code; write it "
                     "outside the quotes: {fix} (a value is quoted for the shell already)",
    "$'…' quotes": "is inside $'…' quotes, where its value could end them and run as code; write it outside "
                   "the quotes",
    "backquotes": "is inside backquotes, where its quoting does not hold; use $(…) instead: {fix}",
    "${…}": "is inside ${{…}}, where its quoting does not hold; set a variable first (v={field}; …${{v…}})",
    "arithmetic": "is inside an arithmetic expression, which expands $(…) even in a quoted value; "
                  "set a variable first (v={field}) and check it is a number before using $v",
    "a comment": "is inside a comment, where a newline in its value would end the comment and run the "
                 "rest; take it out of the comment",
    "a heredoc": "is inside a heredoc, where its value would be text the shell expands; set a variable "
                 "before the heredoc (v={field}) and write $v inside it, or pass the text as an input file",
    "a heredoc delimiter": "is a heredoc's delimiter; write the delimiter literally",
    "after a backslash": "comes after a backslash, which would escape its quoting; remove the backslash",
}
_UNCLOSED = {"double quotes": 'a " quote', "single quotes": "a ' quote", "$'…' quotes": "a $' quote",
             "backquotes": "a ` backquote", "${…}": "a ${", "code": "a $(", "arithmetic": "a $(("}


@dataclass
class _Field:
    name: str
    start: int  # where ``{name}`` is in the template
    end: int


class UnsafeTemplate(ValueError):
    """What is wrong with a template (the caller names the op)."""


def _parse(template: str) -> tuple[list[str | _Field], str]:
    """The template as literal text and fields, and as shell text with a mark per field."""
    parts: list[str | _Field] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        parts.append(template[pos:match.start()])
        token = match.group(0)
        if match.group(1) is not None:
            parts.append(_Field(match.group(1), match.start(), match.end()))
        else:
            parts.append(token[0] if token in ("{{", "}}") else token)
        pos = match.end()
    parts.append(template[pos:])
    shell_text = "".join(_MARK if isinstance(p, _Field) else p for p in parts)
    return parts, shell_text


def fields(template: str) -> list[str]:
    """The names of the template's fields, each once, in order."""
    return list(dict.fromkeys(p.name for p in _parse(template)[0] if isinstance(p, _Field)))


def _contexts(text: str) -> list[str | None]:
    """For each field mark in ``text``, the shell context it sits in (None: a plain word
    where quoting holds, at the top or inside ``$(…)``). UnsafeTemplate for unclosed quotes."""
    found: list[str | None] = []
    stack = ["code"]  # "code" (top or $(…)), "arithmetic" ($((…))), "double quotes", …
    depth = [0]  # open parentheses per code context
    heredocs: list[tuple[str, bool]] = []
    word_start = True
    i, n = 0, len(text)
    while i < n:
        c, context = text[i], stack[-1]
        two = text[i:i + 2]
        if context in ("code", "arithmetic"):
            if c == "\\":
                if text[i + 1:i + 2] == _MARK:
                    found.append("after a backslash")
                i, word_start = i + 2, False
                continue
            if c == "\n" and heredocs:
                i = _skip_heredocs(text, i + 1, heredocs, found)
                heredocs, word_start = [], True
                continue
            if c == "#" and word_start:
                end = text.find("\n", i)
                end = n if end < 0 else end
                found.extend("a comment" for _ in range(text.count(_MARK, i, end)))
                i = end
                continue
            if text.startswith("<<<", i):
                i, word_start = i + 3, True
                continue
            if two == "<<" and context == "code":
                i = _heredoc_operator(text, i + 2, heredocs, found)
                word_start = False
                continue
            pushed = {"$'": "$'…' quotes", "$(": "code", "${": "${…}"}.get(two)
            if pushed:
                if text.startswith("$((", i):
                    pushed = "arithmetic"
                stack.append(pushed)
                depth.append(0)
                i, word_start = i + 2, pushed == "code"
                continue
            if c in "'\"`":
                stack.append(_QUOTES[c])
                depth.append(0)
                i, word_start = i + 1, False
                continue
            if c == _MARK:
                found.append(None if context == "code" else "arithmetic")
            elif two == "((" and word_start:
                stack.append("arithmetic")  # the (( … )) command; its second ( is counted next
                depth.append(0)
            elif c == "(":
                depth[-1] += 1
            elif c == ")":
                if depth[-1] == 0 and len(stack) > 1:
                    stack.pop()
                    depth.pop()
                else:
                    depth[-1] = max(0, depth[-1] - 1)
            word_start = c in _WORD_BREAKS
            i += 1
            continue
        if c == _MARK:
            found.append(context)
        elif c == "\\" and context != "single quotes":
            if text[i + 1:i + 2] == _MARK:
                found.append(context)
            i += 2
            continue
        elif (context, c) in (("double quotes", '"'), ("single quotes", "'"), ("$'…' quotes", "'"),
                              ("backquotes", "`"), ("${…}", "}")):
            stack.pop()
            depth.pop()
        elif context in ("double quotes", "${…}") and two in ("$(", "${"):
            stack.append("code" if two == "$(" else "${…}")
            depth.append(0)
            i += 2
            continue
        elif context in ("double quotes", "${…}") and c in "`" + ("'\"" if context == "${…}" else ""):
            stack.append(_QUOTES[c])
            depth.append(0)
        i += 1
    if len(stack) > 1:
        raise UnsafeTemplate(f"the command has {_UNCLOSED[stack[-1]]} that is never closed")
    return found


def _heredoc_operator(text: str, i: int, heredocs: list, found: list) -> int:
    """Read a heredoc's ``-`` and delimiter word after ``<<``; returns where it ends."""
    strip_tabs = text[i:i + 1] == "-"
    i += strip_tabs
    while i < len(text) and text[i] in " \t":
        i += 1
    delimiter = []
    while i < len(text) and text[i] not in _WORD_BREAKS:
        c = text[i]
        if c == _MARK:
            found.append("a heredoc delimiter")
        elif c in "'\"":
            close = text.find(c, i + 1)
            close = len(text) if close < 0 else close
            delimiter.append(text[i + 1:close])
            i = close
        elif c == "\\":
            delimiter.append(text[i + 1:i + 2])
            i += 1
        else:
            delimiter.append(c)
        i += 1
    heredocs.append(("".join(delimiter), strip_tabs))
    return i


def _skip_heredocs(text: str, i: int, heredocs: list, found: list) -> int:
    """Skip the bodies of the pending heredocs, which start at ``i``; fields there are unsafe."""
    for delimiter, strip_tabs in heredocs:
        while i < len(text):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[i:end]
            i = end + 1
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                break
            found.extend("a heredoc" for _ in range(line.count(_MARK)))
    return i


def _fix(template: str, field: _Field, context: str) -> str:
    """The line holding ``field``, rewritten with the field outside the quotes."""
    line_start = template.rfind("\n", 0, field.start) + 1
    line_end = template.find("\n", field.end)
    line_end = len(template) if line_end < 0 else line_end
    before, after = template[line_start:field.start], template[field.end:line_end]
    name = template[field.start:field.end]
    if context == "backquotes":
        return (before + name + after).replace("`", "$(", 1).replace("`", ")", 1)
    quote = '"' if context == "double quotes" else "'"
    line = f"{before}{quote}{name}{quote}{after}"
    empty = re.escape(quote * 2)
    return re.sub(rf"(?:(?<=\s){empty}|^{empty}|{empty}(?=\s|$|;))", "", line).strip()


def problem(template: str) -> str | None:
    """What makes ``template`` unsafe or broken (the first thing), or None."""
    if _MARK in template:
        return "the command contains a NUL character, which a command line cannot hold"
    parts, text = _parse(template)
    try:
        contexts = _contexts(text)
    except UnsafeTemplate as err:
        return str(err)
    placed = [p for p in parts if isinstance(p, _Field)]
    for field, context in zip(placed, contexts):
        if context is not None:
            explained = _UNSAFE[context].format(fix=_fix(template, field, context), field=f"{{{field.name}}}")
            return f"{{{field.name}}} {explained}"
    return None


def fill(template: str, values: dict[str, str]) -> str:
    """The command line: each field replaced by its value, shell-quoted; doubled braces in
    the template become single ones, braces in values stay as they are."""
    return "".join(shlex.quote(values[p.name]) if isinstance(p, _Field) else p for p in _parse(template)[0])


def shown(template: str, values: dict[str, str], secret: set[str]) -> str:
    """The command line as it may be shown and stored: fields named in ``secret`` as
    ``***``, secret-looking parts of everything else hidden (``core.secrets``)."""
    line = "".join((REDACTED if p.name in secret else shlex.quote(redact_text(values[p.name])))
                   if isinstance(p, _Field) else p for p in _parse(template)[0])
    return redact_text(line)
