"""Every limit of the engine, in one place.

Strategy: each thing that can grow has a named maximum with its unit last. The engine
rejects a command that would pass a limit with a reject reason named after that limit; it
never grows without bound and never raises. Relations between limits are asserted at
import, so a bad edit fails the first test run instead of a production node.

Money is in cents, quantities in contracts, prices in cents (1 to 99), time in
milliseconds of batch time. Everything is an integer.
"""

from __future__ import annotations

# -- Contracts and prices ---------------------------------------------------------------------
contract_payout_cents = 100  # a YES and a NO of one market together always pay this
price_min_cents = 1
price_max_cents = 99

# -- Ids --------------------------------------------------------------------------------------
# Every id and counter travels as an unsigned 64-bit integer on the wire; the engine keeps
# them below 2**63 so that a signed reader is never surprised either.
id_max = 2**63 - 1
time_ms_max = 2**63 - 1

# -- Sizes of the exchange --------------------------------------------------------------------
markets_max = 10_000
accounts_max = 1_000_000
open_orders_per_account_max = 2_000
open_orders_per_market_max = 1_000_000
batch_commands_max = 4_096

# client_order_id is unique among an account's open orders and among its last
# `client_order_ids_remembered_per_account_max` accepted orders (see docs/engine.md).
client_order_ids_remembered_per_account_max = 4_096

# -- Orders -----------------------------------------------------------------------------------
order_quantity_max = 1_000_000
gtd_horizon_ms_max = 366 * 24 * 3_600 * 1_000
market_order_max_cost_cents_max = 10**13

# -- Order groups (a kill switch: docs/engine.md) ---------------------------------  # float-ok
order_group_id_max = 2**32 - 1  # ids are the account's own, 1 and up
order_groups_per_account_max = 100
order_group_contract_limit_max = 100_000_000
order_group_window_ms_max = 24 * 3_600 * 1_000

# -- Positions and fees -----------------------------------------------------------------------
position_limit_max = 100_000_000
position_limit_default = 1_000_000
fee_bps_max = 10_000  # 100 %: above this a closing fill could cost more than it returns
fee_denominator = 1_000_000  # fee = ceil(bps * C * p * (100 - p) / this)  # float-ok
taker_fee_bps_default = 700  # Kalshi's 7 % taker formula
maker_fee_bps_default = 0

# -- Money ------------------------------------------------------------------------------------
deposit_amount_max_cents = 10**11
account_cash_max_cents = 10**12
# all money in the exchange (deposits less withdrawals) stays below this, so every sum of
# cents, holds and escrow fits in a signed 64-bit integer in snapshots and events
exchange_money_max_cents = 2**62
bank_references_max = 10_000_000

# -- Events (groups of markets; docs/engine.md) -----------------------------------------------
events_max = 10_000
# A mutually exclusive event's hold walks the account's markets in it on every fill there:
# this bounds that walk.
markets_per_event_max = 256

# -- Futures (margin, not full collateral; docs/engine.md section 4) ----------------------------
# Margins are cents per contract of position. A mark moves at most mark_band from the
# previous one, and mark_band <= maintenance, so an account at or above maintenance can
# always pay the next mark's variation margin: nobody's money can run out between marks.
futures_initial_margin_default = 20
futures_maintenance_margin_default = 10
futures_mark_band_default = 5
futures_mark_price_default = 50  # until the first mark
futures_mark_interval_ms_max = 24 * 3_600 * 1_000

# -- Names ------------------------------------------------------------------------------------
ticker_length_max = 32
account_name_length_max = 64
bank_reference_length_max = 64
public_key_length = 32  # Ed25519

# -- Scalar markets ---------------------------------------------------------------------------
scalar_bound_abs_max = 10**15
scalar_range_max = 10**15

# -- Relations between limits, checked at import ----------------------------------------------
assert 0 < price_min_cents < price_max_cents < contract_payout_cents
assert order_quantity_max <= position_limit_max
assert position_limit_default <= position_limit_max
assert fee_bps_max <= fee_denominator // contract_payout_cents
assert taker_fee_bps_default <= fee_bps_max and maker_fee_bps_default <= fee_bps_max
assert deposit_amount_max_cents <= account_cash_max_cents
assert account_cash_max_cents <= exchange_money_max_cents < 2**63
assert open_orders_per_account_max <= open_orders_per_market_max
assert client_order_ids_remembered_per_account_max >= open_orders_per_account_max
assert batch_commands_max >= 1
assert 2 <= markets_per_event_max <= markets_max and events_max <= markets_max
assert (
    1
    <= futures_mark_band_default
    <= futures_maintenance_margin_default
    <= futures_initial_margin_default
    <= contract_payout_cents
)
assert price_min_cents <= futures_mark_price_default <= price_max_cents
# a position of order_quantity_max at the widest price fits easily in 63 bits with fees
assert position_limit_max * contract_payout_cents * fee_bps_max * contract_payout_cents < 2**63
