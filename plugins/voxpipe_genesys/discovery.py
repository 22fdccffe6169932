"""One run's discovery for the ``genesys`` source: conversations → recordings → stream specs.

- conversations: explicit ids, then those of recordings an earlier run deferred
  (:class:`.filestates.DeferredStore`), then every conversation that *started* in
  ``interval`` (analytics details query, split past the paging limit by
  :mod:`.intervals`), each once;
- recordings: ``GET /api/v2/conversations/{id}/recordingmetadata``; each is downloaded,
  failed with its state's reason, or, while UPLOADING or RESTORING, waited for
  (:mod:`.filestates`): its metadata is re-read every ``poll_interval`` (doubling to
  ``max_poll_interval``) while discovery goes on, for at most ``transient_wait`` seconds,
  then it is left for the next run (audit ``recording-deferred``), counting no attempt;
- media: batch download jobs of up to ``batch_size`` recordings (:meth:`GenesysSource.run_batch`),
  or one request each with ``format_id``.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator
from urllib.parse import quote

import trio

from voxpipe.errors import StreamError, StreamRejected
from voxpipe.facts import RecordingFacts
from voxpipe.idlists import read_ids
from voxpipe.model import StreamSpec

from . import api, filestates, intervals

if TYPE_CHECKING:  # pragma: no cover
    from .source import GenesysSource

log = logging.getLogger("voxpipe.genesys")

#: Most conversations one run discovers (a larger backlog is several runs or intervals).
MAX_CONVERSATIONS = 1_000_000
#: Most ids per ``GET /api/v2/analytics/conversations/details?id=`` request.
MAX_IDS_PER_LOOKUP = 100
#: Most conversations whose transient recordings are waited for at once; beyond it the
#: newest are deferred at once (bounds memory and the re-read requests).
MAX_WAITING = 10_000
#: Name of the deferred-recordings file in the pipeline's state directory.
DEFERRED_FILE = "genesys-deferred.json"


@dataclass
class _Waiting:
    """A conversation with recordings in a transient state, and when to look again."""

    conversation: api.Conversation
    infos: dict[str, api.RecordingInfo]  # recordings still transient, as last read
    first_seen: float  # trio clock
    next_at: float
    delay: float


class Discovery:
    """Discovery state of one run (``seen`` recordings, waiting conversations, the open batch)."""

    def __init__(self, source: "GenesysSource"):
        self.source = source
        self.settings = source.settings
        self.wanted = {m.lower() for m in self.settings.media}
        try:
            self.store = filestates.DeferredStore.load(source.context.state_dir / DEFERRED_FILE)
        except (OSError, ValueError) as exc:
            raise StreamError(f"deferred recordings: {exc}", reason="bad-state-file") from None
        self.seen: set[str] = set()
        self.waiting: dict[str, _Waiting] = {}
        self.batch: list[tuple[api.RecordingInfo, dict[str, Any], RecordingFacts]] = []
        self.deferred = 0

    # ---------------------------------------------------------------- conversations

    def _explicit_ids(self) -> list[str]:
        return read_ids(self.settings.conversations, self.settings.conversations_file, "conversation id",
                        max_ids=MAX_CONVERSATIONS, forbidden="/\\")

    async def _lookup(self, ids: list[str]) -> dict[str, api.Conversation]:
        """Analytics details (start time, participants) of conversations named by id, best
        effort: they are facts about the recordings, not the recordings themselves."""
        details: dict[str, api.Conversation] = {}
        for group in api.chunked(ids, MAX_IDS_PER_LOOKUP):
            try:
                body = await self.source.call("GET", "/api/v2/analytics/conversations/details",
                                              params=[("id", i) for i in group],
                                              what=f"details of {len(group)} conversations")
                found, _ = api.parse_conversation_page(body, "conversation details")
            except StreamError as exc:
                log.warning("conversation details (start times, participants) unavailable: %s", exc)
                return details
            details.update({c.conversation_id: c for c in found})
        return details

    async def conversations(self) -> AsyncIterator[api.Conversation]:
        """Explicit conversations, then those with deferred recordings, then the interval's, each once."""
        seen: set[str] = set()
        explicit = list(dict.fromkeys(self._explicit_ids() + self.store.conversation_ids()))
        details = await self._lookup(explicit) if explicit else {}
        for cid in explicit:
            seen.add(cid)
            yield details.get(cid) or api.Conversation(cid)
        if self.settings.interval is None:
            return
        async for conv in self._interval_conversations(self.settings.interval, seen):
            yield conv

    async def _interval_conversations(self, interval: str, seen: set[str]) -> AsyncIterator[api.Conversation]:
        """Every conversation that started in ``interval``, once, splitting the interval
        (:mod:`.intervals`) wherever it holds more than the query can page through."""
        size = self.settings.page_size
        plan = intervals.IntervalPlan.of(interval)
        pages = outside = listed = 0
        while (part := plan.next()) is not None:
            page = 1
            while True:
                pages += 1
                body = await self.source.call("POST", "/api/v2/analytics/conversations/details/query",
                                              json=api.conversation_query(part.interval, page, size),
                                              what=f"conversations of {part.interval}, page {page}")
                found, total = api.parse_conversation_page(body, f"analytics query {part.interval} page {page}")
                step = intervals.after_page(page, size, len(found), total)
                if step is intervals.Step.SPLIT:
                    try:
                        plan.split(part)
                    except intervals.TooDense as exc:
                        raise StreamError(f"{exc}: it holds {total} conversations, more than the analytics query "
                                          f"pages through ({intervals.MAX_QUERY_RESULTS})",
                                          reason="interval-too-dense") from None
                    self.source.audit("interval-split", interval=part.interval, total_hits=total)
                    log.info("interval %s holds %d conversations; splitting it in two", part.interval, total)
                    break
                for conv in found:
                    # the API also returns conversations that began earlier (on a day the part
                    # touches) and are still active: each belongs to the part it started in
                    if conv.start_ms is not None and not part.holds(conv.start_ms):
                        outside += 1
                        continue
                    if conv.conversation_id not in seen and len(seen) < MAX_CONVERSATIONS:
                        seen.add(conv.conversation_id)
                        listed += 1
                        yield conv
                if step is intervals.Step.DONE or len(seen) >= MAX_CONVERSATIONS:
                    break
                page += 1
            if len(seen) >= MAX_CONVERSATIONS:
                log.warning("%s: stopped at %d conversations (MAX_CONVERSATIONS); split the interval over several "
                            "runs", interval, MAX_CONVERSATIONS)
                break
        self.source.audit("conversations-found", interval=interval, conversations=listed, pages=pages,
                          splits=plan.splits, outside_part=outside)

    # ---------------------------------------------------------------- recordings

    async def specs(self) -> AsyncIterator[StreamSpec]:
        """Every stream of the run; writes the deferred file at the end (also after a failure)."""
        try:
            async with aclosing(self.conversations()) as conversations:
                async for conv in conversations:
                    async for spec in self._conversation(conv):
                        yield spec
                    async for spec in self._recheck():
                        yield spec
            while self.waiting:
                async for spec in self._flush():  # the pipeline works while discovery waits
                    yield spec
                await trio.sleep_until(min(w.next_at for w in self.waiting.values()))
                async for spec in self._recheck():
                    yield spec
            async for spec in self._flush():
                yield spec
        finally:
            for dropped in self.store.expire():
                log.warning("recording %s (conversation %s): still %s after %d runs; no longer looked for",
                            dropped.recording_id, dropped.conversation_id, dropped.file_state, dropped.runs)
                self.source.audit("deferred-expired", recording=dropped.recording_id,
                                  conversation=dropped.conversation_id, file_state=dropped.file_state)
            self.store.save()
            if self.deferred:
                log.warning("%d recordings still UPLOADING or RESTORING after %g s are left for the next run (%s)",
                            self.deferred, self.settings.transient_wait, self.store.path)

    async def _metadata(self, conv: api.Conversation) -> list[api.RecordingInfo]:
        cid = conv.conversation_id
        payload = await self.source.call("GET", f"/api/v2/conversations/{quote(cid, safe='')}/recordingmetadata",
                                         what=f"conversation {cid} recording metadata")
        return api.parse_recording_metadata(payload, cid, checksum_field=self.settings.checksum_field)

    async def _conversation(self, conv: api.Conversation) -> AsyncIterator[StreamSpec]:
        cid = conv.conversation_id
        try:
            infos = await self._metadata(conv)
        except StreamError as exc:
            # the conversation's recordings are unknown: report it as a failed stream, not silence
            self.source.fail(cid, cid, StreamError(f"conversation {cid}: {exc}", reason=exc.reason))
            yield StreamSpec(cid, {"conversationId": cid, "date": conv.conversation_start}, self._facts(conv))
            return
        if not infos:
            self.source.audit("no-recordings", conversation=cid)
        waiting: dict[str, api.RecordingInfo] = {}
        for info in infos:
            if (info.media or "audio").lower() not in self.wanted or info.recording_id in self.seen:
                continue
            if filestates.classify(info.file_state).action == "wait":
                waiting[info.recording_id] = info
                continue
            async for spec in self._recording(conv, info):
                yield spec
        if waiting:
            now = trio.current_time()
            if len(self.waiting) >= MAX_WAITING:
                for info in waiting.values():
                    self._defer(conv, info)
                return
            self.waiting[cid] = _Waiting(conv, waiting, now, now + self.settings.poll_interval,
                                         self.settings.poll_interval)
            for info in waiting.values():
                self.source.audit("recording-waiting", recording=info.recording_id, conversation=cid,
                                  file_state=info.file_state)

    async def _recheck(self) -> AsyncIterator[StreamSpec]:
        """Re-read the metadata of waiting conversations that are due."""
        s = self.settings
        now = trio.current_time()
        for cid, entry in list(self.waiting.items()):
            if entry.next_at > now:
                continue
            try:
                infos = {i.recording_id: i for i in await self._metadata(entry.conversation)}
            except StreamError as exc:
                log.warning("conversation %s: recording metadata re-read failed (%s); trying again", cid, exc)
                infos = {}
            for rid in list(entry.infos):
                info = infos.get(rid)
                if info is None:
                    continue  # a failed re-read: keep waiting
                if filestates.classify(info.file_state).action == "wait":
                    entry.infos[rid] = info
                    continue
                del entry.infos[rid]
                self.store.resolve(rid)
                async for spec in self._recording(entry.conversation, info):
                    yield spec
            now = trio.current_time()
            entry.delay = min(entry.delay * 2, s.max_poll_interval)
            next_at = filestates.next_check(entry.first_seen, now, entry.delay, s.transient_wait)
            if entry.infos and next_at is None:
                for info in entry.infos.values():
                    self._defer(entry.conversation, info)
                entry.infos.clear()
            if not entry.infos:
                del self.waiting[cid]
            else:
                entry.next_at = next_at

    def _defer(self, conv: api.Conversation, info: api.RecordingInfo) -> None:
        rid, cid = info.recording_id, conv.conversation_id
        self.seen.add(rid)
        entry = self.store.defer(rid, cid, (info.file_state or "").upper())
        self.deferred += 1
        log.warning("recording %s (conversation %s): still %s after %g s; left for the next run", rid, cid,
                    info.file_state, self.settings.transient_wait)
        self.source.audit("recording-deferred", recording=rid, conversation=cid, file_state=info.file_state,
                          waited=self.settings.transient_wait, runs=entry.runs)

    @staticmethod
    def _facts(conv: api.Conversation) -> RecordingFacts:
        """What the analytics API says about the conversation; at least its id."""
        return conv.facts if conv.facts.conversation_id else conv.facts.merged(
            {"platform": "genesys", "conversation_id": conv.conversation_id})

    def _meta(self, conv: api.Conversation, info: api.RecordingInfo) -> dict[str, Any]:
        meta = {"conversationId": conv.conversation_id, "recordingId": info.recording_id,
                "date": conv.conversation_start, "media": info.media, "fileState": info.file_state}
        if info.checksum:
            meta["sha256"] = info.checksum
        return meta

    async def _recording(self, conv: api.Conversation, info: api.RecordingInfo) -> AsyncIterator[StreamSpec]:
        """A recording that is not (or no longer) transient: failed, fetched alone, or batched."""
        rid, cid = info.recording_id, conv.conversation_id
        self.seen.add(rid)
        self.store.resolve(rid)
        meta = self._meta(conv, info)
        verdict = filestates.classify(info.file_state)
        if verdict.action == "fail":
            self.source.fail(rid, cid, StreamRejected(f"recording {rid} (conversation {cid}): fileState "
                                                      f"{info.file_state}: {verdict.advice}", reason=verdict.reason))
            yield StreamSpec(rid, meta, self._facts(conv))
            return
        if self.settings.format_id is not None:  # fetched one by one in read()
            self.source.expect(rid, cid)
            yield StreamSpec(rid, meta, self._facts(conv))
            return
        self.batch.append((info, meta, self._facts(conv)))
        if len(self.batch) >= self.settings.batch_size:
            async for spec in self._flush():
                yield spec

    async def _flush(self) -> AsyncIterator[StreamSpec]:
        """Run a batch job for the recordings collected so far and yield their specs."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        pairs = [(info.conversation_id, info.recording_id) for info, _, _ in batch]
        try:
            results = await self.source.run_batch(pairs)
            failure = None
        except StreamError as exc:
            results, failure = {}, exc
        for info, meta, facts in batch:
            rid, cid = info.recording_id, info.conversation_id
            result = results.get(rid)
            if result is None:
                self.source.fail(rid, cid, failure or StreamError(
                    f"recording {rid} (conversation {cid}): the batch job returned no result for it",
                    reason="batch-no-result"))
            else:
                self.source.expect(rid, cid, result)
                meta = {**meta, **self.source.result_metadata(result)}
            yield StreamSpec(rid, meta, facts)
