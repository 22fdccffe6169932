"""The emulator's tenant-level routes: Data Extraction jobs and their CSV, and the
``.well-known`` documents that name the API host (a mixin of :class:`~.app.CxoneEmulator`).

``POST /data-extraction/v1/jobs``, ``GET /data-extraction/v1/jobs/{jobId}`` (lifecycle:
:mod:`.extraction`), ``GET /data-extraction/v1/files/{jobId}?expires&sig`` (the CSV,
:func:`.calls.render_csv`; a signed URL that refuses a second credential, as storage
services do), ``GET /.well-known/cxone-configuration?tenantId=`` and
``GET /.well-known/openid-configuration``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from .calls import render_csv
from .extraction import JobRequestError
from .faults import RequestKind

if TYPE_CHECKING:  # pragma: no cover
    from .app import _Exchange, _Request


class TenantRoutes:
    """Route handlers; the emulator provides ``_guard``, ``extraction``, ``calls``,
    ``result_signer``, ``stats``, ``clock`` and ``settings``."""

    _guard: Any
    extraction: Any
    calls: Any
    result_signer: Any
    stats: Any
    clock: Any
    settings: Any

    async def _job_create_route(self, req: "_Request", ex: "_Exchange", m: re.Match[str]) -> None:
        if await self._guard(req, ex, RequestKind.METADATA, "recording:read") is None:
            return
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            await ex.error(400, "invalid_json", "request body is not JSON")
            return
        try:
            job = self.extraction.create(body, self.clock())
        except JobRequestError as exc:
            await ex.error(400, "invalid_request", str(exc))
            return
        self.stats.event("extraction_jobs")
        await ex.json(202, self.extraction.created_answer(job))

    async def _job_status_route(self, req: "_Request", ex: "_Exchange", m: re.Match[str]) -> None:
        if await self._guard(req, ex, RequestKind.METADATA, "recording:read") is None:
            return
        now = self.clock()
        job = self.extraction.poll(m["job"], now)
        if job is None:
            await ex.error(404, "job_not_found", f"no data extraction job {m['job']!r}")
            return
        url = None
        if job.state == "SUCCEEDED":
            params = self.result_signer.sign(f"job:{job.id}", now)
            url = f"{req.base_url()}/data-extraction/v1/files/{quote(job.id)}?{urlencode(params)}"
        await ex.json(200, self.extraction.status_answer(job, url))

    async def _job_file_route(self, req: "_Request", ex: "_Exchange", m: re.Match[str]) -> None:
        """The job's CSV at its signed URL; like a storage service, a second credential is refused."""
        if req.headers.get("authorization"):
            await ex.error(400, "invalid_argument", "only one auth mechanism allowed: the signed URL; "
                           "do not send an Authorization header")
            return
        now = self.clock()
        reason = self.result_signer.check(f"job:{m['job']}", req.query.get("expires"), req.query.get("sig"), now)
        job = self.extraction.readable(m["job"], now) if reason is None else None
        if job is None:
            await ex.error(403, "access_denied", reason or "the extraction result has expired")
            return
        data = render_csv(self.calls.between(job.first, job.stop), job.version)
        self.stats.event("extraction_files")
        await ex.start(200, [("content-type", "text/csv; charset=utf-8"), ("content-length", str(len(data)))])
        await ex.body(data, False)

    async def _well_known_route(self, req: "_Request", ex: "_Exchange", m: re.Match[str]) -> None:
        base = req.base_url()
        if m["doc"] == "openid-configuration":
            await ex.json(200, {"issuer": base, "token_endpoint": f"{base}/auth/token",
                                "grant_types_supported": ["password", "client_credentials", "refresh_token"],
                                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                                          "client_secret_basic"]})
            return
        tenant = req.query.get("tenantId")
        if tenant != self.settings.tenant_id:
            await ex.error(404, "tenant_not_found", f"no tenant {tenant!r}")
            return
        await ex.json(200, {"tenantId": tenant, "area": self.settings.area, "cluster": "E32",
                            "domain": "niceincontact.com", "apiEndpoint": base, "authEndpoint": base,
                            "uiEndpoint": base})
