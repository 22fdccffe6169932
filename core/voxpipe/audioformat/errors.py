"""The one error type the audio-format checker raises for bad input."""

from __future__ import annotations

__all__ = ["AudioFormatError"]


class AudioFormatError(Exception):
    """A recording's bytes are not what they should be.

    Attributes:
        reason: short stable machine code, e.g. ``"mp3-sync-lost"``,
            ``"wav-data-length-mismatch"``, ``"format-mismatch"``, ``"truncated"``,
            ``"empty"``, ``"unknown-container"``, ``"duration-mismatch"``,
            ``"size-mismatch"``. Codes are part of the API: metrics and alerts key
            on them; the human text may change.
        detail: human description of what was wrong, naming found and expected
            values.
        offset: byte offset in the recording where the problem was found
            (0-based, counted from the first byte fed), or ``None`` when the
            problem is not tied to one place (e.g. a duration disagreement).
        recording_id: the recording this is about, when the caller knows it; it
            is only used to make the message self-contained.

    ``str(error)`` reads like
    ``"recording 100003: mp3 frame sync lost at byte 48213: expected 0xFFE sync, found 0x3A1F [mp3-sync-lost]"``.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        offset: int | None = None,
        recording_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.offset = offset
        self.recording_id = recording_id
        super().__init__(reason, detail, offset)

    def __reduce__(self):
        # Exception pickles its args positionally; offset/recording_id are
        # keyword-only, so rebuild explicitly (errors cross process and thread
        # boundaries in the engine).
        return (_rebuild, (self.reason, self.detail, self.offset, self.recording_id))

    def with_recording_id(self, recording_id: str | None) -> AudioFormatError:
        """The same error, naming ``recording_id`` in its message."""
        return AudioFormatError(self.reason, self.detail, offset=self.offset, recording_id=recording_id)

    @property
    def message(self) -> str:
        prefix = f"recording {self.recording_id}: " if self.recording_id is not None else ""
        return f"{prefix}{self.detail} [{self.reason}]"

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"AudioFormatError(reason={self.reason!r}, offset={self.offset!r}, "
            f"recording_id={self.recording_id!r}, detail={self.detail!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AudioFormatError):
            return NotImplemented
        return (self.reason, self.detail, self.offset, self.recording_id) == (
            other.reason,
            other.detail,
            other.offset,
            other.recording_id,
        )

    __hash__ = Exception.__hash__


def _rebuild(reason: str, detail: str, offset: int | None, recording_id: str | None) -> AudioFormatError:
    return AudioFormatError(reason, detail, offset=offset, recording_id=recording_id)
