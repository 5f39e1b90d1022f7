"""A chapter's set-up in one call: the node context and typed loaders of the upstream artifacts.

Every SALVE chapter starts from the same things -- the cached activations, the
backbone's record, the trained autoencoder, the features Discover found -- and
each is read from the node that produced it. :class:`Chapter` gives them names
and loads each one the first time it is used, so a notebook's set-up is::

    ch = Chapter(profile, node, upstream)          # context + plotting style
    acts, sae, found = ch.acts, ch.sae, ch.found   # only what the chapter needs

Nothing here computes anything new; it only finds and loads.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from .. import figures
from ..method.activations import Activations, load_activations
from ..method.data import ImageSet, dataset_from_spec
from ..method.models import SalveNet, load_model
from . import NodeContext
from ..method.sae import SparseAutoencoder, load_sae

__all__ = ["Chapter"]


class Chapter:
    """The running node's :class:`~salve_utils.pipeline.NodeContext` plus lazy, typed upstream loaders.

    Parameters
    ----------
    profile, node, upstream : the reserved parameters the runner injects
    style : apply the report's plotting style (default ``True``)

    Attributes (each loaded on first use)
    -------------------------------------
    ctx : the node context (record artifacts, save tables)
    acts : :class:`~salve_utils.method.activations.Activations` of the ``backbone`` role
    spec : the backbone chapter's record (arch, dataset, sizes, classes)
    model : the trained backbone (:class:`~salve_utils.method.models.SalveNet`)
    val : the validation images, as the backbone was evaluated on them
    sae, sae_meta : the chosen autoencoder of the ``autoencoder`` role and its record
    found : Discover's record (dominant features and their signs, the Tower)
    palette : a fixed colour per class
    """

    def __init__(self, profile: str, node: str, upstream: dict[str, str] | None = None, style: bool = True,
                 edition: str | None = None) -> None:
        self.ctx = NodeContext(profile, node, upstream)
        self._prefix = f"{edition}." if edition else ""
        self._edition = edition
        if style:
            figures.set_style()

    def of_edition(self, edition: str) -> "Chapter":
        """The same loaders for one edition, read by a report node through its roles ``<edition>.<role>``."""
        view = Chapter.__new__(Chapter)
        view.ctx, view._prefix, view._edition = self.ctx, f"{edition}.", edition
        return view

    def _artifact(self, role: str, name: str):
        return self.ctx.artifact(self._prefix + role, name)

    @cached_property
    def acts(self) -> Activations:
        return load_activations(self._artifact("backbone", "activations"))

    @cached_property
    def spec(self) -> dict[str, Any]:
        return self.ctx.read_json(self._prefix + "backbone", "backbone")

    @cached_property
    def model(self) -> SalveNet:
        return load_model(self._artifact("backbone", "checkpoint"))

    @cached_property
    def val(self) -> ImageSet:
        return dataset_from_spec(self.spec, "val")

    @cached_property
    def _sae(self) -> tuple[SparseAutoencoder, dict[str, Any]]:
        return load_sae(self._artifact("autoencoder", "sae"))

    @property
    def sae(self) -> SparseAutoencoder:
        return self._sae[0]

    @property
    def sae_meta(self) -> dict[str, Any]:
        return self._sae[1]

    @cached_property
    def found(self) -> dict[str, Any]:
        return self.ctx.read_json(self._prefix + "features", "features")

    @cached_property
    def palette(self) -> dict[str, tuple[float, float, float]]:
        return figures.class_palette(self.acts.classes)

    @property
    def edition(self) -> str | None:
        return self._edition or self.ctx.edition

    def table(self, name: str):
        """A result table of this chapter's edition."""
        return self.ctx.read_table(name, self.edition)

    def tag(self, df):
        """``df`` with the columns every result table carries: backbone architecture and SAE seed."""
        return df.assign(backbone=self.spec["arch"], seed=int(self.sae_meta["seed"]))
