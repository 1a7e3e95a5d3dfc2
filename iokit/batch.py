"""The batch job: read documents, summarise each with a model, write the summaries back.

::

    model_path = ensure_model(corpus, "out/summarizer.model")       # trained once, saved atomically
    run = summarize_corpus(corpus, model_path, "out", workers=4)    # -> out/summaries.jsonl

The output, ``summaries.jsonl``, has one line per document of the corpus, in the corpus's
order: ``{"id": ..., "summary": ...}``. Each line depends only on its document and the model,
so the file is byte-identical whatever the worker count, the task size or the order tasks
finish in.

How it runs:

* **Tasks.** The corpus is cut into tasks of ``docs_per_task`` consecutive documents (a byte
  range of whole lines, :class:`iokit.split.Piece`). A task travels as a path and two offsets;
  the worker reads its documents itself, through the kit's one record decoder, so a bad line
  is a :class:`CorpusError` naming the file and the line.
* **The model**, ``loads=``: ``"worker"`` (the default) loads it once per worker process, in
  the pool's initializer; ``"task"`` loads it in every task (what a job does when the task
  function opens the model itself); ``"fork"`` loads it once in the parent, before the pool
  forks its workers, which inherit it (Linux and macOS; the workers share its memory pages
  until they write to them).
* **Streaming, in order, atomic.** Each task writes its summaries as one piece file
  (``piece-00012.jsonl``, atomically) in a work folder inside the output folder and returns a
  small record; the parent never holds the summaries. When every piece is there, the parent
  copies them in order into ``summaries.jsonl`` (atomically: it appears whole or not at all)
  and removes the work folder.
* **Resumable.** The parent appends a line to the work folder's ``manifest.jsonl`` for each
  finished piece (its size and SHA-256), flushed to disk. A run that is killed (``kill -9``,
  a power cut) leaves the finished pieces and the manifest; run it again with the same
  settings and it checks them, skips them, and does only the rest. The result is the same
  bytes as an uninterrupted run. ``plan.json`` records what the pieces were made from (the
  corpus's size and modification time, the model's fingerprint, the cut points); when they
  differ, the old pieces are discarded and the run starts afresh.
* **One writer.** The run holds the output folder's single-writer lock
  (:func:`iokit.atomic.output_folder`): a second run into it fails at once, naming the first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from iokit.atomic import TMP_MARK, atomic_write, make_folder, output_folder, write_bytes_atomic
from iokit.corpus import decode_record, iter_documents, open_corpus
from iokit.errors import CorpusError, ParameterError, check_choice, check_positive
from iokit.parallel import WorkerPool, capped_note, worker_count
from iokit.progress import progress_bar
from iokit.split import Piece, document_ends
from iokit.summarize import Summarizer, load_summarizer, train_summarizer
from iokit.timing import MB

OUTPUT_NAME = "summaries.jsonl"
MODEL_NAME = "summarizer.model"
WORK_NAME = ".iokit-batch"
MANIFEST_NAME = "manifest.jsonl"
PLAN_NAME = "plan.json"
PLAN_FORMAT = "iokit-batch-plan-1"
LOADS = ("worker", "task", "fork")
DEFAULT_DOCS_PER_TASK = 16
COPY_BYTES = 1 << 20

# --------------------------------------------------------------------------- the model


def ensure_model(corpus, model_path, *, text_field: str = "text", progress: bool = False,
                 **train_kwargs) -> Path:
    """``model_path`` if a model file is there (used as it is), else a model trained on
    ``corpus`` and saved there atomically (once: the next call reuses it)."""
    model_path = Path(model_path)
    if model_path.is_file():
        return model_path
    path = open_corpus(corpus, text_field, progress=progress)
    model = train_summarizer((d.text for d in iter_documents(path, text_field)),
                             progress=progress, **train_kwargs)
    make_folder(model_path.parent, "the model's folder")
    return model.save(model_path)


_models: dict[str, Summarizer] = {}  # model path -> the model this process loaded for tasks


def load_worker_model(model_path: str) -> None:
    """The pool's initializer for ``loads="worker"``: load the model once in this worker."""
    _models[model_path] = load_summarizer(model_path)


def _model_for(task: BatchTask) -> tuple[Summarizer, float]:
    """The model a task uses, and the seconds it spent loading it (0 if it was loaded)."""
    if task.loads == "task":
        start = time.perf_counter()
        return load_summarizer(task.model_path), time.perf_counter() - start
    model = _models.get(task.model_path)
    if model is None:
        how = ("the pool's initializer (load_worker_model)" if task.loads == "worker" else
               "the parent before it forks its workers (start method 'fork')")
        raise ParameterError(f"{task.model_path}: no model loaded in process {os.getpid()}; "
                             f"with loads={task.loads!r} it is loaded by {how}.")
    return model, 0.0


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class BatchTask:
    """One task: summarise the documents in bytes ``start:end`` of ``path`` into piece
    ``index`` of ``work_dir``. Only these small fields travel to the worker."""

    index: int
    path: str
    start: int
    end: int
    model_path: str
    work_dir: str
    loads: str = "worker"
    text_field: str = "text"


@dataclass(frozen=True)
class PieceDone:
    """What one task did: its piece's size and checksum, who ran it, when, and how long it
    spent loading the model (0 unless loads="task")."""

    index: int
    docs: int
    in_bytes: int
    out_bytes: int
    sha256: str
    worker: int = 0
    start: float = 0.0
    end: float = 0.0
    load_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def piece_path(work_dir, index: int) -> Path:
    return Path(work_dir) / f"piece-{index:05d}.jsonl"


def summary_line(doc_id: str, summary: str) -> bytes:
    """One output line: ``{"id": ..., "summary": ...}`` and a newline, as UTF-8."""
    return (json.dumps({"id": doc_id, "summary": summary}, ensure_ascii=False)
            + "\n").encode("utf-8")


def summarize_piece(task: BatchTask) -> PieceDone:
    """The task: read the documents of one piece, summarise each, write the piece atomically."""
    start = time.time()
    model, load_s = _model_for(task)
    try:
        with open(task.path, "rb") as f:
            f.seek(task.start)
            raw = f.read(task.end - task.start)
    except OSError as exc:
        raise CorpusError(f"{task.path}: cannot read ({exc.strerror}); check the corpus and "
                          "its permissions.") from None
    digest, out_bytes, docs, offset = hashlib.sha256(), 0, 0, task.start
    with atomic_write(piece_path(task.work_dir, task.index), "wb") as out:
        cut = raw.split(b"\n")  # lines end at LF only, as for every reader of JSONL in the kit
        lines = [c + b"\n" for c in cut[:-1]] + ([cut[-1]] if cut[-1] else [])
        for n, line in enumerate(lines, start=1):
            doc = decode_record(line, task.path, lineno=None if task.start else n,
                                offset=offset, text_field=task.text_field)
            offset += len(line)
            if doc is None:
                continue
            data = summary_line(doc.id, model.summarize(doc.text))
            out.write(data)
            digest.update(data)
            out_bytes += len(data)
            docs += 1
    return PieceDone(task.index, docs, task.end - task.start, out_bytes, digest.hexdigest(),
                     os.getpid(), start, time.time(), load_s)


# --------------------------------------------------------------------------- the plan


def plan_tasks(corpus_path, docs_per_task: int = DEFAULT_DOCS_PER_TASK) -> list[Piece]:
    """The corpus cut into pieces of ``docs_per_task`` consecutive documents (the last may
    hold fewer), each a byte range of whole lines. ``docs_per_task = ceil(M / cores)`` is
    ``np.array_split(range(M), cores)``: one big chunk per worker."""
    docs_per_task = check_positive("docs per task", docs_per_task, hint="Use e.g. 16.")
    ends = document_ends(corpus_path)
    if not ends:
        raise CorpusError(f"{corpus_path}: the corpus is empty (no documents); give a file "
                          "with text.")
    size = Path(corpus_path).stat().st_size
    pieces, start = [], 0
    for i in range(docs_per_task - 1, len(ends) + docs_per_task - 1, docs_per_task):
        end = ends[min(i, len(ends) - 1)]
        if end == ends[-1]:
            end = size  # trailing blank lines go with the last piece
        pieces.append(Piece(Path(corpus_path), start, end))
        start = end
    return pieces


def chunk_per_worker(documents: int, workers: int) -> int:
    """Documents per task for one big chunk per worker (the usual ``array_split`` split)."""
    return math.ceil(documents / check_positive("workers", workers))


def _plan_record(corpus_path: Path, model_path: Path, pieces: list[Piece],
                 text_field: str) -> dict:
    st = corpus_path.stat()
    cuts = hashlib.sha256(json.dumps([[p.start, p.end] for p in pieces]).encode()).hexdigest()
    model = file_sha256(model_path)[:16]
    return {"format": PLAN_FORMAT, "corpus": str(corpus_path.resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "text_field": text_field, "model": model,
            "pieces": len(pieces), "cuts_sha256": cuts}


def work_folder(out_dir) -> Path:
    """Where a run keeps its plan, manifest and finished pieces until it publishes."""
    return Path(out_dir) / WORK_NAME


def manifest_path(out_dir) -> Path:
    return work_folder(out_dir) / MANIFEST_NAME


def finished_pieces(work_dir) -> dict[int, PieceDone]:
    """The pieces the manifest lists whose files are there with the recorded size and
    checksum (a torn last line, a missing or changed file: that piece is done again)."""
    done: dict[int, PieceDone] = {}
    try:
        lines = (Path(work_dir) / MANIFEST_NAME).read_bytes().split(b"\n")
    except FileNotFoundError:
        return done
    for line in lines:
        try:
            rec = PieceDone(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by a kill, or blank
        p = piece_path(work_dir, rec.index)
        try:
            if p.stat().st_size == rec.out_bytes and file_sha256(p) == rec.sha256:
                done[rec.index] = rec
        except OSError:
            continue
    return done


def file_sha256(path) -> str:
    """The SHA-256 of a file, read in blocks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(COPY_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _prepare_work(work: Path, plan: dict) -> tuple[dict[int, PieceDone], bool]:
    """The work folder ready for ``plan``: pieces finished by an earlier run of the same plan
    kept, anything else (another plan's pieces, temporary files of a killed run) removed.
    Returns the finished pieces and whether an earlier run's work was discarded."""
    discarded = False
    if work.is_dir():
        try:
            old = json.loads((work / PLAN_NAME).read_bytes())
        except (OSError, ValueError):
            old = None
        if old != plan:
            shutil.rmtree(work)
            discarded = True
    work.mkdir(parents=True, exist_ok=True)
    for p in work.iterdir():
        if TMP_MARK in p.name:
            p.unlink(missing_ok=True)
    if not (work / PLAN_NAME).is_file():
        write_bytes_atomic(work / PLAN_NAME, json.dumps(plan, indent=1).encode())
    return finished_pieces(work), discarded


# --------------------------------------------------------------------------- the run


@dataclass
class BatchRun:
    """A batch run: what it wrote, how it ran, and what each task did."""

    output: Path
    loads: str
    workers: int
    documents: int
    tasks: int
    resumed: int  # pieces an earlier, interrupted run had finished
    in_bytes: int
    out_bytes: int
    sha256: str  # of the output file
    seconds: float  # wall time, pool start-up and the parent's model load included
    pieces: list[PieceDone] = field(default_factory=list, repr=False)  # done by this run
    note: str = ""

    @property
    def loads_done(self) -> int:
        """Model loads this run did: one per task, one per worker, or one in the parent."""
        ran = len(self.pieces)
        if self.loads == "task":
            return ran
        return min(self.workers, ran) if self.loads == "worker" else int(ran > 0)

    def __str__(self) -> str:
        resumed = f", {self.resumed} resumed from an earlier run" if self.resumed else ""
        return (f"{self.documents:,} documents in {self.tasks} tasks{resumed}, {self.workers} "
                f"worker(s), model loaded per {self.loads}: {self.in_bytes / MB:.1f} MB of "
                f"text → {self.out_bytes / MB:.2f} MB of summaries in {self.seconds:.2f} s "
                f"({self.in_bytes / MB / max(self.seconds, 1e-9):.1f} MB/s)")


def _publish(work: Path, out: Path, count: int) -> str:
    """Copy the pieces, in order, into ``out`` (atomically); return its SHA-256."""
    digest = hashlib.sha256()
    with atomic_write(out, "wb") as dst:
        for i in range(count):
            with open(piece_path(work, i), "rb") as src:
                while block := src.read(COPY_BYTES):
                    digest.update(block)
                    dst.write(block)
    return digest.hexdigest()


def summarize_corpus(corpus, model_path, out_dir, *, workers: int = 1, loads: str = "worker",
                     docs_per_task: int = DEFAULT_DOCS_PER_TASK, kind: str = "processes",
                     text_field: str = "text", progress: bool = False,
                     on_piece=None) -> BatchRun:
    """Summarise every document of ``corpus`` with the model at ``model_path`` into
    ``out_dir/summaries.jsonl`` (see the module's notes); resumes an interrupted run.

    ``kind`` is ``"processes"`` (default), ``"threads"`` or ``"serial"``; ``loads="fork"``
    needs processes and the ``fork`` start method. ``on_piece(done)`` is called in the parent
    after each piece is recorded (the progress bar, a test that stops the run midway).
    """
    loads = check_choice("loads", loads, LOADS)
    asked = check_positive("workers", workers, hint="Use e.g. os.cpu_count().")
    if loads == "fork" and kind != "processes":
        raise ParameterError("loads='fork' means worker processes inherit the model from the "
                             "parent: use kind='processes' (or loads='worker').")
    start_method = "fork" if loads == "fork" else None
    path = open_corpus(corpus, text_field, progress=progress)
    model_path = Path(model_path)
    if not model_path.is_file():
        load_summarizer(model_path)  # the kit's error for a missing model file, now
    pieces = plan_tasks(path, docs_per_task)
    used = worker_count(asked, len(pieces))
    note = capped_note(asked, used, len(pieces))
    t0 = time.perf_counter()
    with output_folder(out_dir, "the output folder") as out:
        work = work_folder(out)
        done, discarded = _prepare_work(work, _plan_record(path, model_path, pieces,
                                                           text_field))
        if discarded:
            note = "; ".join(filter(None, [note, "an unfinished earlier run into this folder "
                                           "had other settings (corpus, model or task size): "
                                           "its pieces were discarded"]))
        resumed = len(done)
        todo = [BatchTask(i, str(path), p.start, p.end, str(model_path), str(work), loads,
                          text_field) for i, p in enumerate(pieces) if i not in done]
        ran: list[PieceDone] = []
        init = (load_worker_model, (str(model_path),)) if loads == "worker" else (None, ())
        if loads == "fork":
            _models[str(model_path)] = load_summarizer(model_path)
        try:
            with WorkerPool(used, kind, start_method, ("iokit.batch",), *init) as pool, \
                    progress_bar(total=len(pieces), initial=resumed, unit="task",
                                 desc="summarising", disable=not progress) as bar, \
                    open(work / MANIFEST_NAME, "ab") as manifest:
                for rec in pool.imap(summarize_piece, todo) if todo else ():
                    manifest.write(json.dumps(asdict(rec)).encode() + b"\n")
                    manifest.flush()
                    os.fsync(manifest.fileno())
                    done[rec.index] = rec
                    ran.append(rec)
                    bar.update(1)
                    if on_piece is not None:
                        on_piece(rec)
        finally:
            if loads == "fork":
                _models.pop(str(model_path), None)
        output = out / OUTPUT_NAME
        sha = _publish(work, output, len(pieces))
        shutil.rmtree(work, ignore_errors=True)
    return BatchRun(output, loads, used, sum(r.docs for r in done.values()), len(pieces),
                    resumed, sum(r.in_bytes for r in done.values()),
                    sum(r.out_bytes for r in done.values()), sha,
                    time.perf_counter() - t0, ran, note)
