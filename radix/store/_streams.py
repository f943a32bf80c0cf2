"""Creating JetStream streams idempotently, shared by every part that owns one."""

from __future__ import annotations

from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.client import JetStreamContext


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> js_api.StreamInfo:
    """The stream named in `config`, created with it unless it exists (as created by anyone)."""
    assert config.name is not None
    try:
        return await js.stream_info(config.name)
    except js_errors.NotFoundError:
        pass
    try:
        return await js.add_stream(config)
    except js_errors.BadRequestError:
        return await js.stream_info(config.name)  # created meanwhile by another node
