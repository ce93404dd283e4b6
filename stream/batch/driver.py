"""The driver: plans every file, schedules its Ray tasks by priority, stitches, concatenates, and keeps
the manifest. `run_batch` sets up Ray and the output folder; `BatchDriver` runs the schedule."""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import heapq
import itertools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ideud.stream import deep
from ideud.stream.batch.inputs import Item, expand_inputs
from ideud.stream.batch.manifest import MANIFEST, Manifest, is_done, options_fingerprint, read_manifest
from ideud.stream.batch.plan import Plan, SegmentError
from ideud.stream.batch.stitch import stitch
from ideud.stream.batch.work import remote_functions, segment_ext
from ideud.stream.encode import codec_for
from ideud.stream.errors import InputError, OutputError, UsageError

WORK_DIR = ".ideud-batch"  # intermediate segments, inside OUT
# what a global track shows in the report; a seed or noise never does (with it Step I could be undone)
REPORT_TRACK_KEYS = ("id", "segments", "first_frame", "last_frame")


@dataclass
class BatchResult:
    done: list = field(default_factory=list)  # rel paths processed in this run
    failed: dict = field(default_factory=dict)  # rel -> one-line error
    skipped: list = field(default_factory=list)  # rel paths already done (manifest + output check)
    reports: dict = field(default_factory=dict)  # rel -> report
    frames: int = 0  # input frames of the files done in this run
    wall_s: float = 0.0
    manifest: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


def one_line(e: BaseException) -> str:
    """The user-facing one-line error of a failed task."""
    cause = getattr(e, "cause", None)
    if cause is not None and cause is not e:
        e = cause
    if isinstance(e, (InputError, OutputError, UsageError)):
        msg = str(e)
    else:
        msg = f"{type(e).__name__}: {e}"
    line = next((s.strip() for s in msg.splitlines() if s.strip()), type(e).__name__)
    return line[:300]


@dataclass
class FileJob:
    """One input file on its way through plan -> (whole | pass 1 -> stitch -> pass 2 -> concat)."""

    item: Item
    key: str
    seg_dir: str
    seg_ext: str = ".mov"
    options: Optional[object] = None  # the run's Options with the codec this file's output holds (auto resolved)
    plan: Optional[Plan] = None
    pass1: dict = field(default_factory=dict)
    detections: dict = field(default_factory=dict)  # segment -> ObjectRef of pass 1's detections
    pass2: dict = field(default_factory=dict)
    globals: list = field(default_factory=list)
    whole: bool = False  # redone whole after a SegmentError
    t0: float = 0.0
    tasks: list = field(default_factory=list)  # task keys (for attempt counts)

    def seg_path(self, k: int) -> str:
        return os.path.join(self.seg_dir, f"seg{k:05d}{self.seg_ext}")


@dataclass
class Task:
    """A task waiting for a free slot; heap order is (priority, order of submission)."""

    priority: tuple
    order: int
    fn: object = field(compare=False)
    opts: dict = field(compare=False)
    args: tuple = field(compare=False)
    key: str = field(compare=False)  # the file's job key
    stage: str = field(compare=False)  # plan | whole | pass1 | pass2 | concat
    segment: Optional[int] = field(compare=False, default=None)

    def __lt__(self, other: "Task") -> bool:
        return (self.priority, self.order) < (other.priority, other.order)


def cleanup_parts(dst: str) -> None:
    """Temp files a killed attempt left beside the output."""
    folder, name = os.path.split(dst)
    stem, ext = os.path.splitext(name)
    for p in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.*.part{glob.escape(ext)}")):
        if fnmatch.fnmatch(os.path.basename(p), f".{stem}.????????????.part{ext}"):
            try:
                os.remove(p)
            except OSError:
                pass


class BatchDriver:
    """Runs the files' tasks on Ray, at most `slots` at once, and records each finished file."""

    def __init__(self, ray, options, out_abs: str, manifest: Manifest, result: BatchResult, *, slots: int,
                 segment_seconds: float, overlap_seconds: float, max_retries: int, gpus_per_worker: float,
                 progress: bool, on_poll: Optional[Callable[[dict], None]], poll_s: float):
        self.ray, self.options, self.out_abs = ray, options, out_abs
        self.manifest, self.result = manifest, result
        self.fingerprint = options_fingerprint(options)
        self.slots, self.on_poll, self.poll_s = slots, on_poll, poll_s
        self.segment_seconds, self.overlap_seconds = segment_seconds, overlap_seconds
        self.remote = remote_functions()
        self.tracker = self.remote["progress"].remote()
        self.task_opts = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        if gpus_per_worker > 0:
            self.task_opts["num_gpus"] = gpus_per_worker
        self.light_opts = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        self.jobs: dict[str, FileJob] = {}
        self.ready: list[Task] = []  # heap
        self.pending: dict = {}  # ObjectRef -> Task
        self.order = itertools.count()
        self.total_work = 0  # frames over all passes of the planned files (the progress bar's total)
        self.files_total = 0
        self.starts: dict = {}  # task key -> how often it started (from the progress actor)
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="frame", dynamic_ncols=True, file=sys.stderr, desc="batch")

    # ------------------------------------------------------------------ scheduling

    def push(self, priority: tuple, fn, opts: dict, args: tuple, key: str, stage: str,
             segment: Optional[int] = None) -> None:
        heapq.heappush(self.ready, Task(priority, next(self.order), fn, opts, args, key, stage, segment))

    def add_files(self, items: list[Item]) -> None:
        self.files_total = len(items)
        for n, it in enumerate(items):
            key = hashlib.sha1(it.rel.encode()).hexdigest()[:12]
            # the segments hold the codec the output's container takes (--codec auto: VP9 for .webm)
            codec = codec_for(self.options.codec, it.dst)
            if self.options.codec == "auto":  # (an HDR source of more than 8 bits: 10-bit HEVC, stream/deep.py)
                codec = deep.auto_codec_of_file(codec, it.src, it.dst)
            opts = dataclasses.replace(self.options, codec=codec)
            self.jobs[key] = FileJob(it, key, seg_dir=os.path.join(self.out_abs, WORK_DIR, key),
                                     seg_ext=segment_ext(opts.codec), options=opts)
            self.push((0, n), self.remote["plan"], self.light_opts,
                      (it.src, self.segment_seconds, self.overlap_seconds), key, "plan")

    def cancel_file(self, key: str) -> None:
        """Cancel a file's tasks still running (it failed, or is redone whole)."""
        for ref, task in list(self.pending.items()):
            if task.key == key:
                self.ray.cancel(ref, force=False)
                del self.pending[ref]

    def cancel_all(self) -> None:
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass

    def attempts(self, job: FileJob) -> int:
        return max([self.starts.get(t, 1) for t in job.tasks] or [1])

    # ------------------------------------------------------------------ stage results

    def on_plan(self, job: FileJob, plan: Plan) -> None:
        job.plan = plan
        job.t0 = time.perf_counter()
        self.total_work += plan.work_frames
        if self.bar is not None:
            self.bar.total = self.total_work
            self.bar.refresh()
        if not plan.segments:
            return self.submit_whole(job)
        os.makedirs(job.seg_dir, exist_ok=True)
        for seg in plan.segments:
            tkey = f"{job.key}:p1:{seg.index}"
            job.tasks.append(tkey)
            self.push((1, -seg.window), self.remote["pass1"], self.task_opts,
                      (job.item.src, seg, self.options, self.tracker, tkey), job.key, "pass1", seg.index)

    def submit_whole(self, job: FileJob) -> None:
        tkey = f"{job.key}:whole"
        job.tasks.append(tkey)
        self.push((1, -job.plan.frames), self.remote["whole"], self.task_opts,
                  (job.item.src, job.item.dst, self.options, self.tracker, tkey), job.key, "whole")

    def on_pass1(self, job: FileJob, k: int, res: dict) -> None:
        job.pass1[k] = res
        segs = job.plan.segments
        if len(job.pass1) < len(segs):
            return
        job.globals, per_seg = stitch(segs, [job.pass1[i] for i in range(len(segs))], self.options.seed)
        for seg in segs:
            tkey = f"{job.key}:p2:{seg.index}"
            job.tasks.append(tkey)
            self.push((1, -seg.window), self.remote["pass2"], self.task_opts,
                      (job.item.src, seg, job.options, per_seg[seg.index], job.detections[seg.index],
                       job.seg_path(seg.index), self.tracker, tkey), job.key, "pass2", seg.index)

    def on_pass2(self, job: FileJob, k: int, res: dict) -> None:
        job.pass2[k] = res
        job.detections.pop(k, None)
        n = len(job.plan.segments)
        if len(job.pass2) < n:
            return
        self.push((1, 0), self.remote["concat"], self.light_opts,
                  (job.item.src, [job.seg_path(i) for i in range(n)], job.item.dst, job.options, job.plan.frames),
                  job.key, "concat")

    def on_whole(self, job: FileJob, rep: dict) -> None:
        rep["segments"] = []
        self.finish(job, self.done_record(job, rep.pop("stamp"), rep, 1), rep)

    def on_concat(self, job: FileJob, res: dict) -> None:
        segs = [{**job.pass2[i], "pass1_wall_s": job.pass1[i].get("wall_s")} for i in range(len(job.plan.segments))]
        # the global tracks' public fields only: never a seed (job.globals is internal)
        rep = {"frames": res["frames"], "tracks": [{k: g[k] for k in REPORT_TRACK_KEYS if k in g} for g in job.globals],
               "segments": segs, "face_frames": sum(s["face_frames"] for s in segs),
               "fallback_face_frames": sum(s["fallback_face_frames"] for s in segs),
               "failed_frames": sum(s["failed_frames"] for s in segs),
               "unmatched_spawns": sum(s["unmatched_spawns"] for s in segs)}
        self.finish(job, self.done_record(job, res, rep, len(segs)), rep)

    def redo_whole(self, job: FileJob, cause: SegmentError) -> None:
        """Frames do not map cleanly onto segments: redo this file in one piece."""
        job.whole = True
        self.cancel_file(job.key)
        shutil.rmtree(job.seg_dir, ignore_errors=True)
        self.total_work += job.plan.frames
        job.plan = Plan(frames=job.plan.frames, reason=f"segments: {one_line(cause)}")
        self.submit_whole(job)

    # ------------------------------------------------------------------ records

    def relative_output(self, job: FileJob) -> str:
        return os.path.relpath(job.item.dst, self.out_abs)

    def done_record(self, job: FileJob, stamp: dict, rep: dict, segments: int) -> dict:
        tracks = rep.get("tracks", [])
        return {"input": job.item.rel, "output": self.relative_output(job), "status": "done",
                "size": stamp["size"], "header_sha256": stamp["header_sha256"], "frames": rep.get("frames", 0),
                "segments": segments, "tracks": len(tracks),
                "fallback_face_frames": rep.get("fallback_face_frames", 0),
                "failed_frames": rep.get("failed_frames", 0), "attempts": self.attempts(job),
                "wall_s": round(time.perf_counter() - job.t0, 3), "options": self.fingerprint,
                **({"redone_whole": job.plan.reason} if job.whole else {})}

    def fail(self, job: FileJob, error: str) -> None:
        self.finish(job, {"input": job.item.rel, "output": self.relative_output(job), "status": "failed",
                          "error": error, "options": self.fingerprint, "attempts": self.attempts(job)}, None)

    def finish(self, job: FileJob, rec: dict, report: Optional[dict]) -> None:
        rel = job.item.rel
        try:  # how often this file's tasks started (a worker killed mid-task: 2)
            self.starts.update(self.ray.get(self.tracker.snapshot.remote(), timeout=10)["starts"])
            rec["attempts"] = self.attempts(job)
        except Exception:
            pass
        self.manifest.append(rec)
        if rec["status"] == "done":
            self.result.done.append(rel)
            self.result.frames += rec.get("frames", 0)
            if report is not None:
                self.result.reports[rel] = report
        else:
            self.result.failed[rel] = rec["error"]
        cleanup_parts(job.item.dst)
        shutil.rmtree(job.seg_dir, ignore_errors=True)
        self.jobs.pop(job.key, None)
        self.cancel_file(job.key)  # a failed file's other tasks are no longer needed

    # ------------------------------------------------------------------ the loop

    def poll(self, callback: Optional[Callable[[dict], None]]) -> None:
        try:
            snap = self.ray.get(self.tracker.snapshot.remote(), timeout=10)
        except Exception:
            return
        self.starts.update(snap["starts"])
        snap.update(files_done=len(self.result.done) + len(self.result.failed), files_total=self.files_total)
        if self.bar is not None:
            self.bar.n = min(snap["frames"], self.bar.total or snap["frames"])
            self.bar.set_postfix_str(f"files {snap['files_done']}/{self.files_total}", refresh=True)
        if callback is not None:
            callback(snap)

    def submit_ready(self) -> None:
        while self.ready and len(self.pending) < self.slots:
            task = heapq.heappop(self.ready)
            job = self.jobs.get(task.key)
            if job is None or (job.whole and task.stage != "whole"):
                continue  # its file failed, or is being redone whole
            ref = task.fn.options(**task.opts).remote(*task.args)
            if isinstance(ref, list):  # pass 1: (summary for the driver, detections for pass 2)
                job.detections[task.segment] = ref[1]
                ref = ref[0]
            self.pending[ref] = task

    def collect(self, ref) -> None:
        task = self.pending.pop(ref, None)
        job = None if task is None else self.jobs.get(task.key)
        if job is None:
            return
        try:
            value = self.ray.get(ref)
        except Exception as e:  # the task failed for good (its retries are spent)
            cause = getattr(e, "cause", None)
            if isinstance(cause, SegmentError) and not job.whole and task.stage != "plan":
                self.redo_whole(job, cause)
            else:
                self.fail(job, one_line(e))
            return
        handlers = {"plan": lambda: self.on_plan(job, value), "whole": lambda: self.on_whole(job, value),
                    "pass1": lambda: self.on_pass1(job, task.segment, value),
                    "pass2": lambda: self.on_pass2(job, task.segment, value),
                    "concat": lambda: self.on_concat(job, value)}
        try:
            handlers[task.stage]()
        except Exception as e:  # stitching, or a file system error on the driver
            self.fail(job, one_line(e))

    def run(self) -> None:
        last_poll = 0.0
        while self.ready or self.pending:
            self.submit_ready()
            if not self.pending:
                continue
            finished, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=self.poll_s)
            for ref in finished:
                self.collect(ref)
            now = time.perf_counter()
            if now - last_poll >= self.poll_s:
                last_poll = now
                self.poll(self.on_poll)
        self.poll(None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def connect(ray, address: Optional[str], workers: Optional[int]) -> bool:
    """Use the Ray instance this process is connected to, else `address`, else a local one; True if started here."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return True


def task_slots(ray, workers: Optional[int], gpus_per_worker: float) -> int:
    """Tasks at once: `workers`, at most what the cluster's CPUs (or GPUs with `gpus_per_worker`) allow."""
    res = ray.cluster_resources()
    if gpus_per_worker > 0:
        cap = int(res.get("GPU", 0) / gpus_per_worker)
        if cap < 1:
            raise UsageError(f"the cluster has {res.get('GPU', 0):g} GPUs; --gpus-per-worker {gpus_per_worker:g} "
                             "leaves no room for a worker")
    else:
        cap = int(res.get("CPU", 1))
    return max(1, min(workers or cap, cap))


def run_batch(inputs: list[str], out_dir: str, options=None, *, address: Optional[str] = None,
              workers: Optional[int] = None, gpus_per_worker: float = 0.0, segment_seconds: float = 60.0,
              overlap_seconds: float = 3.0, max_retries: int = 3, ext: Optional[str] = None, progress: bool = False,
              on_poll: Optional[Callable[[dict], None]] = None, poll_s: float = 0.25) -> BatchResult:
    """De-identify every input file on Ray; see the package docstring.

    Uses the Ray instance this process is connected to, else `address` ("auto", "ray://host:port"),
    else starts a local one with `workers` CPUs. At most `workers` tasks run at once (default: what
    the cluster's CPUs, or GPUs with `gpus_per_worker`, allow). `on_poll(snapshot)` is called from
    the driver loop (tests use it to kill a worker mid-task).
    """
    try:
        import ray
    except ImportError:
        raise UsageError("batch needs Ray: pip install 'ideud-video[cluster]'") from None
    from ideud.stream.pipeline import Options

    options = options or Options()
    t_start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    out_abs = os.path.abspath(out_dir)
    items = expand_inputs(inputs, out_abs, ext)
    manifest = Manifest(os.path.join(out_abs, MANIFEST))
    result = BatchResult(manifest=manifest.path)
    fingerprint = options_fingerprint(options)
    previous = read_manifest(manifest.path)
    todo = []
    for it in items:
        if is_done(previous.get(it.rel), it.dst, fingerprint):
            result.skipped.append(it.rel)
        else:
            todo.append(it)
    started_ray = False
    driver = None
    try:
        if not todo:
            return result
        started_ray = connect(ray, address, workers)
        slots = task_slots(ray, workers, gpus_per_worker)
        driver = BatchDriver(ray, options, out_abs, manifest, result, slots=slots, segment_seconds=segment_seconds,
                             overlap_seconds=overlap_seconds, max_retries=max_retries,
                             gpus_per_worker=gpus_per_worker, progress=progress, on_poll=on_poll, poll_s=poll_s)
        driver.add_files(todo)
        driver.run()
        return result
    except KeyboardInterrupt:
        if driver is not None:
            driver.cancel_all()
        raise
    finally:
        if driver is not None:
            driver.close()
        manifest.close()
        result.wall_s = round(time.perf_counter() - t_start, 3)
        if started_ray:
            ray.shutdown()
        try:
            os.rmdir(os.path.join(out_abs, WORK_DIR))
        except OSError:
            pass
