"""Live call audio building blocks: frame reassembly, jitter buffer and call quality, call state (sans-IO)."""
