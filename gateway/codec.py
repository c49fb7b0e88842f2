"""The codec of the order-entry and feed protocols: bytes in, messages out, and messages
in, bytes out.

Strategy: sans-IO, in the manner of h11. A `Connection` holds no socket, clock or task; the
shell (the trio server, the client library, a test) feeds it what it read with
`receive_data`, takes messages out with `next_event` until it says `NEED_DATA`, and writes
whatever `send` returns. The same class serves both ends; `our_role` decides which messages
it may send and which it may receive, and the largest frame it accepts.

Rules:
- A frame is `u32 length | u8 type | body`, the length counting the type byte and the body.
  Each check runs as soon as the bytes it needs have arrived, in a fixed order: the frame's
  size against the sender's maximum (from the 4 length bytes, so an oversized frame is never
  buffered), then the type, then its direction (from the 5th byte), then the body (once
  complete). A shell that calls `next_event` until NEED_DATA before each read therefore
  never holds more than one frame of the largest size the peer may send, plus one read.
- Anything wrong in received bytes raises RemoteProtocolError, and the error is sticky:
  every later `next_event` raises it again, because after one bad frame nothing says where
  the next one starts. The shell answers with one Error frame (`send` still works) and
  closes.
- `send` checks everything before it returns a byte, so a LocalProtocolError leaves the
  outgoing stream intact; it is our bug, for the shell to log, and the connection can still
  carry an Error frame before it closes.
- A Connection serves one port (`Port.ORDER_ENTRY`, the default, or `Port.FEED`) and
  parses only that port's messages: another port's type byte is `message_type_must_be_known`
  like any unknown one.
- The codec knows nothing of login, sessions or throttling: those are the server's rules.
"""

from __future__ import annotations

import struct
from enum import Enum

from . import limits
from .codes import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from .messages import (
    CLIENT,
    FEED_PORT,
    FRAME_HEADER_SIZE,
    MESSAGES_OF_PORT,
    ORDER_ENTRY_PORT,
    SERVER,
    Message,
    Port,
    Role,
)

_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">IB")
_PREFIX_SIZE = limits.frame_length_prefix_size
assert _LENGTH.size == _PREFIX_SIZE and _HEADER.size == FRAME_HEADER_SIZE


class Signal(Enum):
    """What `next_event` returns when it has no message to give."""

    NEED_DATA = "need data"  # feed more bytes with receive_data
    CLOSED = "closed"  # the peer closed after a whole number of frames; nothing more comes


NEED_DATA = Signal.NEED_DATA
CLOSED = Signal.CLOSED


def frame_size_max(sender: Role) -> int:
    """The largest frame, length prefix included, that `sender` may send."""
    return limits.client_frame_size_max if sender is CLIENT else limits.server_frame_size_max


class Connection:
    """One end of one order-entry connection, as a state machine over bytes."""

    __slots__ = (
        "_buffer",
        "_error",
        "_messages",
        "_peer_closed",
        "_receive_size_max",
        "_send_size_max",
        "our_role",
        "port",
        "their_role",
    )

    def __init__(self, our_role: Role, port: Port = ORDER_ENTRY_PORT) -> None:
        assert our_role in (CLIENT, SERVER), our_role
        self.our_role = our_role
        self.port = port
        self._messages = MESSAGES_OF_PORT[port]
        self.their_role = SERVER if our_role is CLIENT else CLIENT
        self._receive_size_max = frame_size_max(self.their_role)
        self._send_size_max = frame_size_max(our_role)
        self._buffer = bytearray()
        self._peer_closed = False
        self._error: RemoteProtocolError | None = None

    @property
    def error(self) -> RemoteProtocolError | None:
        """The protocol error the peer made, once it made one."""
        return self._error

    @property
    def bytes_buffered(self) -> int:
        """Received bytes not yet returned as messages."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; b"" means the peer closed its side."""
        if self._peer_closed:
            # Like h11: more data after the end of the stream is the shell's bug.
            if data:
                raise RuntimeError("received data after the peer closed")
            return
        if not data:
            self._peer_closed = True
        elif self._error is None:
            # After an error nothing more is parsed, so nothing more is kept.
            self._buffer += data

    def next_event(self) -> Message | Signal:
        """The next message from the peer, NEED_DATA, or CLOSED. RemoteProtocolError if the
        bytes break the protocol, then again on every later call."""
        if self._error is not None:
            raise RemoteProtocolError(
                self._error.code, self._error.text, self._error.message_type
            ) from self._error
        try:
            return self._next_event()
        except RemoteProtocolError as error:
            self._error = error
            self._buffer.clear()  # nothing in it will ever be parsed
            raise

    def _next_event(self) -> Message | Signal:
        buffer = self._buffer
        available = len(buffer)
        if available < _PREFIX_SIZE:
            return self._incomplete(available)
        (length,) = _LENGTH.unpack_from(buffer)
        if length == 0:
            raise RemoteProtocolError(
                ErrorCode.FRAME_MUST_BE_COMPLETE, "a frame of length 0 has no type byte"
            )
        size = _PREFIX_SIZE + length
        if size > self._receive_size_max:
            raise RemoteProtocolError(
                ErrorCode.FRAME_MUST_FIT_MAX,
                f"a frame of {size} bytes is larger than the {self._receive_size_max} bytes "
                f"a {self.their_role.value} may send",
            )
        if available < FRAME_HEADER_SIZE:
            return self._incomplete(available)
        message_type = buffer[_PREFIX_SIZE]
        cls = self._messages.get(message_type)
        if cls is None:
            raise RemoteProtocolError(
                ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN,
                f"message type {message_type:#04x} is not a message of the {self.port.value} port",
                message_type,
            )
        if not cls.DIRECTION.sent_by(self.their_role):
            raise RemoteProtocolError(
                ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
                f"{cls.__name__} travels {cls.DIRECTION.value}, a {self.their_role.value} "
                f"may not send it",
                message_type,
            )
        if available < size:
            return self._incomplete(available)
        body = bytes(buffer[FRAME_HEADER_SIZE:size])
        # bytearray keeps an offset to its start, so dropping the front is cheap.
        del buffer[:size]
        return cls.decode_body(body)

    def _incomplete(self, available: int) -> Signal:
        if not self._peer_closed:
            return NEED_DATA
        if available:
            raise RemoteProtocolError(
                ErrorCode.FRAME_MUST_BE_COMPLETE,
                f"the {self.their_role.value} closed with {available} bytes of a frame unsent",
            )
        return CLOSED

    def send(self, message: Message) -> bytes:
        """The frame that carries `message`; LocalProtocolError if our side may not send it
        or a value does not fit, in which case nothing is to be written."""
        cls = type(message)
        if (
            not isinstance(message, Message)
            or self._messages.get(getattr(cls, "TYPE", -1)) is not cls
        ):
            raise LocalProtocolError(
                ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN,
                f"{cls.__name__} is not a message of the {self.port.value} port",
            )
        if not cls.DIRECTION.sent_by(self.our_role):
            raise LocalProtocolError(
                ErrorCode.MESSAGE_MUST_TRAVEL_ITS_DIRECTION,
                f"{cls.__name__} travels {cls.DIRECTION.value}, a {self.our_role.value} "
                f"may not send it",
                cls.TYPE,
            )
        body = message.encode_body()
        size = FRAME_HEADER_SIZE + len(body)
        if size > self._send_size_max:
            raise LocalProtocolError(
                ErrorCode.FRAME_MUST_FIT_MAX,
                f"{cls.__name__} needs a frame of {size} bytes, more than the "
                f"{self._send_size_max} bytes a {self.our_role.value} may send",
                cls.TYPE,
            )
        return _HEADER.pack(1 + len(body), cls.TYPE) + body


__all__ = [
    "CLIENT",
    "CLOSED",
    "FEED_PORT",
    "NEED_DATA",
    "ORDER_ENTRY_PORT",
    "SERVER",
    "Connection",
    "ErrorCode",
    "LocalProtocolError",
    "Port",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "Signal",
    "frame_size_max",
]
