"""onnxruntime session options on the CPU: the privacy guard's recognizers, CenterFace (stream/detect.py).

Two intra-op threads: the guard's EdgeFace and dlib batches run on this process's main thread, which
bounds a default run since the warp moved here (fifty-first session), while the restore process waits a
third of the run. A batch of 4 EdgeFace chips took 13.9 ms on one thread and 9.7 on two, 3 dlib chips
17.6 and 10.0 (2-core AMD EPYC), and the embeddings are the same bit for bit. No busy-waiting between
runs: the other stages and the restore process need the cores then.
"""
from __future__ import annotations

import os

RECOGNIZER_THREADS = max(1, min(2, os.cpu_count() or 1))


def cpu_session_options(threads: int):
    """SessionOptions with `threads` intra-op threads, one inter-op thread, and no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so
