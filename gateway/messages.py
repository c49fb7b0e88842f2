"""The messages of the order-entry and feed protocols: one frozen slotted dataclass each,
with its layout; `@message(..., ports)` says which port's table each belongs to.

Strategy: a message class's annotations are its field table. Each field is declared with its
wire type (`u64`, `string`, `query_results[OpenOrder]`, ...), which to Python is only an
alias of int, str, bytes or tuple. `@message(TYPE, direction)` makes the class a frozen
slotted dataclass and compiles the table once into a `Layout`: each run of fixed-size fields
becomes one struct.Struct, and each variable part (a string, a msgpack payload, a repeated
group) is one small step of its own. So every message's encode_body and decode_body are the
same code, driven by its table, and a test checks docs/protocol.md against the same tables.

Rules:
- Big-endian everywhere; integers are unsigned except i64. A body has exactly the length its
  layout gives: too short and too long are both `body_must_match_layout`, and the count of a
  repeated group must account for the body to the byte.
- Decoding trusts nothing and raises only RemoteProtocolError, with the code of the rule.
  Encoding checks every value first (type, range, exact length) and raises
  LocalProtocolError; it never lets struct pad or cut a value (struct's `32s` would).
- Only the layout and the few ranges it cannot express (`out_of_range`) are checked here,
  never business rules: a price of 0 or 200 is the engine's to reject, login and session
  rules are the server's.
- Execution reports mirror the engine's account events field for field (less account_id,
  which the session implies, plus the Raft index that produced them); that correspondence,
  and the one between order-entry messages and engine commands, is asserted at import.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Callable, Sequence
from enum import Enum, IntEnum, IntFlag
from typing import Any, ClassVar, Self, TypeAlias, TypeVar

import msgpack

from evx.core import ACCOUNT_EVENT_CODES, COMMANDS, EVENTS, STATE_HASH_SIZE, Record, constants

from . import limits
from .codes import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError

PROTOCOL_VERSION = 1
LOGIN_SIGNATURE_CONTEXT = b"evx-login-v1\x00"
NONCE_SIZE = 32
SIGNATURE_SIZE = 64  # Ed25519
FRAME_HEADER_SIZE = limits.frame_length_prefix_size + 1  # the length prefix and the type byte

assert constants.public_key_length == 32 and STATE_HASH_SIZE == 32  # both travel as bytes32


class Role(Enum):
    """Which end of the connection a codec is."""

    CLIENT = "client"
    SERVER = "server"


CLIENT = Role.CLIENT
SERVER = Role.SERVER


class Port(Enum):
    """Which of a node's two client ports a message belongs to: order entry (sessions of
    an account or an operator), or the public market-data feed."""

    ORDER_ENTRY = "order entry"
    FEED = "feed"


ORDER_ENTRY_PORT = Port.ORDER_ENTRY
FEED_PORT = Port.FEED
BOTH_PORTS = (ORDER_ENTRY_PORT, FEED_PORT)


class Direction(Enum):
    """Which way a message may travel."""

    CLIENT_TO_SERVER = "client to server"
    SERVER_TO_CLIENT = "server to client"
    BOTH = "both directions"

    def sent_by(self, role: Role) -> bool:
        if self is Direction.BOTH:
            return True
        return (self is Direction.CLIENT_TO_SERVER) == (role is Role.CLIENT)


class LoginFlag(IntFlag):
    NONE = 0
    CANCEL_ON_DISCONNECT = 1  # cancel the account's open orders when this session ends


class NodeRole(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


class StatusFlag(IntFlag):
    NONE = 0
    TRANSFERRING = 1  # the node is handing leadership over: its intake is paused


class AdminAction(IntEnum):
    """What a NodeAdmin asks the node it is sent to to do."""

    SNAPSHOT = 1  # take a snapshot now (and compact the log)
    TRANSFER = 2  # hand leadership to target_node_id (0: the most caught-up peer)
    ADD_NODE = 3  # make the node whose peer address is `address` a member (on the leader)
    REMOVE_NODE = 4  # remove the member whose peer address is `address` (on the leader)


# -- Wire types -------------------------------------------------------------------------------
# What a field is on the wire. To Python each is an alias of the type the field holds; the
# decorators below read the names from the annotations.

u8: TypeAlias = int
u16: TypeAlias = int
u32: TypeAlias = int
u64: TypeAlias = int
i64: TypeAlias = int
bytes32: TypeAlias = bytes
bytes64: TypeAlias = bytes
string: TypeAlias = str  # u16 byte length, then that many bytes of UTF-8
msgpack_array: TypeAlias = bytes  # u32 byte length, then one msgpack array
ItemT = TypeVar("ItemT")
query_results: TypeAlias = tuple[ItemT, ...]  # u16 count, then the items
book_levels: TypeAlias = tuple[ItemT, ...]  # u8 count, then the items
subscribe_markets: TypeAlias = tuple[ItemT, ...]  # u16 count, then the items
market_seqs: TypeAlias = tuple[ItemT, ...]  # u16 count, then the items

# name: (struct format, lowest value, highest value)
_INTEGERS = {
    "u8": ("B", 0, 2**8 - 1),
    "u16": ("H", 0, 2**16 - 1),
    "u32": ("I", 0, 2**32 - 1),
    "u64": ("Q", 0, 2**64 - 1),
    "i64": ("q", -(2**63), 2**63 - 1),
}
_BYTES = {"bytes32": 32, "bytes64": 64}
# name: (struct format of the count, most items)
_GROUPS = {
    "query_results": ("H", limits.query_results_max),
    "book_levels": ("B", limits.book_levels_per_side_max),
    "subscribe_markets": ("H", limits.subscribe_markets_max),
    "market_seqs": ("H", limits.heartbeat_markets_max),
}
_GROUP_ANNOTATION = re.compile(r"(\w+)\[(\w+)\]\Z")
_STRING_LENGTH = struct.Struct(">H")
_PAYLOAD_LENGTH = struct.Struct(">I")


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One row of a field table: the field's name and what it is on the wire."""

    name: str
    wire: str  # "u64", "string", "query_results[OpenOrder]", ...
    kind: str  # "int", "bytes", "string", "msgpack" or "group"
    format: str = ""  # the struct format of a fixed-size field, or of a group's count
    low: int = 0  # an integer's range
    high: int = 0
    length: int = 0  # the exact length of a bytes[N] field
    item: Any = None  # the entry class of a group
    count_max: int = 0  # the most entries a group may have

    @property
    def fixed(self) -> bool:
        return self.kind in ("int", "bytes")


def _field(name: str, wire: str) -> Field:
    if wire in _INTEGERS:
        format_, low, high = _INTEGERS[wire]
        return Field(name, wire, "int", format_, low, high)
    if wire in _BYTES:
        return Field(name, wire, "bytes", f"{_BYTES[wire]}s", length=_BYTES[wire])
    if wire == "string":
        return Field(name, wire, "string")
    if wire == "msgpack_array":
        return Field(name, wire, "msgpack")
    match = _GROUP_ANNOTATION.match(wire)
    assert match and match[1] in _GROUPS and match[2] in ITEMS, f"{name}: unknown type {wire}"
    count_format, count_max = _GROUPS[match[1]]
    return Field(name, wire, "group", count_format, item=ITEMS[match[2]], count_max=count_max)


# -- Checks shared by encoding and decoding ---------------------------------------------------


def _remote(cls: type, code: ErrorCode, text: str) -> RemoteProtocolError:
    return RemoteProtocolError(code, f"{cls.__name__}: {text}", getattr(cls, "TYPE", 0))


def _local(cls: type, code: ErrorCode, text: str) -> LocalProtocolError:
    return LocalProtocolError(code, f"{cls.__name__}: {text}", getattr(cls, "TYPE", 0))


def unpack_msgpack_array(data: bytes) -> tuple[Any, ...]:
    """The array in a msgpack payload, or ValueError. Strict: exactly one value and no
    extra bytes; no maps or extension types (canonical engine records have none); strings
    and byte strings no longer than any field may be; strings valid UTF-8; arrays nested
    at most `msgpack_nesting_max` deep."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_str_len=limits.string_length_max,
            max_bin_len=limits.string_length_max,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as error:
        # msgpack reports bad bytes as several ValueError subclasses (ExtraData, FormatError,
        # StackError, UnicodeDecodeError, exceeded limits); all mean "not well-formed".
        raise ValueError(f"not well-formed msgpack ({type(error).__name__}: {error})") from None
    if type(value) is not tuple:
        raise ValueError(f"msgpack must be an array, not {type(value).__name__}")
    # Iterative, so that no nesting depth can exhaust Python's stack here.
    pending = [(value, 1)]
    while pending:
        array, depth = pending.pop()
        if depth > limits.msgpack_nesting_max:
            raise ValueError(f"msgpack arrays nest deeper than {limits.msgpack_nesting_max}")
        pending.extend((element, depth + 1) for element in array if type(element) is tuple)
    return value


def _check_value(cls: type, field: Field, value: Any) -> None:
    """Raise LocalProtocolError unless `value` fits `field` exactly."""
    kind = field.kind
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _local(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, f"{field.name} must be an int")
        if not field.low <= value <= field.high:
            raise _local(
                cls,
                ErrorCode.VALUE_MUST_BE_IN_RANGE,
                f"{field.name}={value} does not fit {field.wire}",
            )
    elif kind == "bytes" and (type(value) is not bytes or len(value) != field.length):
        raise _local(
            cls,
            ErrorCode.VALUE_MUST_BE_IN_RANGE,
            f"{field.name} must be exactly {field.length} bytes",
        )


# -- Layouts ----------------------------------------------------------------------------------
# A layout is a list of steps; each reads its part of a body at an offset, or writes it.


class _FixedRun:
    """Consecutive fixed-size fields, read and written by one struct."""

    __slots__ = ("fields", "names", "struct")

    def __init__(self, fields: list[Field]) -> None:
        self.fields = tuple(fields)
        self.names = tuple(field.name for field in fields)
        self.struct = struct.Struct(">" + "".join(field.format for field in fields))

    def read(self, cls: type, body: bytes, offset: int, out: list[Any]) -> int:
        end = offset + self.struct.size
        if end > len(body):
            raise _remote(
                cls,
                ErrorCode.BODY_MUST_MATCH_LAYOUT,
                f"body ends at byte {len(body)} inside {self.names[0]}",
            )
        out.extend(self.struct.unpack_from(body, offset))
        return end

    def write(self, cls: type, values: Sequence[Any], parts: list[bytes]) -> None:
        for field, value in zip(self.fields, values, strict=True):
            _check_value(cls, field, value)
        parts.append(self.struct.pack(*values))


class _String:
    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field

    def read(self, cls: type, body: bytes, offset: int, out: list[Any]) -> int:
        name = self.field.name
        if offset + _STRING_LENGTH.size > len(body):
            raise _remote(cls, ErrorCode.BODY_MUST_MATCH_LAYOUT, f"body ends inside {name}")
        (length,) = _STRING_LENGTH.unpack_from(body, offset)
        if length > limits.string_length_max:
            raise _remote(
                cls,
                ErrorCode.VALUE_MUST_BE_IN_RANGE,
                f"{name} is {length} bytes, more than {limits.string_length_max}",
            )
        start = offset + _STRING_LENGTH.size
        end = start + length
        if end > len(body):
            raise _remote(cls, ErrorCode.BODY_MUST_MATCH_LAYOUT, f"body ends inside {name}")
        try:
            out.append(body[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            raise _remote(cls, ErrorCode.STRING_MUST_BE_UTF8, f"{name} is not UTF-8") from None
        return end

    def write(self, cls: type, values: Sequence[Any], parts: list[bytes]) -> None:
        (value,) = values
        name = self.field.name
        if type(value) is not str:
            raise _local(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, f"{name} must be a str")
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            raise _local(cls, ErrorCode.STRING_MUST_BE_UTF8, f"{name} is not UTF-8") from None
        if len(encoded) > limits.string_length_max:
            raise _local(
                cls,
                ErrorCode.VALUE_MUST_BE_IN_RANGE,
                f"{name} is {len(encoded)} bytes, more than {limits.string_length_max}",
            )
        parts.append(_STRING_LENGTH.pack(len(encoded)))
        parts.append(encoded)


class _Msgpack:
    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field

    def read(self, cls: type, body: bytes, offset: int, out: list[Any]) -> int:
        name = self.field.name
        if offset + _PAYLOAD_LENGTH.size > len(body):
            raise _remote(cls, ErrorCode.BODY_MUST_MATCH_LAYOUT, f"body ends inside {name}")
        (length,) = _PAYLOAD_LENGTH.unpack_from(body, offset)
        start = offset + _PAYLOAD_LENGTH.size
        end = start + length
        if end > len(body):
            raise _remote(cls, ErrorCode.BODY_MUST_MATCH_LAYOUT, f"body ends inside {name}")
        payload = body[start:end]
        try:
            unpack_msgpack_array(payload)
        except ValueError as error:
            raise _remote(
                cls, ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY, f"{name}: {error}"
            ) from None
        out.append(payload)
        return end

    def write(self, cls: type, values: Sequence[Any], parts: list[bytes]) -> None:
        (value,) = values
        name = self.field.name
        if type(value) is not bytes:
            raise _local(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, f"{name} must be bytes")
        try:
            unpack_msgpack_array(value)
        except ValueError as error:
            raise _local(
                cls, ErrorCode.PAYLOAD_MUST_BE_A_MSGPACK_ARRAY, f"{name}: {error}"
            ) from None
        parts.append(_PAYLOAD_LENGTH.pack(len(value)))
        parts.append(value)


class _Group:
    """A count, then that many fixed-size items."""

    __slots__ = ("count", "field", "item")

    def __init__(self, field: Field) -> None:
        self.field = field
        self.count = struct.Struct(">" + field.format)
        self.item = field.item

    def read(self, cls: type, body: bytes, offset: int, out: list[Any]) -> int:
        name = self.field.name
        if offset + self.count.size > len(body):
            raise _remote(cls, ErrorCode.BODY_MUST_MATCH_LAYOUT, f"body ends inside {name}")
        (count,) = self.count.unpack_from(body, offset)
        if count > self.field.count_max:
            raise _remote(
                cls,
                ErrorCode.VALUE_MUST_BE_IN_RANGE,
                f"{count} {name}, more than {self.field.count_max}",
            )
        start = offset + self.count.size
        end = start + count * self.item.SIZE
        if end > len(body):
            raise _remote(
                cls,
                ErrorCode.BODY_MUST_MATCH_LAYOUT,
                f"{count} {name} need {end - start} bytes, the body has {len(body) - start}",
            )
        item = self.item
        out.append(tuple(item(*values) for values in item.STRUCT.iter_unpack(body[start:end])))
        return end

    def write(self, cls: type, values: Sequence[Any], parts: list[bytes]) -> None:
        (items,) = values
        name = self.field.name
        if type(items) is not tuple and type(items) is not list:
            raise _local(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, f"{name} must be a tuple")
        if len(items) > self.field.count_max:
            raise _local(
                cls,
                ErrorCode.VALUE_MUST_BE_IN_RANGE,
                f"{len(items)} {name}, more than {self.field.count_max}",
            )
        parts.append(self.count.pack(len(items)))
        for entry in items:
            if type(entry) is not self.item:
                raise _local(
                    cls,
                    ErrorCode.VALUE_MUST_BE_IN_RANGE,
                    f"{name} must hold {self.item.__name__} items",
                )
            self.item.LAYOUT.steps[0].write(self.item, self.item.GETTER(entry), parts)


_Step = _FixedRun | _String | _Msgpack | _Group


class Layout:
    """A compiled field table: how one message or item is laid out in bytes."""

    __slots__ = ("fields", "getters", "size", "size_max", "steps")

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.fields = fields
        steps: list[_Step] = []
        getters: list[Callable[[Any], tuple[Any, ...]]] = []
        run: list[Field] = []  # fixed-size fields not yet in a step

        def end_run() -> None:
            if run:
                steps.append(_FixedRun(run))
                getters.append(_getter(tuple(field.name for field in run)))
                run.clear()

        for field in fields:
            if field.fixed:
                run.append(field)
                continue
            end_run()
            step_type = {"string": _String, "msgpack": _Msgpack, "group": _Group}[field.kind]
            steps.append(step_type(field))
            getters.append(_getter((field.name,)))
        end_run()
        if not steps:  # a message with no fields still has one (empty) step
            steps.append(_FixedRun([]))
            getters.append(_getter(()))
        self.steps = tuple(steps)
        self.getters = tuple(getters)
        # The exact size of a body with no variable part; else None.
        only = steps[0]
        self.size: int | None = (
            only.struct.size if len(steps) == 1 and isinstance(only, _FixedRun) else None
        )
        # The largest body the limits allow (None: only the frame size bounds it).
        self.size_max: int | None = 0
        for field in fields:
            self.size_max = _field_size_max(field, self.size_max)

    def encode(self, cls: type, message: Any) -> bytes:
        parts: list[bytes] = []
        for step, getter in zip(self.steps, self.getters, strict=True):
            step.write(cls, getter(message), parts)
        return b"".join(parts)

    def decode(self, cls: type, body: bytes) -> list[Any]:
        if self.size is not None:
            if len(body) != self.size:
                raise _remote(
                    cls,
                    ErrorCode.BODY_MUST_MATCH_LAYOUT,
                    f"body must be {self.size} bytes, got {len(body)}",
                )
            return list(self.steps[0].struct.unpack(body))  # type: ignore[union-attr]
        values: list[Any] = []
        offset = 0
        for step in self.steps:
            offset = step.read(cls, body, offset, values)
        if offset != len(body):
            raise _remote(
                cls,
                ErrorCode.BODY_MUST_MATCH_LAYOUT,
                f"body must end at byte {offset}, got {len(body) - offset} more",
            )
        return values


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    def get(message: Any) -> tuple[Any, ...]:
        return tuple(getattr(message, name) for name in names)

    return get


def _field_size_max(field: Field, total: int | None) -> int | None:
    if total is None or field.kind == "msgpack":
        return None
    if field.kind == "string":
        return total + _STRING_LENGTH.size + limits.string_length_max
    if field.kind == "group":
        return total + struct.calcsize(">" + field.format) + field.count_max * field.item.SIZE
    return total + struct.calcsize(">" + field.format)


def _fields_of(cls: type) -> tuple[Field, ...]:
    # With `from __future__ import annotations` each annotation is its source text: "u64".
    return tuple(_field(field.name, str(field.type)) for field in dataclasses.fields(cls))


# -- Messages ---------------------------------------------------------------------------------


class Message:
    """Base of every message; subclasses are made by `@message`."""

    __slots__ = ()
    TYPE: ClassVar[int]
    DIRECTION: ClassVar[Direction]
    LAYOUT: ClassVar[Layout]
    FIELDS: ClassVar[tuple[str, ...]]
    PORTS: ClassVar[tuple[Port, ...]]

    def encode_body(self) -> bytes:
        """The body (no length prefix, no type byte); LocalProtocolError if a value does
        not fit the layout or breaks a range rule."""
        cls = type(self)
        body = cls.LAYOUT.encode(cls, self)
        problem = self.out_of_range()
        if problem is not None:
            raise _local(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, problem)
        return body

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        """The message in `body`; RemoteProtocolError if it does not match the layout."""
        message = cls(*cls.LAYOUT.decode(cls, body))
        problem = message.out_of_range()
        if problem is not None:
            raise _remote(cls, ErrorCode.VALUE_MUST_BE_IN_RANGE, problem)
        return message

    def out_of_range(self) -> str | None:
        """What is wrong with a value the layout can hold but the protocol forbids, or None.
        Called only on values that fit their wire types."""
        return None


MESSAGES: dict[int, type[Message]] = {}  # the order-entry port's, by TYPE
FEED_MESSAGES: dict[int, type[Message]] = {}  # the feed port's, by TYPE
MESSAGES_OF_PORT = {ORDER_ENTRY_PORT: MESSAGES, FEED_PORT: FEED_MESSAGES}
MESSAGES_BY_NAME: dict[str, type[Message]] = {}  # of both ports
ITEMS: dict[str, type[Item]] = {}

MessageT = TypeVar("MessageT", bound=type[Message])


def message(
    type_code: int, direction: Direction, ports: tuple[Port, ...] = (ORDER_ENTRY_PORT,)
) -> Callable[[MessageT], MessageT]:
    """Make `cls` a frozen slotted dataclass and register it as message `type_code` of
    `ports`. A type code means one message whichever port it travels on."""

    def wrap(cls: MessageT) -> MessageT:
        assert 0 < type_code < 2**8, type_code
        assert all(type_code not in table for table in MESSAGES_OF_PORT.values()), (
            f"message type {type_code:#04x} used twice"
        )
        cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        fields = _fields_of(cls)
        cls.TYPE = type_code
        cls.DIRECTION = direction
        cls.LAYOUT = Layout(fields)
        cls.FIELDS = tuple(field.name for field in fields)
        cls.PORTS = ports
        for port in ports:
            MESSAGES_OF_PORT[port][type_code] = cls
        MESSAGES_BY_NAME[cls.__name__] = cls
        return cls

    return wrap


class Item:
    """Base of the fixed-size entries of repeated groups (an open order, a book level)."""

    __slots__ = ()
    LAYOUT: ClassVar[Layout]
    STRUCT: ClassVar[struct.Struct]
    SIZE: ClassVar[int]
    GETTER: ClassVar[Callable[[Any], tuple[Any, ...]]]


ItemClassT = TypeVar("ItemClassT", bound=type[Item])


def item(cls: ItemClassT) -> ItemClassT:
    cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
    fields = _fields_of(cls)
    assert all(field.fixed for field in fields), f"{cls.__name__}: items are fixed-size"
    cls.LAYOUT = Layout(fields)
    cls.STRUCT = cls.LAYOUT.steps[0].struct  # type: ignore[union-attr]
    cls.SIZE = cls.STRUCT.size
    cls.GETTER = cls.LAYOUT.getters[0]
    ITEMS[cls.__name__] = cls
    return cls


# -- 0x01-0x0f: the session -------------------------------------------------------------------


@message(0x01, Direction.SERVER_TO_CLIENT)
class Challenge(Message):
    """The server's first frame on every connection. The client signs `nonce` to log in."""

    protocol_version: u16
    node_id: u16
    nonce: bytes32
    applied_index: u64


@message(0x02, Direction.CLIENT_TO_SERVER)
class Login(Message):
    """Log in as `account_id` (0: as an operator). `signature` is Ed25519 over
    `login_signed_bytes(nonce, login)`, by the key whose public half is `public_key`."""

    protocol_version: u16
    account_id: u64
    public_key: bytes32
    next_seq: u64  # the first account event wanted; 0: none, start from now
    flags: u8  # LoginFlag
    signature: bytes64

    def out_of_range(self) -> str | None:
        return _flags_problem(self.flags, LoginFlag)


@message(0x03, Direction.SERVER_TO_CLIENT)
class LoginAccepted(Message):
    account_id: u64
    next_seq: u64  # the account_seq of the next execution report this session will get
    last_seq: u64  # the newest account_seq of the account on this node
    applied_index: u64
    heartbeat_interval_ms: u32

    def out_of_range(self) -> str | None:
        return _heartbeat_interval_problem(self.heartbeat_interval_ms)


@message(0x04, Direction.SERVER_TO_CLIENT)
class LoginRejected(Message):
    """The login failed; the server closes the connection after this frame."""

    reason: u16  # an ErrorCode
    text: string


@message(0x05, Direction.BOTH, BOTH_PORTS)
class Heartbeat(Message):
    applied_index: u64  # the sender's applied index; clients send 0


@message(0x06, Direction.CLIENT_TO_SERVER)
class Logout(Message):
    pass


@message(0x07, Direction.SERVER_TO_CLIENT, BOTH_PORTS)
class Error(Message):
    """Something the server could not do. `message_type` and `reference` say which message
    it concerns, by its type byte and the id the client gave it: a client_order_id for
    order entry, a request_id for queries and operator commands (docs/protocol.md lists
    each); 0 and 0 when it concerns the session as a whole."""

    code: u16  # an ErrorCode, or an engine Reject for a query about an unknown market
    message_type: u8
    reference: u64
    text: string

    @classmethod
    def about(cls, error: ProtocolError, reference: int = 0) -> Error:
        """The Error frame that answers a protocol error, its text cut to fit."""
        return cls(int(error.code), error.message_type, reference, fit_string(error.text))


def fit_string(text: str) -> str:
    """`text` cut to the most a string field holds, on a character boundary."""
    encoded = text.encode("utf-8", "replace")[: limits.string_length_max]
    return encoded.decode("utf-8", "ignore")


# -- 0x10-0x1f: order entry -------------------------------------------------------------------
# Field meanings are those of the engine's commands (evx.core.NewOrder, ...); the gateway
# adds the session's account (`command_from_order_entry`).


@message(0x10, Direction.CLIENT_TO_SERVER)
class NewOrder(Message):
    client_order_id: u64
    market_id: u32
    side: u8
    order_type: u8
    time_in_force: u8
    flags: u8
    self_trade_prevention: u8
    price: u8
    quantity: u32
    expire_time_ms: u64
    max_cost: u64
    order_group_id: u32  # 0: in no order group


@message(0x11, Direction.CLIENT_TO_SERVER)
class CancelOrder(Message):
    order_id: u64  # 0: name the order by client_order_id
    client_order_id: u64


@message(0x12, Direction.CLIENT_TO_SERVER)
class ReplaceOrder(Message):
    order_id: u64  # 0: name the order by client_order_id
    client_order_id: u64
    new_client_order_id: u64
    price: u8
    quantity: u32


@message(0x13, Direction.CLIENT_TO_SERVER)
class MassCancel(Message):
    market_id: u32  # 0: every market


@message(0x14, Direction.CLIENT_TO_SERVER)
class SetOrderGroup(Message):
    order_group_id: u32  # the account's own id for the group, 1 and up
    contract_limit: u32  # fills within the window that trigger the group
    window_ms: u32  # the rolling window, in batch time


@message(0x15, Direction.CLIENT_TO_SERVER)
class ResetOrderGroup(Message):
    order_group_id: u32


@message(0x16, Direction.CLIENT_TO_SERVER)
class ConvertNo(Message):
    client_order_id: u64  # unique like an order's: a resend is answered `exists`
    market_id: u32  # a market of an exhaustive event where the account holds the NO
    quantity: u32  # NO contracts that become a YES in every other market of the event


ORDER_ENTRY = (
    NewOrder,
    CancelOrder,
    ReplaceOrder,
    MassCancel,
    SetOrderGroup,
    ResetOrderGroup,
    ConvertNo,
)


def command_from_order_entry(entry: Message, account_id: int) -> tuple[Any, ...]:
    """The engine command (canonical form) for an order-entry message of `account_id`."""
    command = COMMANDS.by_name[type(entry).__name__]
    return (
        command.CODE,
        *(account_id if name == "account_id" else getattr(entry, name) for name in command.FIELDS),
    )


for _entry in ORDER_ENTRY:
    _command = COMMANDS.by_name[_entry.__name__]
    assert set(_command.FIELDS) == {"account_id", *_entry.FIELDS}, _entry.__name__


# -- 0x20-0x2f: execution reports, one per account event of the engine ------------------------


class ExecutionReport(Message):
    """An account event of the engine, numbered by `account_seq` in the account's stream and
    stamped with the Raft index of the log entry that produced it."""

    __slots__ = ()
    EVENT_CODE: ClassVar[int]


REPORTS: dict[int, type[ExecutionReport]] = {}  # by the engine's event code

ReportT = TypeVar("ReportT", bound=type[ExecutionReport])


_KINDS_BY_ENGINE_TYPE = {int: "int", str: "string", bytes: "bytes"}


def report(type_code: int, event_code: int) -> Callable[[ReportT], ReportT]:
    """Register `cls` as the execution report of the engine's account event `event_code`.
    Its fields must be the event's, in order, less account_id, with applied_index second."""

    def wrap(cls: ReportT) -> ReportT:
        cls = message(type_code, Direction.SERVER_TO_CLIENT)(cls)
        event = EVENTS.by_code[event_code]
        assert event_code in ACCOUNT_EVENT_CODES and event_code not in REPORTS
        assert event.FIELDS[:2] == ("account_id", "account_seq")
        names = cls.FIELDS  # named, so that ruff does not read the comparison as a constant
        assert names == ("account_seq", "applied_index", *event.FIELDS[2:]), cls.__name__
        for field, engine_type in zip(cls.LAYOUT.fields[2:], event.TYPES[2:], strict=True):
            assert field.kind == _KINDS_BY_ENGINE_TYPE[engine_type], (cls.__name__, field)
        cls.EVENT_CODE = event_code
        REPORTS[event_code] = cls
        return cls

    return wrap


@report(0x20, 1)
class OrderAccepted(ExecutionReport):
    account_seq: u64
    applied_index: u64
    order_id: u64
    client_order_id: u64
    market_id: u32
    side: u8
    order_type: u8
    time_in_force: u8
    price: u8
    quantity: u32
    flags: u8
    expire_time_ms: u64


@report(0x21, 2)
class OrderRejected(ExecutionReport):
    """The engine's CommandRejected: `reason` is an `evx.core.Reject` (100-699)."""

    account_seq: u64
    applied_index: u64
    command_code: u8
    client_order_id: u64
    related_id: u64
    reason: u16


@report(0x22, 3)
class OrderFilled(ExecutionReport):
    account_seq: u64
    applied_index: u64
    order_id: u64
    client_order_id: u64
    market_id: u32
    trade_id: u64
    side: u8
    price: u8
    quantity: u32
    fee: u64
    leaves_quantity: u32
    liquidity: u8
    position: i64


@report(0x23, 4)
class OrderCancelled(ExecutionReport):
    account_seq: u64
    applied_index: u64
    order_id: u64
    client_order_id: u64
    market_id: u32
    cancelled_quantity: u32
    reason: u8


@report(0x24, 5)
class OrderReplaced(ExecutionReport):
    account_seq: u64
    applied_index: u64
    order_id: u64
    client_order_id: u64
    previous_client_order_id: u64
    market_id: u32
    price: u8
    quantity: u32
    priority_kept: u8


@report(0x25, 6)
class MassCancelled(ExecutionReport):
    account_seq: u64
    applied_index: u64
    market_id: u32
    cancelled_orders: u32


@report(0x26, 7)
class AccountCreated(ExecutionReport):
    account_seq: u64
    applied_index: u64
    name: string
    public_key: bytes32


@report(0x27, 8)
class Deposited(ExecutionReport):
    account_seq: u64
    applied_index: u64
    amount: u64
    bank_reference: string
    cash: u64


@report(0x28, 9)
class Withdrawn(ExecutionReport):
    account_seq: u64
    applied_index: u64
    amount: u64
    bank_reference: string
    cash: u64


@report(0x29, 10)
class PositionSettled(ExecutionReport):
    account_seq: u64
    applied_index: u64
    market_id: u32
    position: i64
    payout: u64
    cash: u64


@report(0x2A, 11)
class OrderGroupUpdated(ExecutionReport):
    account_seq: u64
    applied_index: u64
    order_group_id: u32
    contract_limit: u32
    window_ms: u32
    filled: u64  # contracts its orders filled within the window
    triggered: u8  # 1: its orders were cancelled; new ones are refused until it is reset


@report(0x2B, 12)
class PositionsConverted(ExecutionReport):
    account_seq: u64
    applied_index: u64
    client_order_id: u64
    event_id: u32
    market_id: u32
    quantity: u32


@report(0x2C, 13)
class PayoutReleased(ExecutionReport):
    account_seq: u64
    applied_index: u64
    event_id: u32
    released: u64  # the payout released to the account in the event now, in cents
    cash: u64  # the account's available cash after it


@report(0x2D, 14)
class VariationMargin(ExecutionReport):
    account_seq: u64
    applied_index: u64
    market_id: u32
    mark: u8  # the new mark price, 0-100
    variation: i64  # + received, - paid: the position times the mark's move
    margin: u64  # the account's margin in the market after it
    cash: u64


@report(0x2E, 15)
class PositionReduced(ExecutionReport):
    account_seq: u64
    applied_index: u64
    market_id: u32
    quantity: u32  # contracts closed, at the mark
    position: i64  # after it
    reason: u8  # 1: liquidated (its margin fell below maintenance); 2: deleveraged
    margin: u64
    cash: u64


def report_from_event(event: Sequence[Any], applied_index: int) -> ExecutionReport:
    """The execution report of an engine account event in canonical form
    `(code, account_id, account_seq, ...)`, produced by the log entry at `applied_index`.
    LocalProtocolError if it is no account event; values are checked when it is sent."""
    cls = REPORTS.get(event[0]) if len(event) >= 3 else None
    if cls is None:
        raise LocalProtocolError(
            ErrorCode.MESSAGE_TYPE_MUST_BE_KNOWN, f"no execution report for event {event[:1]}"
        )
    if len(event) != len(cls.FIELDS) + 1:
        raise LocalProtocolError(
            ErrorCode.BODY_MUST_MATCH_LAYOUT,
            f"{cls.__name__} needs {len(cls.FIELDS) + 1} event values, got {len(event)}",
            cls.TYPE,
        )
    return cls(event[2], applied_index, *event[3:])


def event_from_report(report: ExecutionReport, account_id: int) -> tuple[Any, ...]:
    """The engine event (canonical form) that `report` was made from: its inverse."""
    values = dataclasses.astuple(report)
    return (report.EVENT_CODE, account_id, values[0], *values[2:])


# -- 0x30-0x3f: queries, and 0x40-0x4f: their answers -----------------------------------------
# A query is answered from the node's applied state once its applied index reaches
# `min_applied_index`; the answer names the index it was taken at.


@message(0x30, Direction.CLIENT_TO_SERVER)
class QueryOpenOrders(Message):
    request_id: u32
    min_applied_index: u64


@message(0x31, Direction.CLIENT_TO_SERVER)
class QueryPositions(Message):
    request_id: u32
    min_applied_index: u64


@message(0x32, Direction.CLIENT_TO_SERVER)
class QueryBalance(Message):
    request_id: u32
    min_applied_index: u64


@message(0x33, Direction.CLIENT_TO_SERVER)
class QueryBook(Message):
    request_id: u32
    min_applied_index: u64
    market_id: u32


@message(0x34, Direction.CLIENT_TO_SERVER)
class QueryEvent(Message):
    request_id: u32
    min_applied_index: u64
    event_id: u32  # 0: the event market_id belongs to
    market_id: u32  # used when event_id is 0


@item
class OpenOrder(Item):
    order_id: u64
    client_order_id: u64
    market_id: u32
    side: u8
    price: u8  # in the order's own terms
    remaining: u32
    quantity: u32
    time_in_force: u8
    flags: u8
    expire_time_ms: u64


@item
class Position(Item):
    market_id: u32
    position: i64  # + YES contracts, - NO contracts


@item
class EventMarket(Item):
    market_id: u32


@item
class BookLevel(Item):
    price: u8  # YES price
    quantity: u64
    orders: u32


@message(0x40, Direction.SERVER_TO_CLIENT)
class OpenOrders(Message):
    request_id: u32
    applied_index: u64
    orders: query_results[OpenOrder]


@message(0x41, Direction.SERVER_TO_CLIENT)
class Positions(Message):
    request_id: u32
    applied_index: u64
    positions: query_results[Position]


@message(0x42, Direction.SERVER_TO_CLIENT)
class Balance(Message):
    request_id: u32
    applied_index: u64
    cash: u64
    held: u64


@message(0x43, Direction.SERVER_TO_CLIENT)
class Book(Message):
    request_id: u32
    applied_index: u64
    market_id: u32
    status: u8  # MarketStatus
    bids: book_levels[BookLevel]  # best (highest) price first
    asks: book_levels[BookLevel]  # best (lowest) price first


@message(0x44, Direction.SERVER_TO_CLIENT)
class EventInfo(Message):
    """An event and its markets; for an account session, its hold and released payout
    there (0 for an operator session, and in an event that is not mutually exclusive)."""

    request_id: u32
    applied_index: u64
    event_id: u32
    mutually_exclusive: u8
    exhaustive: u8
    settled: u8
    winner_market_id: u32  # once settled; 0: none won (or not settled)
    house_sets: u64  # NO sets conversions left with the house
    hold: u64
    released: u64
    ticker: string
    markets: query_results[EventMarket]  # in market id order

    def out_of_range(self) -> str | None:
        if self.mutually_exclusive > 1 or self.exhaustive > self.mutually_exclusive:
            return "mutually_exclusive and exhaustive are 0 or 1, exhaustive only if exclusive"
        if self.settled > 1:
            return f"settled {self.settled} is not 0 or 1"
        return None


# -- 0x50-0x5f: operator commands -------------------------------------------------------------


def pack_msgpack_array(values: Sequence[Any]) -> bytes:
    return msgpack.packb(list(values), use_bin_type=True)


@message(0x50, Direction.CLIENT_TO_SERVER)
class OperatorCommand(Message):
    """One engine command in canonical form, as msgpack. Operator sessions only."""

    request_id: u32
    command: msgpack_array

    @classmethod
    def of(cls, request_id: int, command: Record | Sequence[Any]) -> OperatorCommand:
        canonical = command.to_canonical() if isinstance(command, Record) else command
        return cls(request_id, pack_msgpack_array(canonical))

    def command_value(self) -> tuple[Any, ...]:
        return unpack_msgpack_array(self.command)


# What fits of a command's events in an OperatorResult: the server frame, less the header,
# request_id, applied_index, event_count and the payload's length.
operator_result_events_size_max = limits.server_frame_size_max - FRAME_HEADER_SIZE - 4 - 8 - 4 - 4


@message(0x51, Direction.SERVER_TO_CLIENT)
class OperatorResult(Message):
    """The events of an operator command (canonical forms, as one msgpack array), its
    outcome first. A command can produce more events than one frame holds (settling a
    market pays every position): `event_count` is how many it produced, and `events` holds
    the first of them, as many as fit."""

    request_id: u32
    applied_index: u64
    event_count: u32
    events: msgpack_array

    @classmethod
    def of(
        cls, request_id: int, applied_index: int, events: Sequence[Sequence[Any]]
    ) -> OperatorResult:
        """The result for `events`, cut after as many as fit in one frame."""
        assert events, "every command has an outcome event"
        packer = msgpack.Packer(use_bin_type=True)
        packed: list[bytes] = []
        size = 5  # the most a msgpack array header takes
        for event in events:
            entry = packer.pack(list(event))
            if size + len(entry) > operator_result_events_size_max:
                break
            packed.append(entry)
            size += len(entry)
        assert packed, "the outcome event always fits"
        header = packer.pack_array_header(len(packed))
        return cls(request_id, applied_index, len(events), header + b"".join(packed))

    def event_values(self) -> tuple[Any, ...]:
        return unpack_msgpack_array(self.events)

    def out_of_range(self) -> str | None:
        # Decoded a second time: operator results are rare, and the check keeps a client
        # from believing it holds every event when it does not.
        listed = len(unpack_msgpack_array(self.events))
        if listed > self.event_count:
            return f"events lists {listed}, more than event_count {self.event_count}"
        return None


@message(0x52, Direction.CLIENT_TO_SERVER)
class NodeAdmin(Message):
    """An action on the node this session is connected to, not a replicated command.
    Operator sessions only."""

    request_id: u32
    action: u8  # AdminAction
    target_node_id: u16  # TRANSFER: the node to lead next, 0: the most caught-up; else 0
    address: string  # ADD_NODE, REMOVE_NODE: the node's peer (Raft) address; else empty

    def out_of_range(self) -> str | None:
        if self.action not in AdminAction._value2member_map_:
            return f"action {self.action} is not an AdminAction"
        return None


@message(0x53, Direction.SERVER_TO_CLIENT)
class NodeAdminResult(Message):
    """How a NodeAdmin ended. SNAPSHOT: `index` is the snapshot's log index. TRANSFER:
    `node_id` is the leader afterwards, `elapsed_us` how long this node's intake was
    paused. `text` says what happened, or why it did not, in words."""

    request_id: u32
    action: u8
    done: u8  # 1: done; 0: not done, nothing changed (text says why)
    node_id: u16
    index: u64
    elapsed_us: u64
    text: string

    def out_of_range(self) -> str | None:
        if self.action not in AdminAction._value2member_map_:
            return f"action {self.action} is not an AdminAction"
        if self.done > 1:
            return f"done {self.done} is not 0 or 1"
        return None


# -- 0x60-0x6f: the node's status (answered before login too) ---------------------------------


@message(0x60, Direction.CLIENT_TO_SERVER)
class QueryStatus(Message):
    request_id: u32


@message(0x61, Direction.SERVER_TO_CLIENT)
class Status(Message):
    request_id: u32
    node_id: u16
    role: u8  # NodeRole
    leader_node_id: u16  # 0: unknown
    term: u64
    commit_index: u64
    applied_index: u64
    state_hash: bytes32
    uptime_s: u32
    last_snapshot_index: u64  # 0: none yet
    log_entries: u64  # entries in this node's log (since the last compaction)
    peers_connected: u8  # of the other nodes, how many this node's Raft port reaches
    peers_total: u8
    flags: u8  # StatusFlag

    def out_of_range(self) -> str | None:
        if self.role not in NodeRole._value2member_map_:
            return f"role {self.role} is not a NodeRole"
        if self.peers_connected > self.peers_total:
            return f"peers_connected {self.peers_connected} > peers_total {self.peers_total}"
        return _flags_problem(self.flags, StatusFlag)


@message(0x62, Direction.CLIENT_TO_SERVER)
class QueryHash(Message):
    """The state hash right after log entry `index` was applied, as this node kept it."""

    request_id: u32
    index: u64


@message(0x63, Direction.SERVER_TO_CLIENT)
class HashAt(Message):
    request_id: u32
    index: u64
    kept: u8  # 1: state_hash is the hash at index; 0: not applied yet, or no longer kept
    state_hash: bytes32  # zeros when not kept
    applied_index: u64  # this node's, when it answered

    def out_of_range(self) -> str | None:
        if self.kept > 1:
            return f"kept {self.kept} is not 0 or 1"
        return None


# -- 0x70-0x7f: the market-data feed (the feed port) ------------------------------------------
# Public data, no login. A subscriber names markets and, for each, the last market_seq it
# has (0: none); the node answers Subscribed, then per market either the events after that
# sequence or a BookSnapshot, then every change as it is applied. Every frame that changes a
# book carries the market's sequence, the same on every node (docs/protocol.md section 11).


class SubscribeFlag(IntFlag):
    NONE = 0
    ALL_MARKETS = 1  # every market, those created later included


@message(0x70, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class FeedHello(Message):
    """The node's first frame on every feed connection."""

    protocol_version: u16
    node_id: u16
    applied_index: u64
    heartbeat_interval_ms: u32
    window_events: u32  # the events per market this node keeps for subscribers that resume
    markets_max: u32  # markets one connection may subscribe to

    def out_of_range(self) -> str | None:
        return _heartbeat_interval_problem(self.heartbeat_interval_ms)


@item
class MarketFrom(Item):
    market_id: u32
    after_seq: u64  # the last market_seq the subscriber has; 0: send a BookSnapshot


@message(0x71, Direction.CLIENT_TO_SERVER, (FEED_PORT,))
class Subscribe(Message):
    request_id: u32
    flags: u8  # SubscribeFlag
    markets: subscribe_markets[MarketFrom]

    def out_of_range(self) -> str | None:
        if problem := _flags_problem(self.flags, SubscribeFlag):
            return problem
        if len({market.market_id for market in self.markets}) != len(self.markets):
            return "a market is named twice"
        return None


@message(0x72, Direction.CLIENT_TO_SERVER, (FEED_PORT,))
class Unsubscribe(Message):
    request_id: u32
    market_id: u32  # 0: every market, and the ticker


@message(0x73, Direction.CLIENT_TO_SERVER, (FEED_PORT,))
class SubscribeTicker(Message):
    """Top of book and trades of every market, those created later included."""

    request_id: u32


class SubscribedFlag(IntFlag):
    NONE = 0
    ALL_MARKETS = 1
    TICKER = 2


@message(0x74, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class Subscribed(Message):
    """The answer to Subscribe, Unsubscribe and SubscribeTicker, before the frames they
    start."""

    request_id: u32
    markets: u32  # markets this connection is subscribed to now
    flags: u8  # SubscribedFlag
    applied_index: u64

    def out_of_range(self) -> str | None:
        return _flags_problem(self.flags, SubscribedFlag)


@message(0x75, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class BookSnapshot(Message):
    """A whole market at `market_seq`: its book (every level), status and settlement."""

    market_id: u32
    market_seq: u64
    status: u8  # MarketStatus
    outcome: i64  # once settled: 1 YES or 0 NO (binary), the value (scalar); else 0
    yes_payout: u8  # once settled: cents per YES contract; else 0
    mark: u8  # a futures market's mark price, 0-100; 0 for others
    ticker: string
    bids: book_levels[BookLevel]  # best (highest) price first
    asks: book_levels[BookLevel]  # best (lowest) price first

    def out_of_range(self) -> str | None:
        return _payout_problem(self.yes_payout) or _payout_problem(self.mark)


@message(0x76, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class LevelUpdate(Message):
    market_id: u32
    market_seq: u64
    side: u8  # BookSide
    price: u8  # YES price
    quantity: u64  # the level's whole quantity now; 0 removes the level
    orders: u32


@message(0x77, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class TradeUpdate(Message):
    market_id: u32
    market_seq: u64
    trade_id: u64
    price: u8  # YES price, the resting order's
    quantity: u64
    aggressor_side: u8  # BookSide of the taker: BID bought YES


@message(0x78, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class StatusUpdate(Message):
    market_id: u32
    market_seq: u64
    status: u8  # MarketStatus


@message(0x79, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class SettledUpdate(Message):
    market_id: u32
    market_seq: u64
    outcome: i64
    yes_payout: u8  # cents per YES contract; NO contracts get the rest of 100

    def out_of_range(self) -> str | None:
        return _payout_problem(self.yes_payout)


@message(0x7A, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class ConfigUpdate(Message):
    market_id: u32
    market_seq: u64
    taker_fee_bps: u32
    maker_fee_bps: u32
    position_limit: u64


@message(0x7D, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class MarkUpdate(Message):
    """A futures market was marked: every position there is now at this price."""

    market_id: u32
    market_seq: u64
    mark: u8  # 0-100

    def out_of_range(self) -> str | None:
        return _payout_problem(self.mark)


@message(0x7E, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class MarginUpdate(Message):
    """A futures market's margins (cents per contract) and how its mark moves."""

    market_id: u32
    market_seq: u64
    initial_margin: u8
    maintenance_margin: u8
    mark_band: u8
    mark_interval_ms: u32


@message(0x7B, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class TickerUpdate(Message):
    """One market's top of book after an applied log entry changed it (price 0: no level;
    last_price 0: no trade yet)."""

    market_id: u32
    market_seq: u64
    status: u8
    bid_price: u8
    bid_quantity: u64
    ask_price: u8
    ask_quantity: u64
    last_price: u8
    last_quantity: u64


@item
class MarketSeq(Item):
    market_id: u32
    market_seq: u64


@message(0x7C, Direction.SERVER_TO_CLIENT, (FEED_PORT,))
class FeedHeartbeat(Message):
    """Sent every heartbeat interval. Everything of the log up to `applied_index` that this
    connection subscribed to was sent before it; `markets` names each subscribed market
    whose sequence moved since the previous FeedHeartbeat (all of them in the first) with
    its latest market_seq, so that a subscriber missing the last change of a market that
    went quiet finds out within one interval."""

    applied_index: u64
    markets: market_seqs[MarketSeq]


def _flags_problem(flags: int, defined: type[IntFlag]) -> str | None:
    # Plain ints: the complement of an IntFlag member stays within the defined flags.
    if flags & ~sum(int(member) for member in defined):
        return f"flags {flags:#04x} has bits that are not defined"
    return None


def _payout_problem(yes_payout: int) -> str | None:
    if yes_payout > constants.contract_payout_cents:
        return f"yes_payout {yes_payout} is more than {constants.contract_payout_cents}"
    return None


def _heartbeat_interval_problem(interval_ms: int) -> str | None:
    if not limits.heartbeat_interval_ms_min <= interval_ms <= limits.heartbeat_interval_ms_max:
        return f"heartbeat_interval_ms {interval_ms} is out of range"
    return None


# -- Login signature --------------------------------------------------------------------------


def login_signed_bytes(nonce: bytes, login: Login) -> bytes:
    """What a login's signature signs: a fixed context string, the challenge's nonce, and
    the Login body up to (not including) the signature. The context keeps the signature
    from being valid for anything but an evx login; the nonce, fresh per connection, keeps
    it from being replayed; the body binds the account, key, replay point and flags."""
    assert len(nonce) == NONCE_SIZE, "the nonce comes from a decoded Challenge"
    return LOGIN_SIGNATURE_CONTEXT + nonce + login.encode_body()[:-SIGNATURE_SIZE]


assert Login.LAYOUT.fields[-1].name == "signature" and Login.LAYOUT.size is not None

# -- Relations, checked at import -------------------------------------------------------------
# Every message, at the largest size its layout and the limits allow, fits the frames of the
# directions it travels; those with a msgpack payload are bounded by the frame alone.
assert set(REPORTS) == set(EVENTS.by_code) & set(ACCOUNT_EVENT_CODES), (
    "one execution report per engine account event"
)
for _message in {**MESSAGES, **FEED_MESSAGES}.values():
    _size_max = _message.LAYOUT.size_max
    if _size_max is None:
        continue
    if _message.DIRECTION.sent_by(CLIENT):
        assert FRAME_HEADER_SIZE + _size_max <= limits.client_frame_size_max, _message
    if _message.DIRECTION.sent_by(SERVER):
        assert FRAME_HEADER_SIZE + _size_max <= limits.server_frame_size_max, _message
