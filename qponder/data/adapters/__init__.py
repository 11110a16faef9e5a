"""Dataset adapters: one module per benchmark's original release format.

``ADAPTERS`` maps each catalogue name to its ``read(ctx) -> AdapterResult`` function.
"""

from __future__ import annotations

from collections.abc import Callable

from qponder.data.adapters import (
    agiqa,
    biq2021,
    csiq,
    deqa,
    generic,
    icbcbicc,
    kadid,
    koniq,
    livec,
    pipal,
    spaq,
    synthetic,
    tid2013,
)
from qponder.data.adapters.base import AdapterContext, AdapterResult

ADAPTERS: dict[str, Callable[[AdapterContext], AdapterResult]] = {
    "koniq": koniq.read,
    "spaq": spaq.read,
    "kadid": kadid.read,
    "pipal": pipal.read,
    "livec": livec.read,
    "agiqa3k": agiqa.read,
    "csiq": csiq.read,
    "tid2013": tid2013.read,
    "biq2021": biq2021.read,
    "deqa": deqa.read,
    "icbcbicc": icbcbicc.read,
    "generic": generic.read,
    "synthetic": synthetic.read,
}

__all__ = ["ADAPTERS", "AdapterContext", "AdapterResult"]
