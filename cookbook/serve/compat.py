"""Which tinker SDK versions the server speaks to, and the flags it hands them.

The wire protocol is the SDK's internal one and moves with its releases (0.38 alone switched
forward_backward and its results to protobuf), so the server states the range it was written
against and refuses other clients with a message naming both versions, instead of failing on
some later request with an opaque decoding error.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

SUPPORTED_SDK_RANGE = ">=0.38.0,<0.39"
SUPPORTED_SDK = SpecifierSet(SUPPORTED_SDK_RANGE)

CLIENT_CONFIG = {
    # No JWT exchange, plain httpx, uncompressed protobuf, one fwd/bwd chunk at a time (so a
    # step's datums are applied in their order), no session-wide futures poller, no
    # server-side custom losses.
    "pjwt_auth_enabled": False,
    "use_pyqwest_transport": False,
    "proto_compress_fwdbwd": False,
    "parallel_fwdbwd_chunks": False,
    "sample_use_retrieve_futures": False,
    "custom_loss_server_side": False,
    "sample_join_sampling_session": False,
}
DYNAMIC_CONFIG = {"refresh_interval_sec": 300, "sample_cancel_enabled": False}


def unsupported_sdk(version: str | None) -> str | None:
    """Why a client of this SDK ``version`` is refused, or None when it is served.

    An absent version (a client that is not the SDK: curl, a port's own client) is served.
    """
    if version is None:
        return None
    try:
        parsed = Version(version)
    except InvalidVersion:
        return f"unparseable tinker SDK version {version!r}"
    if parsed in SUPPORTED_SDK:
        return None
    return (
        f"cookbook-serve speaks the wire protocol of tinker SDK {SUPPORTED_SDK_RANGE}, "
        f"this client is tinker {version}: pip install 'tinker{SUPPORTED_SDK_RANGE}'"
    )
