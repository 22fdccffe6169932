"""``voxpipe emulate genesys``: a local Genesys Cloud Platform API for rehearsals and tests."""

from .app import EmulatorConfig, GenesysEmulator
from .catalogue import Catalogue, load_catalogue

__all__ = ["EmulatorConfig", "GenesysEmulator", "Catalogue", "load_catalogue"]
