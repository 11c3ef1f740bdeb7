"""The shared look of the figures: the colours of our rows and the paper's, and the one way a figure is finished
(its title, then a tight layout)."""
from __future__ import annotations

_OURS_COLOR = "#d62728"
_PAPER_COLOR = "#7f7f7f"
_PAPER_MAIN_COLOR = "#1f77b4"


def finish(fig, title=None, title_size=10, **layout):
    """``fig.suptitle(title, fontsize=title_size)`` when ``title`` is given (``title_size=None``: matplotlib's
    default size), then ``fig.tight_layout(**layout)``; returns ``fig``."""
    if title:
        if title_size is None:
            fig.suptitle(title)
        else:
            fig.suptitle(title, fontsize=title_size)
    fig.tight_layout(**layout)
    return fig
