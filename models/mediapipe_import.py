"""`import mediapipe` without the matplotlib.pyplot import it does on the side.

mediapipe's package init loads its drawing helpers, which import matplotlib.pyplot (~0.4 s of a run's
start, for plotting nothing here). While mediapipe loads, a stand-in sits in pyplot's place that
imports the real module the first time anything is read from it; afterwards it is taken out again,
so everyone else's `import matplotlib.pyplot` is the real one.
"""
from __future__ import annotations

import importlib
import sys
import types

PYPLOT = "matplotlib.pyplot"


class _PyplotOnFirstUse(types.ModuleType):
    def __getattr__(self, name):
        if sys.modules.get(PYPLOT) is self:
            del sys.modules[PYPLOT]
        return getattr(importlib.import_module(PYPLOT), name)


def import_mediapipe() -> types.ModuleType:
    if "mediapipe" in sys.modules or PYPLOT in sys.modules:
        import mediapipe

        return mediapipe
    stand_in = _PyplotOnFirstUse(PYPLOT)
    sys.modules[PYPLOT] = stand_in
    try:
        import mediapipe
    finally:
        if sys.modules.get(PYPLOT) is stand_in:
            del sys.modules[PYPLOT]
    return mediapipe
