"""Error codes of the gateway, and the two exceptions that carry them.

Strategy: like the engine's reject reasons (`evx.core.Reject`, 100-699), each code is named
after the rule that failed, travels on the wire as a u16 (in Error.code and
LoginRejected.reason) and is never renumbered or reused, only added. The gateway owns 1000
and up, in ranges by layer: 1000-1099 the codec (the bytes do not form a valid message),
1100-1199 login and what a session may do, 1200-1299 flow (rate, slow readers, silence),
1300-1399 the node's state. docs/protocol.md says for each code whether it ends the session.

Two exceptions, as in h11: `RemoteProtocolError` when the peer sent something that breaks
the protocol, `LocalProtocolError` when our own side tried to send something invalid (a bug
in our code, never the peer's fault). Both carry the code of the rule that failed and the
type byte of the message concerned (0 when there is none yet), so the shell can answer with
one Error frame without parsing the text.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    # 1000-1099: the codec. The session ends: after a malformed frame the byte stream can
    # no longer be trusted to be framed correctly.
    FRAME_MUST_FIT_MAX = 1000
    FRAME_MUST_BE_COMPLETE = 1001  # closed mid-frame, or a length of 0 (no type byte)
    MESSAGE_TYPE_MUST_BE_KNOWN = 1002
    MESSAGE_MUST_TRAVEL_ITS_DIRECTION = 1003
    BODY_MUST_MATCH_LAYOUT = 1004  # too short, too long, or counts that disagree with it
    STRING_MUST_BE_UTF8 = 1005
    VALUE_MUST_BE_IN_RANGE = 1006  # a value the layout can hold but the protocol forbids
    PAYLOAD_MUST_BE_A_MSGPACK_ARRAY = 1007

    # 1100-1199: login and what a session may do.
    VERSION_MUST_BE_SUPPORTED = 1100
    LOGIN_MUST_COME_FIRST = 1101
    LOGIN_MUST_COME_ONCE = 1102
    SIGNATURE_MUST_VERIFY = 1103
    ACCOUNT_MUST_EXIST_FOR_LOGIN = 1104
    PUBLIC_KEY_MUST_MATCH_ACCOUNT = 1105
    OPERATOR_KEY_REQUIRED = 1106
    ACCOUNT_LOGIN_REQUIRED = 1107
    SESSIONS_MUST_NOT_EXCEED_MAX = 1108
    REPLAY_MUST_BE_WITHIN_WINDOW = 1109

    # 1200-1299: flow.
    MESSAGES_MUST_NOT_EXCEED_RATE = 1200  # throttled
    READER_MUST_KEEP_UP = 1201  # a slow consumer
    HEARTBEAT_MUST_ARRIVE = 1202  # idle timeout

    # 1300-1399: the node's state.
    NODE_MUST_BE_READY = 1300
    QUERY_INDEX_NOT_REACHED = 1301
    OUTCOME_UNKNOWN = 1302  # the command may or may not have been applied: resend it as is
    REPORTS_MUST_BE_CONTINUOUS = 1303  # the node jumped to a snapshot: log in again

    # 1400-1499: the market-data feed.
    SUBSCRIPTIONS_MUST_NOT_EXCEED_MAX = 1400  # markets per feed connection

    @property
    def rule(self) -> str:
        """The code as written in docs and logs: `frame_must_fit_max`."""
        return self.name.lower()


class ProtocolError(Exception):
    """A frame or message that breaks the protocol. Use one of the two subclasses."""

    code: ErrorCode
    message_type: int

    def __init__(self, code: ErrorCode, text: str, message_type: int = 0) -> None:
        # As h11 does: the base class names no side, so raising it would hide whose fault
        # the error is.
        if type(self) is ProtocolError:
            raise TypeError("raise RemoteProtocolError or LocalProtocolError, not ProtocolError")
        super().__init__(text)
        self.code = code
        self.message_type = message_type

    @property
    def text(self) -> str:
        return str(self.args[0])


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid message for this direction."""


class LocalProtocolError(ProtocolError):
    """Our side tried to send something invalid: a bug on this side."""


__all__ = ["ErrorCode", "LocalProtocolError", "ProtocolError", "RemoteProtocolError"]
