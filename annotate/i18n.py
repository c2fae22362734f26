"""The language annotate's views speak: English, or Simplified Chinese (``zh-CN``).

One catalogue, ``annotate/messages/zh-CN.json``: every message as the code writes it in English
(``{name}`` for what is filled in) and its Chinese, in the terms of guides/zh-CN/glossary.md. The
terminal views call ``t("…", name=value)``; the pages' scripts call their own ``t`` (annotate/i18n.js)
on the same catalogue, which the page carries. Prose that is data, written once in a module's
tables (what a graded kind's forward returns), is marked ``N_("…")`` where it is written and
shown as ``translated(text)`` where it is shown, as gettext does. Formulas, code, stage names, module and config
names, tokens and numbers are not messages: they read the same in both languages.

Which language: ``--lang``, else the locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``, as
gettext reads them: a ``zh`` locale chooses Chinese), else English. In Python (a notebook):
``annotate.use_language("zh-CN")``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
from collections.abc import Iterator, Mapping
from importlib import resources

from annotate.errors import UserError

LANGUAGES = ("en", "zh-CN")
_chosen: contextvars.ContextVar[str | None] = contextvars.ContextVar("annotate_language", default=None)  # using(...)
_used: str | None = None  # use(...): for the rest of the process (a notebook's later cells too)


def from_locale(environ: Mapping[str, str] | None = None) -> str:
    """The language a POSIX locale asks for: the first of LANGUAGE (a list), LC_ALL, LC_MESSAGES and
    LANG that is set decides; ``zh_CN.UTF-8``, ``zh_SG``, ``zh`` choose zh-CN (the only Chinese here)."""
    environ = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if name == "LANGUAGE":
            value = value.split(":")[0]
        if value:
            return "zh-CN" if value.lower().startswith("zh") else "en"
    return "en"


def check(language: str) -> str:
    if language not in LANGUAGES:
        raise UserError(f"--lang {language!r}: the views speak {' or '.join(LANGUAGES)}")
    return language


def current() -> str:
    """The language chosen for this call (``using``), else by ``use``, else the locale's."""
    return _chosen.get() or _used or from_locale()


def use(language: str) -> None:
    """Choose the views' language from now on (in a notebook: ``annotate.use_language("zh-CN")``)."""
    global _used
    _used = check(language)


@contextlib.contextmanager
def using(language: str | None) -> Iterator[None]:
    """Inside the block the views speak ``language`` (None: the locale's)."""
    token = _chosen.set(check(language) if language else None)
    try:
        yield
    finally:
        _chosen.reset(token)


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    """English message -> its ``language`` text ({} for English)."""
    if language == "en":
        return {}
    text = resources.files("annotate").joinpath("messages", f"{language}.json").read_text(encoding="utf-8")
    return json.loads(text)


def t(message: str, /, **values) -> str:
    """``message`` in the current language, its ``{name}`` places filled from ``values``."""
    text = catalogue(current()).get(message, message)
    return text.format(**values) if values else text


def N_(message: str) -> str:
    """``message`` unchanged: marks prose kept in a table (annotate/models) for the catalogue;
    the view shows it with ``translated``."""
    return message


def translated(text: str) -> str:
    """``text`` (an ``N_`` message) in the current language."""
    return catalogue(current()).get(text, text)
