"""Batch download jobs: when a job is finished, and which result stands for a recording. No I/O.

Contract (official SDK, ``BatchDownloadJobStatusResult``): ``status`` is ``InProgress`` or
``Completed`` ("a job is considered completed when all the submitted requests have been
processed and fulfilled"); ``expectedResultCount`` counts success and error results
and "could change as recordings are being discovered and processed"; ``resultCount``
and ``errorCount`` are the current counts; one recording can appear in several results.

Decisions:

- :func:`job_finished`: ``status`` decides when the server sends it (a job whose counts
  match may still be ``InProgress``, because its expected count can still grow); only
  without ``status`` (or with a value this code does not know) do the counts decide:
  finished once ``resultCount`` reaches an ``expectedResultCount`` of at least one.
- :func:`settle`: one result per requested recording. **A result with a URL beats one
  with an error**, whatever their order: the recording's media exists and can be
  archived, and the failed result only says one rendition of it could not be produced;
  among several results with a URL **the last listed wins**: results are appended as
  they are produced, so the last one carries the most recently signed URL, the one that
  expires last; among errors only, the last listed wins (the most recent reason).
  Results for recordings not requested (or for another conversation) are set aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .api import BatchResult, BatchStatus

#: ``status`` values of ``BatchDownloadJobStatusResult`` (lower-cased for comparison).
IN_PROGRESS = "inprogress"
COMPLETED = "completed"


def job_finished(status: BatchStatus) -> bool:
    """Whether every result of the job is in (see the module docstring for the rule)."""
    if status.status is not None:
        value = status.status.strip().lower()
        if value == COMPLETED:
            return True
        if value == IN_PROGRESS:
            return False
    expected = status.expected_result_count
    return expected is not None and expected >= 1 and status.result_count >= expected


def preferred(new: BatchResult, old: BatchResult) -> bool:
    """Whether ``new`` (listed after ``old``) replaces ``old`` for the same recording."""
    return new.ok or not old.ok


@dataclass(frozen=True)
class Settled:
    """The results of a job reduced to one per requested recording.

    :ivar results: by recording id.
    :ivar duplicates: recording ids that had more than one result.
    :ivar unrequested: ``conversationId/recordingId`` of results for something not requested.
    """

    results: dict[str, BatchResult]
    duplicates: tuple[str, ...] = ()
    unrequested: tuple[str, ...] = ()


def settle(requested: Sequence[tuple[str, str]], results: Iterable[BatchResult]) -> Settled:
    """One result per requested ``(conversationId, recordingId)``, by the rules above."""
    wanted = {rid: cid for cid, rid in requested}
    chosen: dict[str, BatchResult] = {}
    duplicates: dict[str, None] = {}
    unrequested: list[str] = []
    for result in results:
        rid = result.recording_id
        if wanted.get(rid) != result.conversation_id:
            unrequested.append(f"{result.conversation_id}/{rid}")
            continue
        old = chosen.get(rid)
        if old is not None:
            duplicates[rid] = None
        if old is None or preferred(result, old):
            chosen[rid] = result
    return Settled(chosen, tuple(duplicates), tuple(unrequested))
