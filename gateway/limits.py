"""Every limit of the order-entry protocol, in one place.

Strategy: each thing a peer can make grow has a named maximum with its unit last (sizes are
in bytes, counts in items, time in milliseconds). The codec enforces them on what it
receives (a RemoteProtocolError) and on what it sends (a LocalProtocolError), so neither
side ever buffers or builds more than these. Relations between these limits, and with the
engine's limits that decide how big an honest answer can get, are asserted at import: a bad
edit fails the first test run instead of a production node.

Limits of a deployment rather than of the protocol (message rate per session, sessions per
account, how long a query waits for an index, the replay window) belong to the server's
configuration; docs/protocol.md names the error code a client gets for each.
"""

from __future__ import annotations

from evx.core import constants as engine

# -- Frames -----------------------------------------------------------------------------------
# A frame's size counts everything on the wire: the 4-byte length prefix, the type byte and
# the body. Clients only ever send small fixed-size messages, so their frames are held
# tight; answers from the server may list every open order or position of an account.
client_frame_size_max = 4_096
server_frame_size_max = 1_048_576
frame_length_prefix_size = 4  # the u32 before each frame; its value counts the rest

# -- Fields -----------------------------------------------------------------------------------
string_length_max = 256  # bytes of UTF-8 in one string field (or one msgpack str or bin)
query_results_max = 10_000  # entries in one OpenOrders or Positions answer
book_levels_per_side_max = engine.price_max_cents - engine.price_min_cents + 1
# The feed: markets named in one Subscribe (a client subscribes to more with several), and
# markets listed in one FeedHeartbeat (every market there is, at most).
subscribe_markets_max = 256
heartbeat_markets_max = engine.markets_max
# Arrays within arrays in an operator payload, the outermost counting 1. A canonical command
# is an array of scalars and a command's events an array of such arrays; deeper nesting
# means nothing, and msgpack's packer refuses more than 511 levels, so a payload nested
# deeper than the gateway could re-pack into a log entry must never get that far.
msgpack_nesting_max = 3

# -- Heartbeats -------------------------------------------------------------------------------
# The server announces its interval in LoginAccepted, within these bounds. Each side sends a
# Heartbeat when it has sent nothing else for an interval, and a side that has received
# nothing for `heartbeat_intervals_silent_max` intervals closes the session.
heartbeat_interval_ms_min = 100
heartbeat_interval_ms_max = 60_000
heartbeat_intervals_silent_max = 3

# -- Relations between limits, checked at import ----------------------------------------------
assert frame_length_prefix_size + 1 <= client_frame_size_max <= server_frame_size_max
assert server_frame_size_max < 2**32  # the length prefix is a u32
assert 0 < string_length_max < 2**16  # a string's length is a u16
# Engine names, tickers and bank references are ASCII (one byte a character) and must fit.
assert string_length_max >= engine.account_name_length_max
assert string_length_max >= engine.bank_reference_length_max
assert string_length_max >= engine.ticker_length_max
# One answer holds every open order of an account, and a position in every market.
assert query_results_max < 2**16  # the count is a u16
assert query_results_max >= engine.open_orders_per_account_max
assert query_results_max >= engine.markets_max
assert 0 < book_levels_per_side_max < 2**8  # the count of levels is a u8
assert 0 < subscribe_markets_max < 2**16 and 0 < heartbeat_markets_max < 2**16  # u16 counts
assert 2 <= msgpack_nesting_max < 511  # a list of events nests 2 deep
assert 0 < heartbeat_interval_ms_min <= heartbeat_interval_ms_max < 2**32
assert heartbeat_intervals_silent_max >= 2  # one late heartbeat must not end a session
