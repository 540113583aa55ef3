"""References to a user's own model: ``"package.module:factory"``, checked without importing JAX.

A reference names a callable ``factory(input_shape: tuple[int, ...], num_classes: int)`` returning a
``flax.linen.Module`` that pate uses as teacher or student (``ModelConfig(kind="custom", factory=...)``
in :mod:`pate.models`, which imports and checks it). The contract is the built-in models':

* pate calls it as ``module.init(key, x)`` and ``module.apply({"params": params}, x)``, with ``x`` a
  float32 batch ``(N, *input_shape)`` of normalised inputs (any ``N``, 1 included) and no other
  argument: no ``train``/``deterministic`` flag, no RNG but the ``params`` key of ``init``, so no
  dropout (the check at configuration time applies and differentiates the module this way, from
  shapes alone, and refuses one that fails);
* it returns logits of shape ``(N, num_classes)`` (floats; pate applies the softmax);
* its only variable collection is ``params`` (no batch statistics or other mutable state), and it is
  a pure function of them: teachers are ``vmap``-ed over their stacked parameters.

The module named must be importable wherever the model is rebuilt: when the teachers vote
(``label-and-distill``, from the teachers file) and wherever the student is loaded (``pate predict``,
:func:`pate.export.load_student`); the files store the reference, not the code. Loading a file that
names a custom model imports that module and calls the factory: treat such a file like code.

This module imports neither JAX nor flax, so that commands can check a reference's form quickly.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from pate.errors import PateError

#: How a reference is written, for messages and help texts.
REFERENCE_FORM = "package.module:factory"

_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def is_model_reference(text: object) -> bool:
    """Whether ``text`` is meant as a reference (a string holding ``:``), well formed or not."""
    return isinstance(text, str) and ":" in text


def is_well_formed(text: object) -> bool:
    """Whether ``text`` is ``module:attribute`` with dotted Python names on both sides of one ``:``."""
    if not isinstance(text, str) or text.count(":") != 1:
        return False
    module, attribute = text.split(":")
    return bool(_DOTTED_NAME.match(module) and _DOTTED_NAME.match(attribute))


def check_reference(text: object, field: str = "factory") -> str:
    """Return ``text`` if well formed, else raise a :class:`PateError` naming ``field``."""
    if not is_well_formed(text):
        raise PateError(
            f"`{field}` {text!r}: expected a model factory as {REFERENCE_FORM} (dotted Python "
            "names on both sides of one ':')"
        )
    return text


def load_factory(reference: str, field: str = "factory") -> Callable:
    """Import the callable ``reference`` names; each failure is a one-line :class:`PateError`
    naming ``field``."""
    check_reference(reference, field)
    module_name, attribute = reference.split(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module's own code raises
        raise PateError(
            f"`{field}` {reference!r}: cannot import module {module_name} ({one_line(exc)}); it "
            "must be importable where pate runs"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise PateError(
                f"`{field}` {reference!r}: module {module_name} has no attribute {attribute}"
            ) from None
    if not callable(target):
        raise PateError(
            f"`{field}` {reference!r}: is a {type(target).__name__}, expected a callable "
            "factory(input_shape, num_classes) returning a flax.linen.Module"
        )
    return target


def one_line(exc: BaseException) -> str:
    """``exc`` as ``Type: first line of its message``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
