"""Argument checks for every method function, in one place (as scikit-learn's ``utils.validation``).

The helpers refuse what would poison a result before they compute anything:

- a wrong *type* (a list where a tensor is needed, float labels, a name where an
  index is needed) raises :class:`InputTypeError`, a ``TypeError``;
- a wrong *value* (shape, an empty array, NaN or infinity, an index out of range,
  a class without samples) raises a ``ValueError``;
- a legal but suspicious value (images far outside ``[0, 1]``) gives a ``UserWarning``.

Every message names the argument and says what to do. Integer and boolean arrays
where floats are expected are converted to the default float dtype, as
scikit-learn's ``check_array(X, dtype=FLOAT_DTYPES)`` does; complex ones are refused.
Checks cost at most one pass over a tensor (``isfinite().all()``, or one ``aminmax``
for images); counting the bad values happens only on the way to an error.

>>> import torch
>>> check_array(torch.tensor([[1, 2]]), "weight", ("K", "M"))
tensor([[1., 2.]])
>>> check_array(torch.zeros(0, 4), "acts", ("N", "M"))
Traceback (most recent call last):
...
ValueError: acts is empty, shape (0, 4): N must be at least 1
>>> check_index("church", "target", 3)
Traceback (most recent call last):
...
salve_utils.method.validation.InputTypeError: target must be an int index in [0, 3), got str 'church'
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from .data import class_index

__all__ = [
    "IMAGE_RANGE_SLACK",
    "InputTypeError",
    "check_array",
    "check_choice",
    "check_classes_present",
    "check_decoder_column",
    "check_head",
    "check_images",
    "check_index",
    "check_int",
    "check_labels",
    "check_names",
    "check_strengths",
    "resolve_class",
]

#: Images whose values leave ``[-slack, 1 + slack]`` draw a warning: 0..255 pixels, or images normalised twice.
IMAGE_RANGE_SLACK = 0.5
_NAN_FIX = "a NaN or infinity here flows into every result downstream; find where it came from and recompute it"
_DECODER_FIX = ("a non-finite decoder column comes from an autoencoder whose training diverged: retrain it "
                "(lower lr or l1) or pick another feature")


class InputTypeError(TypeError, ValueError):
    """An argument of the wrong type.

    A ``TypeError``, and also a ``ValueError`` so that code written when these
    errors were ``ValueError`` keeps catching them (as scikit-learn's
    ``NotFittedError`` is both a ``ValueError`` and an ``AttributeError``).
    """


def _shape(dims: Sequence[str], shape: Sequence[int | None]) -> str:
    """``("N", "M"), (None, 4)`` -> ``"(N, M=4)"``."""
    return "(" + ", ".join(d if s is None else f"{d}={s}" for d, s in zip(dims, shape)) + ")"


def _type_name(x: Any) -> str:
    return f"{type(x).__name__} {x!r}" if isinstance(x, (str, bool, int, float)) else type(x).__name__


def check_array(x: Any, name: str, dims: Sequence[str], shape: Sequence[int | None] | None = None, *,
                finite: bool = True, allow_empty: bool = False, fix: str = _NAN_FIX,
                kind: str = "tensor") -> torch.Tensor:
    """``x`` as a float tensor of the given shape, non-empty and finite, or a clear error.

    Parameters
    ----------
    x : the argument; must be a ``torch.Tensor``
    name : the argument's name, used in every message
    dims : one letter per dimension, e.g. ``("N", "M")``; fixes ``x.ndim``
    shape : the required size of each dimension (``None``: any size)
    finite : refuse NaN and infinities (one ``isfinite().all()`` pass)
    allow_empty : accept dimensions of size 0
    fix : what to do about non-finite values, appended to that message
    kind : what ``x`` is, for the shape message ("tensor", "float tensor")

    Returns
    -------
    ``x``, converted to the default float dtype when it holds integers or booleans.

    Raises
    ------
    InputTypeError
        ``x`` is not a tensor, or holds complex numbers.
    ValueError
        wrong number of dimensions or size, an empty dimension, NaN or infinity.

    Examples
    --------
    >>> check_array(torch.ones(2, 3), "weight", ("K", "M"), (None, 4))
    Traceback (most recent call last):
    ...
    ValueError: weight must be a tensor of shape (K, M=4), got (2, 3)
    >>> check_array(torch.tensor([1.0, float("nan")]), "bias", ("K",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bias holds NaN or infinite values in 1 of 2 entries (first: entry 1); a NaN or infinity here ...
    """
    shape = tuple(shape) if shape is not None else (None,) * len(dims)
    expected = _shape(dims, shape)
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor of shape {expected}, got {_type_name(x)}; "
                             "convert it with torch.as_tensor")
    if x.is_complex():
        raise InputTypeError(f"{name} must hold real numbers, got {x.dtype}")
    if x.ndim != len(dims) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
        raise ValueError(f"{name} must be a {kind} of shape {expected}, got {tuple(x.shape)}")
    if not allow_empty and x.numel() == 0:
        empty = ", ".join(d for d, n in zip(dims, x.shape) if n == 0)
        raise ValueError(f"{name} is empty, shape {tuple(x.shape)}: {empty} must be at least 1")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if finite and not bool(torch.isfinite(x).all()):
        _raise_not_finite(x, name, fix)
    return x


def _raise_not_finite(x: torch.Tensor, name: str, fix: str) -> None:
    """Count the bad rows (first dimension) or entries, only on the way to the error."""
    bad = ~torch.isfinite(x.detach())
    unit = "rows" if x.ndim > 1 else "entries"
    bad = bad.reshape(len(x), -1).any(1) if x.ndim > 1 else bad
    where = bad.nonzero().reshape(-1)
    raise ValueError(f"{name} holds NaN or infinite values in {len(where)} of {len(bad)} {unit} "
                     f"(first: {unit[:-1] if x.ndim > 1 else 'entry'} {int(where[0])}); {fix}")


def check_decoder_column(decoder_column: Any, m: int | None = None, name: str = "decoder_column") -> torch.Tensor:
    """A feature's decoder column ``c = D[:, l]``: a finite, non-empty (M,) tensor."""
    return check_array(decoder_column, name, ("M",), (m,), fix=_DECODER_FIX)


def check_head(weight: Any, decoder_column: Any = None, bias: Any = None, acts: Any = None,
               acts_name: str = "acts") -> tuple[torch.Tensor, ...]:
    """The edit's operands, checked against each other: head ``W`` (K, M), ``c`` (M,), ``b`` (K,), ``A`` (N, M).

    Each is :func:`check_array`-ed (tensor, shape, non-empty, finite; integers become
    floats); arguments left at ``None`` are skipped and returned as ``None``.

    Returns
    -------
    ``(weight, decoder_column, bias, acts)``

    Examples
    --------
    >>> check_head(torch.ones(2, 3), torch.ones(2))
    Traceback (most recent call last):
    ...
    ValueError: decoder_column must be a tensor of shape (M=3), got (2,)
    """
    weight = check_array(weight, "weight", ("K", "M"))
    k, m = weight.shape
    if decoder_column is not None:
        decoder_column = check_decoder_column(decoder_column, m)
    if bias is not None:
        bias = check_array(bias, "bias", ("K",), (k,))
    if acts is not None:
        acts = check_array(acts, acts_name, ("N", "M"), (None, m))
    return weight, decoder_column, bias, acts


def check_images(images: Any, name: str = "images", channels: int | None = 3) -> torch.Tensor:
    """Float images ``(N, C, H, W)``, non-empty and finite; a ``UserWarning`` when far outside ``[0, 1]``.

    The models normalise their input themselves (ImageNet mean and std), so images
    enter in ``[0, 1]``. Values beyond ``[-0.5, 1.5]`` (:data:`IMAGE_RANGE_SLACK`)
    are legal but almost surely a mistake: 0..255 pixels, or images normalised
    twice. One ``aminmax`` pass gives both the range and finiteness.

    Examples
    --------
    >>> check_images(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    salve_utils.method.validation.InputTypeError: images must be float images in [0, 1], got torch.uint8; ...
    """
    if isinstance(images, torch.Tensor) and not images.is_floating_point():
        raise InputTypeError(f"{name} must be float images in [0, 1], got {images.dtype}; "
                             f"convert uint8 images with {name}.float() / 255")
    images = check_array(images, name, ("N", "C", "H", "W"), (None, channels, None, None), finite=False,
                         kind="float tensor")
    lo, hi = (float(v) for v in torch.aminmax(images.detach()))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _raise_not_finite(images, name, "images must be finite pixel values in [0, 1]")
    if lo < -IMAGE_RANGE_SLACK or hi > 1 + IMAGE_RANGE_SLACK:
        warnings.warn(f"{name} range over [{lo:.3g}, {hi:.3g}], far outside [0, 1]: the model normalises its "
                      "input itself, so pass images scaled to [0, 1] (uint8 / 255), not 0..255 values or "
                      "images already normalised with a mean and std", UserWarning, stacklevel=3)
    return images


def check_labels(labels: Any, name: str, n: int, num_classes: int | None = None) -> torch.Tensor:
    """Integer class labels ``(N,)`` in ``[0, num_classes)``, as int64.

    Array-likes (lists, numpy arrays) are accepted; floating labels are refused
    (``InputTypeError``), as is a wrong length or a label out of range (``ValueError``).

    Examples
    --------
    >>> check_labels([0, 2], "labels", 2, num_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: labels must lie in [0, K=2), got values from 0 to 2
    """
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex():
        raise InputTypeError(f"{name} must hold integer class indices, got {labels.dtype}; convert with .long()")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape (N={n},), one label per sample, got {tuple(labels.shape)}")
    if n and num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, K={num_classes}), got values from {int(labels.min())} "
                         f"to {int(labels.max())}")
    return labels.long()


def check_classes_present(labels: torch.Tensor, name: str, num_classes: int,
                          classes: Sequence[str] | None = None) -> torch.Tensor:
    """Samples per class, ``(K,)``; a ``ValueError`` names the first class that has none.

    Examples
    --------
    >>> check_classes_present(torch.tensor([0, 0, 2]), "labels", 3, ["a", "church", "c"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: labels: class 'church' (index 1) has no samples; every class needs at least one ...
    """
    counts = torch.bincount(labels, minlength=num_classes)
    empty = (counts == 0).nonzero().reshape(-1)
    if len(empty):
        k = int(empty[0])
        cls = repr(classes[k]) if classes is not None else str(k)
        raise ValueError(f"{name}: class {cls} (index {k}) has no samples; every class needs at least one "
                         f"({len(empty)} of {num_classes} have none): pass the labels of a split that holds "
                         "every class, or a smaller num_classes")
    return counts


def check_index(value: Any, name: str, size: int | None = None, what: str = "index") -> int:
    """An int (or 1-element integer tensor) in ``[0, size)``; ``size=None`` only requires ``>= 0``.

    Booleans, floats and strings raise ``InputTypeError``; out of range, ``ValueError``.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    bound = f"[0, {size})" if size is not None else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int {what} in {bound}, got {_type_name(value)}")
    if value < 0 or (size is not None and value >= size):
        raise ValueError(f"{name} must be a {what} in {bound}, got {value!r}")
    return int(value)


def check_int(value: Any, name: str, low: int) -> int:
    """An int ``>= low`` (not a bool); ``InputTypeError`` for other types, ``ValueError`` below ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int >= {low}, got {_type_name(value)}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` that lists them."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_strengths(values: Any, name: str) -> torch.Tensor:
    """Edit strengths α as a 1-D float64 CPU tensor: a number or a 1-D sequence, non-empty, finite, ``>= 0``.

    Examples
    --------
    >>> check_strengths([0.0, 2.0], "alphas")
    tensor([0., 2.], dtype=torch.float64)
    """
    try:
        t = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputTypeError(f"{name} must be a number or a sequence of numbers, got {_type_name(values)}") from None
    if t.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one value")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{name} must be finite and >= 0 (α is a strength), got {values!r}")
    return t


def check_names(names: Sequence[str] | None, count: int, name: str) -> list | None:
    """``names`` as a list of exactly ``count`` class names (or ``None``)."""
    if names is not None and len(names) != count:
        raise ValueError(f"{name} must name all {count} classes, got {len(names)} names")
    return None if names is None else list(names)


def resolve_class(c: int | str, names: Sequence[str] | None, count: int, name: str = "classes") -> int:
    """Index of a class given by name (needs ``names``) or index, through :func:`salve_utils.method.data.class_index`.

    Examples
    --------
    >>> resolve_class("pump", ["church", "pump"], 2)
    1
    >>> resolve_class("pump", None, 2)
    Traceback (most recent call last):
    ...
    ValueError: classes: 'pump' is a name, but no class_names were given
    """
    if isinstance(c, str) and names is None:
        raise ValueError(f"{name}: {c!r} is a name, but no class_names were given")
    try:
        return class_index(names if names is not None else list(range(count)), c)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
