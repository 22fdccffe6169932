"""The ranged downloader and the protocol logic beneath it.

- :mod:`.ranges`: segment planning and ``Content-Range`` parsing (RFC 9110 §14), no I/O;
- :mod:`.retry`: ``Retry-After`` parsing (RFC 9110 §10.2.3) and backoff with jitter, no I/O;
- :mod:`.tokens`: an OAuth bearer-token cache refreshed once however many streams ask;
- :mod:`.downloader`: fetching a resource by segments over one pooled httpx client.
"""
