"""First-party plugin: verifiers (``sha256``, ``hmac-sha256``, ``audio-format``) and ``voxpipe report``."""

from voxpipe import hookimpl

from .audio_format import AudioFormatVerifier
from .hmac import HmacVerifier
from .sha256 import Sha256Verifier


@hookimpl
def register_verifiers(register):
    register(Sha256Verifier)
    register(HmacVerifier)
    register(AudioFormatVerifier)


@hookimpl
def register_commands(cli):
    from .commands import report_command

    cli.add_command(report_command)
