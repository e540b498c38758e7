"""The local server's HTTP protocol: uvicorn's httptools protocol that stops reading a request head past its bound."""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import HeadersTooLarge
from shared.http.app import MAX_HEADER_BYTES, new_request_id

# The request line and the header lines with their separators: the app answers 431 past MAX_HEADER_BYTES of names
# and values; this is the backstop that keeps a 32 MiB header from being read (and accumulated by the parser) at all.
MAX_HEAD_BYTES = 2 * MAX_HEADER_BYTES

log = logging.getLogger("agentpay")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes of each request head as they arrive; past MAX_HEAD_BYTES it answers 431 and closes.

    Used as `uvicorn --http devtools.local_http:BoundedHttpToolsProtocol` or `uvicorn.Config(http=...)`."""

    _head_bytes = 0
    _reading_head = True

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after the parser has seen the chunk: a head that ended in it (with a body behind) is not counted.
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _refuse_head(self) -> None:
        request_id = new_request_id()
        body = json.dumps(HeadersTooLarge().body(request_id)).encode()
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "x-content-type-options: nosniff\r\n"
            "cache-control: no-store\r\n"
            f"x-request-id: {request_id}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        log.info("request head too large", extra={"fields": {"status": 431, "bytes_read": self._head_bytes}})
