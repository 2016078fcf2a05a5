"""Record a Tinker run's client calls and results; replay them with no service at all.

A cassette is a JSON Lines file: a header line, then one line per event - ``{"i": n, "on":
client, "call": {...}}`` when call ``n`` is accepted (in submission order, so it is the
pipelined order the service saw) and ``{"i": n, "result": {...}}`` when its result arrives.
Lines are appended and flushed as they happen, so a crashed run keeps everything it did, and
writing costs O(size) however long the run. Calls are described as the fake backend records
them and results serialised from ``tinker.types`` (:mod:`.codec`). A cassette holds no key:
calls carry digests, parameters, names and paths; the header only format and SDK versions.

Retries are below the cassette: a call is recorded once, however many tries it took, so a
recording replays the same whatever the network did.

Replay (:func:`replay_client`) stands in for ``tinker.ServiceClient``: every call is checked
against the next recorded one and answered with its recorded result. The first call that
differs - another method, another client, other fields (a learning rate, a datum's digest) -
fails the run with ``replay <file>: call <n> (<method>) ...: <field>: expected X, got Y``.
When the run is over it says so (:meth:`Player.finish`): a replay that leaves recorded calls
unmade did less than the recorded run and fails too. A run recorded against ``cookbook-serve``
keeps the server's identity in the header (``served_by``), so its replay trains with the same
local profile without the server.

The header also keeps the resolved spec the run was recorded from (less where it logs and how
it reached the service: ``tinker``, ``log_path``, ``base_url``) and its sha256,
``spec_digest``. A replay checks its own resolved spec against it before anything is written,
and a cassette from another spec fails in one line naming the spec, the cassette and the first
field that differs. A cassette recorded before headers had a digest is replayed with a warning:
the call-by-call check still stops it at the first call that differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from cookbook.backends.tinker.codec import decode_result, describe_call, encode_result
from cookbook.exceptions import BackendError, ConfigurationError
from cookbook.json_diff import first_diff
from cookbook.versions import package_versions

CASSETTE_KIND = "cookbook-tinker-cassette"
CASSETTE_FORMAT = 1
logger = logging.getLogger(__name__)


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of a resolved spec's canonical JSON."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CassetteWriter:
    """The tape a live run records on; the file is created (or replaced) at the first call.

    :meth:`close` ends the recording for good (and is idempotent): the file is never opened
    again, so nothing written after the end can truncate it. A call made after the end is an
    error - the recording would silently lack it, and its replay fail far from the cause. A
    result that arrives after the end (a pipelined future nobody waited on until then) is not
    written but kept in :attr:`late_results` and logged: raising there would fail the caller's
    ``result()`` for bookkeeping alone, and a replay that needs it stops at that call saying
    its result was never recorded, as it does for a recording that was killed.

    Results arrive on whichever thread waits for them (the RL loop waits in worker threads),
    so writes and the close are serialised.
    """

    def __init__(
        self,
        path: Path,
        served_by: Mapping[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self._served_by = dict(served_by) if served_by is not None else None
        self._spec = dict(spec) if spec is not None else None
        self._file: IO[str] | None = None
        self._count = 0
        self._closed = False
        self._lock = threading.Lock()
        self.late_results: list[int] = []
        """Indices of the results that arrived after :meth:`close` (not in the file)."""

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - lives with the run
        header = {
            "kind": CASSETTE_KIND,
            "format": CASSETTE_FORMAT,
            "versions": package_versions(("cookbook", "tinker")),
        }
        if self._served_by is not None:
            header["served_by"] = self._served_by
        if self._spec is not None:
            header["spec"] = self._spec
            header["spec_digest"] = spec_digest(self._spec)
        file.write(json.dumps(header) + "\n")
        return file

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self._open()
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def ensure_open(self, method: str) -> None:
        """Raise unless a call of ``method`` can still be recorded (the client asks before it
        sends one, so a call the recording would miss is never made)."""
        if self._closed:
            raise BackendError(
                f"cassette {self.path}: call {self._count} ({method}) made after the recording "
                "ended; it would be missing from the recording"
            )

    def call(self, on: str, method: str, kwargs: Mapping[str, Any]) -> int:
        with self._lock:
            self.ensure_open(method)
            index = self._count
            self._count += 1
            self._write({"i": index, "on": on, "call": describe_call(method, kwargs)})
        return index

    def result(self, index: int, method: str, value: Any) -> None:
        with self._lock:
            if not self._closed:
                self._write({"i": index, "result": encode_result(method, value)})
                return
            self.late_results.append(index)
        logger.warning(
            "cassette %s: the result of call %d (%s) arrived after the recording ended; "
            "not recorded (a replay stops at that call)",
            self.path,
            index,
            method,
        )

    def close(self) -> None:
        """End the recording; later closes do nothing."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


class Cassette:
    """A recording read back: ``calls[n] = (client, call)``, ``results[n]`` when it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.header: dict[str, Any] = {}
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read cassette: {exc.strerror}") from None
        for number, line in enumerate(lines, start=1):
            try:
                self._add(number, json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                if number == len(lines) and isinstance(exc, json.JSONDecodeError):
                    break  # a torn last line from a recording that was killed
                raise ConfigurationError(f"{path}:{number}: corrupted cassette line") from None

    def mismatch(self, spec: Mapping[str, Any]) -> str | None:
        """Why this recording is not of ``spec`` (a resolved spec, as recorded), or None. A
        recording with no digest in its header cannot tell: it is accepted with a warning."""
        recorded = self.header.get("spec_digest")
        if recorded is None:
            logger.warning(
                "%s: recorded without a spec digest (an older cassette): not checked against "
                "this run's spec; the first call that differs still fails the replay",
                self.path,
            )
            return None
        ours = spec_digest(spec)
        if recorded == ours:
            return None
        found = first_diff(self.header.get("spec", {}), dict(spec)) or "the digests differ"
        return (
            f"{self.path} was recorded from another spec ({found}; spec digest "
            f"{recorded[:12]}, this run's {ours[:12]})"
        )

    def _add(self, number: int, record: dict[str, Any]) -> None:
        if number == 1:
            if record.get("kind") != CASSETTE_KIND or record.get("format") != CASSETTE_FORMAT:
                raise ConfigurationError(
                    f"{self.path}:1: not a format-{CASSETTE_FORMAT} tinker cassette"
                )
            self.header = record
            return
        index = record["i"]
        if "call" in record:
            if index != len(self.calls):
                raise ConfigurationError(f"{self.path}:{number}: call {index} is out of order")
            self.calls.append((record["on"], record["call"]))
        else:
            self.results[index] = record["result"]


class Player:
    """Walks a cassette in order; one per replayed run, shared by all its clients."""

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette
        self.cursor = 0

    def play(self, on: str, method: str, kwargs: Mapping[str, Any]) -> ReplayFuture:
        index, calls = self.cursor, self.cassette.calls
        where = f"replay {self.cassette.path}: call {index} ({method})"
        if index >= len(calls):
            raise BackendError(f"{where}: the recording ends after {len(calls)} calls")
        recorded_on, expected = calls[index]
        if expected["call"] != method or recorded_on != on:
            raise BackendError(
                f"{where}: the recording has {expected['call']} on the {recorded_on} client "
                f"here, the run called {method} on the {on} client"
            )
        found = first_diff(expected, describe_call(method, kwargs))
        if found:
            raise BackendError(f"{where} differs from the recording: {found}")
        self.cursor += 1
        return ReplayFuture(self, index, method)

    def finish(self) -> None:
        """The run is over: it must have made every recorded call (fewer calls than recorded
        means it did less than the recorded run did - fewer steps, no save, no sample)."""
        calls = self.cassette.calls
        if self.cursor < len(calls):
            on, first = calls[self.cursor]
            raise BackendError(
                f"replay {self.cassette.path}: the run ended after {self.cursor} of the "
                f"{len(calls)} recorded calls; call {self.cursor} ({first['call']} on the {on} "
                "client) was never made"
            )


class ReplayFuture:
    """A recorded result, handed out by ``result()`` like the SDK's future."""

    def __init__(self, player: Player, index: int, method: str) -> None:
        self._player = player
        self._index = index
        self._method = method

    def result(self, timeout: float | None = None) -> Any:
        cassette = self._player.cassette
        encoded = cassette.results.get(self._index)
        if encoded is None:
            raise BackendError(
                f"replay {cassette.path}: call {self._index} ({self._method}) has no recorded "
                "result (the recording stopped before it arrived)"
            )
        if "client" in encoded:
            return ReplayClient(self._player, encoded["client"], encoded.get("model_id"))
        return decode_result(encoded)


class ReplayClient:
    """An SDK-shaped client of any kind whose every method is answered from the cassette.

    The wrapper calls SDK methods with keyword arguments only, which is what lets one class
    stand in for the service, training, sampling and REST clients.
    """

    def __init__(self, player: Player, kind: str, model_id: str | None = None) -> None:
        self._player = player
        self.kind = kind
        self.model_id = model_id

    def create_rest_client(self) -> ReplayClient:
        return ReplayClient(self._player, "rest")

    def finish_replay(self) -> None:
        self._player.finish()

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(**kwargs: Any) -> ReplayFuture:
            return self._player.play(self.kind, method, kwargs)

        call.__name__ = method
        return call


def replay_client(cassette: Cassette | Path) -> ReplayClient:
    """The service client of a replayed run."""
    if not isinstance(cassette, Cassette):
        cassette = Cassette(cassette)
    return ReplayClient(Player(cassette), "service")
