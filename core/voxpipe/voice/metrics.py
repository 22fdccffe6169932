"""Live Prometheus metrics of calls in flight (``voxpipe run --metrics-port N``).

=========================================  =========  ==================  ==========================================
metric                                     type       labels              what
=========================================  =========  ==================  ==========================================
``voxpipe_voice_active_calls``             gauge      pipeline, codec     calls being recorded now
``voxpipe_voice_packets_received_total``   counter    pipeline, codec     audio messages received (Twilio: media)
``voxpipe_voice_frames_concealed_total``   counter    pipeline, codec     frames replaced by silence
``voxpipe_voice_frames_late_total``        counter    pipeline, codec     packets that came after their frame
``voxpipe_voice_jitter_ms``                histogram  pipeline, codec     RFC 3550 jitter of calls, sampled once a
                                                                          second per call (timestamped codecs)
``voxpipe_voice_call_bitrate_bps``         gauge      pipeline, call      each call's payload bitrate over the last
                                                                          second; removed when the call ends
``voxpipe_voice_degraded_calls_total``     counter    pipeline, codec     calls flagged degraded (bitrate below the
                                                                          threshold for too long)
=========================================  =========  ==================  ==========================================

The ``call`` label is bounded by the calls in flight (the pipeline's ``concurrency``):
a call's series is removed when it ends. The metrics live in the run's registry (the
``metrics_registry`` service); without one (no metrics endpoint) they are kept in a
private registry nobody reads.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Buckets of ``voxpipe_voice_jitter_ms``: loopback (sub-ms) to a bad mobile path.
JITTER_MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640)

_by_registry: "weakref.WeakKeyDictionary[CollectorRegistry, VoiceMetrics]" = weakref.WeakKeyDictionary()


class VoiceMetrics:
    """The voice metrics of one registry (shared by every voice pipeline using it)."""

    def __init__(self, registry: CollectorRegistry):
        r = self.registry = registry
        self.active = Gauge("voxpipe_voice_active_calls", "Calls being recorded now.", ["pipeline", "codec"],
                            registry=r)
        self.packets = Counter("voxpipe_voice_packets_received", "Audio messages received.", ["pipeline", "codec"],
                               registry=r)
        self.concealed = Counter("voxpipe_voice_frames_concealed", "Frames replaced by silence.",
                                 ["pipeline", "codec"], registry=r)
        self.late = Counter("voxpipe_voice_frames_late", "Packets that came after their frame was concealed.",
                            ["pipeline", "codec"], registry=r)
        self.jitter = Histogram("voxpipe_voice_jitter_ms", "RFC 3550 interarrival jitter of calls (ms), sampled "
                                "once a second per call.", ["pipeline", "codec"], buckets=JITTER_MS_BUCKETS,
                                registry=r)
        self.bitrate = Gauge("voxpipe_voice_call_bitrate_bps", "Payload bitrate of a call in flight over the last "
                             "second (bits/s).", ["pipeline", "call"], registry=r)
        self.degraded = Counter("voxpipe_voice_degraded_calls", "Calls flagged degraded.", ["pipeline", "codec"],
                                registry=r)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None) -> "VoiceMetrics":
        """The metrics registered in ``registry`` (created once), or in a private one."""
        if registry is None:
            return cls(CollectorRegistry(auto_describe=True))
        found = _by_registry.get(registry)
        if found is None:
            found = _by_registry[registry] = cls(registry)
        return found


class CallMetrics:
    """One call's view: pushes the deltas of its counters at each :meth:`update`."""

    __slots__ = ("m", "pipeline", "codec", "call", "_sent", "_timed", "_open")

    def __init__(self, metrics: VoiceMetrics, pipeline: str, codec: str, call: str, timed: bool):
        self.m, self.pipeline, self.codec, self.call = metrics, pipeline, codec, call
        self._sent = (0, 0, 0)
        self._timed = timed
        self._open = False

    def started(self) -> None:
        self._open = True
        self.m.active.labels(self.pipeline, self.codec).inc()

    def update(self, packets: int, concealed: int, late: int, jitter_ms: float, bitrate_bps: float) -> None:
        p0, c0, l0 = self._sent
        labels = (self.pipeline, self.codec)
        if packets > p0:
            self.m.packets.labels(*labels).inc(packets - p0)
        if concealed > c0:
            self.m.concealed.labels(*labels).inc(concealed - c0)
        if late > l0:
            self.m.late.labels(*labels).inc(late - l0)
        self._sent = (max(packets, p0), max(concealed, c0), max(late, l0))
        if self._timed:
            self.m.jitter.labels(*labels).observe(jitter_ms)
        if self._open:
            self.m.bitrate.labels(self.pipeline, self.call).set(bitrate_bps)

    def ended(self, degraded: bool) -> None:
        if not self._open:
            return
        self._open = False
        self.m.active.labels(self.pipeline, self.codec).dec()
        try:
            self.m.bitrate.remove(self.pipeline, self.call)
        except KeyError:
            pass
        if degraded:
            self.m.degraded.labels(self.pipeline, self.codec).inc()
