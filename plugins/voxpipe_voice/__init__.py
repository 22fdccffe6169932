"""First-party plugin: live call audio (``websocket-voice`` source, DSP transforms, ``wav`` sink,
``voxpipe emulate voice``)."""

from voxpipe import hookimpl

from .source import VoiceSource
from .transforms import TRANSFORMS
from .wav import WavSink


@hookimpl
def register_sources(register):
    register(VoiceSource)


@hookimpl
def register_transforms(register):
    for cls in TRANSFORMS:
        register(cls)


@hookimpl
def register_sinks(register):
    register(WavSink)


@hookimpl
def register_commands(cli):
    from .emulator import voice

    cli.emulate.add_command(voice)
