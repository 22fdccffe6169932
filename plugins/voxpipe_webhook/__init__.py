"""First-party plugin: the ``webhook`` sink (Standard Webhooks signatures, durable outbox)
and the ``voxpipe webhooks`` command."""

from voxpipe import hookimpl

from .sink import WebhookSink


@hookimpl
def register_sinks(register):
    register(WebhookSink)


@hookimpl
def register_commands(cli):
    from .cli import webhooks

    cli.add_command(webhooks)
