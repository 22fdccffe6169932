"""The shipped examples, installed as the package data of ``voxpipe.examples``.

Pipelines (``*.yaml``) and the recordings in ``recordings/``; code reads them through
:mod:`voxpipe.resources`, which works from a clone, an editable install and a wheel alike.
"""
