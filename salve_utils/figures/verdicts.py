"""The figure of every verdict at a glance: the paper's claims against the editions."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["verdict_grid"]

#: an edition's title wraps at spaces onto lines of at most this many characters (its column label)
_TITLE_CHARS = 24


def verdict_grid(claims: pd.DataFrame, titles: Sequence[str]):
    """All verdicts at a glance: claims (rows) x editions (columns), each cell coloured by its verdict's kind.

    ``claims`` is :func:`salve_utils.study.report.claims_by_edition`'s table; a cell shows the
    kind ("holds", "partly", ...) and stays blank ("—") where the edition does not measure the claim;
    each row is named by :func:`salve_utils.study.claims.claim_name`. ``titles`` name the columns of
    ``claims`` (``"<title>: verdict"``); as column labels they wrap at spaces onto lines of at most
    24 characters, so that long titles never overlap their neighbours.
    """
    from matplotlib.patches import Patch

    from ..study.claims import claim_name
    from ..study.report import VERDICT_COLOURS, verdict_kind

    kinds = [[verdict_kind(str(v)) for v in claims[f"{t}: verdict"]] for t in titles]
    fig, ax = plt.subplots(figsize=(1.9 * len(titles) + 2.5, 0.42 * len(claims) + 1.4))
    for j, column in enumerate(kinds):
        for i, kind in enumerate(column):
            if kind == "—":
                continue
            colour = VERDICT_COLOURS.get(kind, "white")
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            ax.text(j + 0.5, i + 0.5, kind, ha="center", va="center", fontsize=8)
    ax.set(xlim=(0, len(titles)), ylim=(len(claims), 0))
    labels = [textwrap.fill(t, _TITLE_CHARS, break_on_hyphens=False) for t in titles]  # wrapped at spaces only
    ax.set_xticks(np.arange(len(titles)) + 0.5, labels, fontsize=8)
    ax.set_yticks(np.arange(len(claims)) + 0.5, claims["claim"].map(claim_name), fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(handles=[Patch(facecolor=c, label=k) for k, c in VERDICT_COLOURS.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
