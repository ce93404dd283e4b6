"""`import mediapipe` without the matplotlib and sounddevice imports it does on the side.

mediapipe's package init loads its drawing helpers, which import matplotlib.pyplot, and its audio
tasks, which import sounddevice (~0.4 s of a run's start with pyplot, ~0.15 s more for matplotlib
itself and sounddevice, for plotting and recording nothing here). While mediapipe loads, stand-ins
sit in their places that import the real module the first time anything is read from them;
afterwards they are taken out again, so everyone else's imports of them are the real ones.
"""
from __future__ import annotations

import importlib
import sys
import types

PYPLOT = "matplotlib.pyplot"
STAND_INS = ("matplotlib", PYPLOT, "sounddevice")  # a package before its modules


class _OnFirstUse(types.ModuleType):
    def __getattr__(self, name):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def import_mediapipe() -> types.ModuleType:
    if "mediapipe" in sys.modules:
        import mediapipe

        return mediapipe
    stand_ins = {m: _OnFirstUse(m) for m in STAND_INS if m not in sys.modules}  # the real ones stay
    if "matplotlib" in stand_ins and PYPLOT in stand_ins:
        # `import matplotlib.pyplot as plt` reads `pyplot` from the package: the stand-in's
        stand_ins["matplotlib"].pyplot = stand_ins[PYPLOT]
    sys.modules.update(stand_ins)
    try:
        import mediapipe
    finally:
        for m, stand_in in stand_ins.items():
            if sys.modules.get(m) is stand_in:
                del sys.modules[m]
    return mediapipe
