"""Box file transfers: uploads (whole, or in an upload session above a threshold) and downloads.

- Whole: ``POST {upload}/2.0/files/content``, multipart with the ``attributes`` part (name, parent id) before the
  ``file`` part, and ``content-md5`` (Box's name for the SHA-1). A 409 ``item_name_in_use`` names the file of
  that name: its content is replaced with a new version (``POST /files/{id}/content``), so a repeat leaves one
  file, as Graph's upload by path does.
- In parts (above ``threshold``; Box accepts sessions from 20 MB): ``POST /files/upload_sessions`` (or
  ``/files/{id}/upload_sessions`` for a new version) gives the part size; each part is ``PUT`` with
  ``digest: sha=<base64 SHA-1>`` and ``content-range: bytes a-b/total``; the commit lists the parts Box
  acknowledged with the whole file's digest. A commit answered 202 (parts still processing) is sent again after
  its ``Retry-After``. A part PUT is a PUT: retried in the call; a part sent twice is answered as once.
- Download: ``GET /files/{id}/content`` answers 302 to a pre-authenticated URL, fetched without the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable

from connectors.box.api import BoxApi
from connectors.box.errors import ItemNameInUse
from connectors.box.models import BoxFile, UploadPart, UploadSession
from connectors.http import retry_after_s
from hub.errors import UpstreamRejected, UpstreamUnavailable

__all__ = ["COMMIT_ATTEMPTS", "BoxFiles"]

#: How often a commit or a download answered 202 (not ready yet) is sent again before giving up.
COMMIT_ATTEMPTS = 5


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def _digest(data: bytes) -> str:
    return "sha=" + base64.b64encode(_sha1(data)).decode("ascii")


def _file(answer: dict[str, object], what: str) -> BoxFile:
    entries = answer.get("entries")
    if not isinstance(entries, list) or not entries:
        raise UpstreamRejected(f"box: {what} answered no file")
    return BoxFile.model_validate(entries[0])


class BoxFiles:
    """Uploads and downloads through a :class:`BoxApi`; ``sleep`` waits out a commit's ``Retry-After``."""

    def __init__(self, api: BoxApi, *, threshold: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.threshold = threshold
        self._sleep = sleep

    def get_file(self, file_id: str) -> BoxFile:
        """A file by id; ``BoxNotFound`` when there is none."""
        return BoxFile.model_validate(self.api.send("GET", f"files/{file_id}").json())

    def upload(self, folder_id: str, name: str, content: bytes) -> BoxFile:
        """Store ``content`` as ``name`` in the folder: a new file, or a new version of the file of that name."""
        if len(content) > self.threshold:
            return self.upload_in_parts(folder_id, name, content)
        attributes = json.dumps({"name": name, "parent": {"id": folder_id}})
        try:
            answer = self.api.send("POST", "files/content", upload=True, data={"attributes": attributes},
                                   files={"file": (name, content, "application/octet-stream")},
                                   headers={"content-md5": _sha1(content).hex()})
        except ItemNameInUse as exc:
            return self.upload_version(self._existing_file(exc, name), content)
        return _file(answer.json(), f"the upload of {name!r}")

    def upload_version(self, file_id: str, content: bytes) -> BoxFile:
        """New content for an existing file (a new version; ``etag`` and ``sequence_id`` move on)."""
        if len(content) > self.threshold:
            session = self._session(f"files/{file_id}/upload_sessions", {"file_size": len(content)})
            return self._send_parts(session, content, f"file {file_id}")
        answer = self.api.send("POST", f"files/{file_id}/content", upload=True, data={"attributes": "{}"},
                               files={"file": ("content", content, "application/octet-stream")},
                               headers={"content-md5": _sha1(content).hex()}, retry_safe=True)
        return _file(answer.json(), f"the new version of file {file_id}")

    def upload_in_parts(self, folder_id: str, name: str, content: bytes) -> BoxFile:
        """Store ``content`` as ``name`` through an upload session (a new version when the name is taken)."""
        try:
            session = self._session("files/upload_sessions",
                                    {"folder_id": folder_id, "file_size": len(content), "file_name": name})
        except ItemNameInUse as exc:
            file_id = self._existing_file(exc, name)
            session = self._session(f"files/{file_id}/upload_sessions", {"file_size": len(content)})
        return self._send_parts(session, content, repr(name))

    def delete(self, file_id: str) -> None:
        """Move the file to the trash (a file already gone is fine)."""
        self.api.send("DELETE", f"files/{file_id}", accept=frozenset({404}))

    def download(self, file_id: str) -> bytes:
        """A file's content, following Box's 302 to its pre-authenticated URL without the token; a 202 (the file
        was uploaded a moment ago and is not ready) is asked again after its ``Retry-After``."""
        response = self.api.send("GET", f"files/{file_id}/content", accept=frozenset({302}))
        for _ in range(COMMIT_ATTEMPTS):
            if response.status_code != 202:
                break
            self._sleep(retry_after_s(response) or 1.0)
            response = self.api.send("GET", f"files/{file_id}/content", accept=frozenset({302}))
        if response.status_code == 202:
            raise UpstreamUnavailable(f"box: file {file_id} was still not ready to download")
        if response.status_code == 302:
            location = response.headers.get("location")
            if not location:
                raise UpstreamUnavailable(f"box: the download of file {file_id} redirected nowhere")
            response = self.api.send("GET", location, anonymous=True, shown=f"the download URL of file {file_id}")
        return response.content

    def _existing_file(self, conflict: ItemNameInUse, name: str) -> str:
        existing = next((c for c in conflict.conflicts if c.get("type") == "file" and c.get("id")), None)
        if existing is None:
            raise UpstreamRejected(f"box: {name!r} is taken by an item that is not a file: {conflict}") from None
        return str(existing["id"])

    def _session(self, path: str, body: dict[str, object]) -> UploadSession:
        # A second session left behind by a repeat expires on its own: the create is safe to retry.
        return UploadSession.model_validate(self.api.send("POST", path, json=body, upload=True,
                                                          retry_safe=True).json())

    def _send_parts(self, session: UploadSession, content: bytes, shown: str) -> BoxFile:
        part_url = session.session_endpoints.get("upload_part") or self.api.url(
            f"files/upload_sessions/{session.id}", upload=True)
        commit_url = session.session_endpoints.get("commit") or f"{part_url}/commit"
        total, parts = len(content), []
        for offset in range(0, total, session.part_size):
            chunk = content[offset:offset + session.part_size]
            answer = self.api.send("PUT", part_url, content=chunk, shown=f"a part of the upload of {shown}", headers={
                "digest": _digest(chunk), "content-range": f"bytes {offset}-{offset + len(chunk) - 1}/{total}",
                "content-type": "application/octet-stream"}).json()
            part = UploadPart.model_validate(answer.get("part") or {})
            if part.sha1 != _sha1(chunk).hex() or part.offset != offset:
                raise UpstreamRejected(f"box: the part at {offset} of the upload of {shown} was acknowledged "
                                       f"with another digest or offset")
            parts.append(part.model_dump())
        for _ in range(COMMIT_ATTEMPTS):
            response = self.api.send("POST", commit_url, json={"parts": parts}, headers={"digest": _digest(content)},
                                     shown=f"the commit of the upload of {shown}")
            if response.status_code != 202:
                return _file(response.json(), f"the commit of the upload of {shown}")
            self._sleep(retry_after_s(response) or 1.0)  # the parts are still being processed
        raise UpstreamUnavailable(f"box: the upload of {shown} was still processing after {COMMIT_ATTEMPTS} commits")
