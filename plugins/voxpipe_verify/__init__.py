"""First-party plugin: verifiers (``sha256``)."""

from voxpipe import hookimpl

from .sha256 import Sha256Verifier


@hookimpl
def register_verifiers(register):
    register(Sha256Verifier)
