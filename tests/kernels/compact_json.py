"""A kernel's message packer that writes JSON without spaces, as jupyter_client's ``Session``
does by default wherever ``orjson`` is installed (its ``orjson_packer``): an ipykernel started
with ``--Session.packer=tests.kernels.compact_json.pack`` numbers and frames its messages as
always, in compact headers."""

from __future__ import annotations

import json
from typing import Any

from jupyter_client.session import json_default


def pack(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default, ensure_ascii=False, separators=(",", ":")).encode()
