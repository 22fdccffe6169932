"""voxpipe: reliable movement of contact-center voice audio."""
