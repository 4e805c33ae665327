"""The file datastore: one multi-document YAML file, written atomically under a lock.

- A write takes an exclusive `flock` on `<file>.lock` (a separate file, because the data file itself is
  replaced on every write and a lock on it would be a lock on a file nobody reads any more), reads the
  current file, applies the change, writes a temporary file in the same directory, fsyncs it, renames it
  over the old file and fsyncs the directory. A crash at any point leaves either the old or the new file.
- The revision is kept in the file's first line, `# tortie-revision: N`, and bumped by every write, so
  hand edits (which may drop or keep the line) stay possible.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from datastore.base import Datastore
from datastore.status import DatastoreStatus
from datastore.watch import Watch
from proto.resources import ClusterModel, decode_text, dump_yaml, load_model

DEFAULT_PATH = Path("/etc/tortie/cluster.yaml")
_REVISION_RE = re.compile(r"\A# tortie-revision: (\d+)")
_HEADER = ("# tortie-revision: {revision}\n"
           "# Cluster configuration: projectcalico.org/v3 resources. `tortiectl apply` rewrites this file;\n"
           "# hand edits work too (every daemon watching it reloads; an invalid edit is reported and ignored).\n")


def revision_of(text: str) -> int:
    m = _REVISION_RE.match(text)
    return int(m.group(1)) if m else 0


class FileDatastore(Datastore):
    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.status = DatastoreStatus("file", str(self.path))
        # what the last `load` read: a watch started later with that model compares the file with
        # it, so a write landing between the load and the watch is delivered, not taken as known
        self.loaded_text: str | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    def read_text(self, *, missing_ok: bool = False) -> str:
        """The file's text; a file that is not UTF-8 raises ValidationError (file and line)."""
        try:
            return decode_text(self.path.read_bytes(), self.name)
        except FileNotFoundError:
            if missing_ok:
                return ""
            raise

    def parse(self, text: str) -> ClusterModel:
        return load_model(text, self.name, revision_of(text))

    def load(self, *, missing_ok: bool = False) -> ClusterModel:
        text = self.read_text(missing_ok=missing_ok)
        model = self.parse(text)
        self.loaded_text = text
        return model

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's write lock (blocks until other writers are done)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def transact(self, change: Callable[[ClusterModel], ClusterModel]) -> ClusterModel:
        with self.locked():
            current = self.load(missing_ok=True)
            new = change(current)
            if new == current and self.path.exists():
                return current
            new = new.with_revision(current.revision + 1)
            self._write(new)
            return new

    def _write(self, model: ClusterModel) -> None:
        text = _HEADER.format(revision=model.revision) + dump_yaml(model.resources)
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        import tempfile  # only to write (tortiectl), not to read: it brings shutil, bz2, lzma, random

        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def watch(self, **options: object) -> Watch:
        return Watch(self, **options)  # type: ignore[arg-type]
