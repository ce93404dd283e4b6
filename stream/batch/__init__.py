"""Scale-out on Ray: many files, and long files split into segments, one fake identity per person.

    run_batch(["archive/"], "out/", Options(seed=7))       # or: ideud-video batch archive/ --out out/

Work units (Ray tasks, retried by Ray when a worker dies; every one writes
through a temp file renamed into place, so a retry never duplicates output):

* probe:   demux the video packets (no decoding): frame count, every frame's
           pts, the keyframes; plan the segments.
* whole:   a short file (or an image) is one task: `pipeline.deidentify`, the
           very code a single-process run uses, so the output is the same bytes.
* pass 1:  per segment, detect + track + landmarks only (`Options.track_only`); with the
           privacy guard on, also render, so that the guard picks each track's new face
           over the segment plus a pre-roll of `overlap` seconds that starts at
           an earlier keyframe, inside the previous segment.
* stitch:  (driver) in each pre-roll the tracks of segment k and those of
           segment k-1 saw the same frames: tracks are matched on IoU over the
           frames either one was present (Hungarian), merged into global tracks
           (union-find), and each global track draws one seed from the run's
           generator (`Options.seed`), in order of first appearance.
* pass 2:  per segment the full pipeline from the same keyframe, with pass 1's
           detections replayed instead of detecting again (they go from task
           to task through Ray's object store, not via the driver): the
           segment's tracks are spawned again at the same frames and
           `Tracker.seed_for` hands each the seed of its global track. The
           pre-roll warms tracker, landmark smoothing and the ID fit and is
           not written; the segment's own frames are encoded into an
           intermediate file (every segment starts with a keyframe).
* concat:  the encoded segments are stream-copied, one after another, into the
           output with the input's audio (copied too): nothing is re-encoded
           twice, the output has the input's frame count and pts.

The driver appends one JSON line per finished file to `OUT/ideud-manifest.jsonl`:
done (size and SHA-256 of the first 64 KiB of the output, frames, tracks)
or failed (one-line error). A re-run skips a file whose last record is done
with the same pipeline options and whose output still has that size and
header hash. Nothing derived from a face's identity is written, and nothing that
helps undo the de-identification either: no seed, no noise vector, no hash of one.

Paths must be the same on the driver and every worker (a shared filesystem).

One job per module: `inputs` (files, folders, globs -> items), `plan` (probe, segments), `stitch`
(global tracks and seeds), `work` (the Ray tasks), `manifest` (the JSON-lines record, skip checks),
`driver` (`run_batch` and the `BatchDriver` that schedules the tasks).
"""
from ideud.stream.batch.driver import WORK_DIR, BatchDriver, BatchResult, one_line, run_batch
from ideud.stream.batch.inputs import VIDEO_EXTENSIONS, Item, expand_inputs
from ideud.stream.batch.manifest import (HEADER_BYTES, MANIFEST, file_stamp, is_done, options_fingerprint,
                                         read_manifest)
from ideud.stream.batch.plan import Plan, Segment, SegmentError, make_plan, plan_segments, probe
from ideud.stream.batch.stitch import STITCH_MIN_SCORE, SeedPolicy, stitch

__all__ = ["BatchDriver", "BatchResult", "HEADER_BYTES", "Item", "MANIFEST", "Plan", "STITCH_MIN_SCORE", "SeedPolicy",
           "Segment", "SegmentError", "VIDEO_EXTENSIONS", "WORK_DIR", "expand_inputs", "file_stamp", "is_done",
           "make_plan", "one_line", "options_fingerprint", "plan_segments", "probe", "read_manifest", "run_batch",
           "stitch"]
