from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile


class LimitedUploadHandler(FileUploadHandler):
    """Counts file bytes as they arrive and skips the file once it passes the upload limit."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.limit = settings.FIRMWARE_MAX_UPLOAD_BYTES
        self.received = 0
        self.exceeded = False
        self.message = ""

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> None:
        content_length = args[2] if len(args) > 2 else kwargs.get("content_length")
        if content_length and content_length > self.limit + 64 * 1024:
            # The whole request is bigger than any allowed file plus form fields.
            self.exceeded = True
            self.message = f"request is {content_length} bytes, the file limit is {self.limit}"

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0
        if self.exceeded:
            raise SkipFile

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            self.message = f"file is larger than the limit of {self.limit} bytes"
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
