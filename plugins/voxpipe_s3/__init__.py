"""First-party plugin: the ``s3`` sink (S3 and S3-compatible object storage) and ``voxpipe s3``.

Needs boto3: ``pip install 'voxpipe[s3]'``. The sink registers without it (so
``voxpipe plugins`` lists it); a pipeline using it then fails to start, saying so.
"""

from voxpipe import hookimpl

from .sink import S3Sink


@hookimpl
def register_sinks(register):
    register(S3Sink)


@hookimpl
def register_commands(cli):
    from .cli import s3_group

    cli.add_command(s3_group)


@hookimpl
def open_archive_storage(location):
    if not str(location).startswith("s3://"):
        return None
    from .archive import S3ArchiveStorage

    return S3ArchiveStorage.from_location(str(location))
