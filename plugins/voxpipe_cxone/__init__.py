"""voxpipe plugin for NICE CXone: a recording source and a local emulator.

The emulator (``voxpipe_cxone.emulator``) is a real HTTP server on loopback that
implements the CXone recording, Media Playback and streaming endpoints the
source talks to, with switchable fault injection.
"""
