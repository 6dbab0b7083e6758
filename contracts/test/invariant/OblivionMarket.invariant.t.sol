// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InvariantBase, console} from "../Base.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";
import {OblivionMarket} from "../../src/OblivionMarket.sol";
import {Merkle} from "../utils/Merkle.sol";
import {MarketHandler} from "./MarketHandler.sol";

contract OblivionMarketInvariantTest is InvariantBase {
    OblivionEscrow internal escrow;
    MarketHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        escrow = new OblivionEscrow(1 days, 6 hours);
        handler = new MarketHandler(escrow);
        bytes4[] memory selectors = new bytes4[](7);
        selectors[0] = MarketHandler.list.selector;
        selectors[1] = MarketHandler.delist.selector;
        selectors[2] = MarketHandler.purchase.selector;
        selectors[3] = MarketHandler.claim.selector;
        selectors[4] = MarketHandler.claimForged.selector;
        selectors[5] = MarketHandler.withdraw.selector;
        selectors[6] = MarketHandler.warp.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice The escrow holds exactly what it owes: every owner's proceeds and every pool's
    /// unclaimed rest.
    function invariant_BalanceIsWhatIsOwed() public view {
        uint256 owed = escrow.proceeds(handler.owners(0)) + escrow.proceeds(handler.owners(1));
        for (uint256 i = 0; i < 4; i++) {
            OblivionMarket.Listing memory l = escrow.listings(handler.keys(i));
            owed += l.pool - l.poolClaimed;
        }
        assertEq(address(escrow).balance, owed, "balance == proceeds + unclaimed pools");
        assertEq(address(escrow).balance, handler.held(), "balance == ledger");
    }

    /// @notice Each pool took in exactly the contributors' parts of its sales, paid out at most
    /// that, and each leaf at most its weight of it.
    function invariant_PoolsMatchTheirSales() public view {
        for (uint256 i = 0; i < 4; i++) {
            OblivionMarket.Listing memory l = escrow.listings(handler.keys(i));
            assertEq(l.pool, handler.poolIn(i), "pool == contributors' parts");
            assertLe(l.poolClaimed, l.pool, "claimed <= pool");
            uint256 paid = 0;
            for (uint256 k = 0; k < 3; k++) {
                Merkle.Payout memory p = handler.leaf(k);
                uint256 s = escrow.sharePaid(handler.keys(i), k);
                assertLe(s, l.pool * p.amount / 1_000_000, "leaf <= its weight of the pool");
                paid += s;
            }
            assertEq(paid, l.poolClaimed, "leaves' sum == pool claimed");
        }
        for (uint256 o = 0; o < 2; o++) {
            address owner = handler.owners(o);
            assertEq(escrow.proceeds(owner), handler.owed(owner), "owner's proceeds == ledger");
        }
    }

    /// @notice No forbidden call ever succeeded.
    function invariant_ForbiddenCallsNeverSucceed() public view {
        assertEq(handler.ghostDoublePurchases(), 0, "a buyer bought twice");
        assertEq(handler.ghostWrongPayments(), 0, "a purchase paid other than the price, or an inactive listing");
        assertEq(handler.ghostForgedClaims(), 0, "a forged share claim paid");
        assertEq(handler.ghostOverpaidLeaves(), 0, "a leaf was paid beyond its weight");
        assertEq(handler.ghostStrangerWithdrawals(), 0, "a withdrawal paid other than the caller's proceeds");
    }

    function afterInvariant() public view {
        console.log("listings", handler.okListings());
        console.log("purchases", handler.okPurchases());
        console.log("share claims paid", handler.okClaims());
        console.log("withdrawals", handler.okWithdrawals());
    }
}
