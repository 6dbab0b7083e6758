// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketTest} from "./utils/MarketTest.sol";
import {Merkle} from "./utils/Merkle.sol";

contract OblivionMarketFuzzTest is MarketTest {
    /// @dev Weights for `n` leaves adding up to exactly UNIT.
    function weights(uint256 n, uint256 seed) internal pure returns (uint256[] memory w) {
        w = new uint256[](n);
        uint256 left = UNIT;
        for (uint256 i = 0; i + 1 < n; i++) {
            w[i] = bound(uint256(keccak256(abi.encode(seed, i))), 0, left);
            left -= w[i];
        }
        w[n - 1] = left;
    }

    /// @dev Random price, part, shares and sales, with claims made between sales: the owner and
    /// each leaf end up with exactly their rounded-down parts of all sales together, whatever
    /// the order and timing of the claims, and less than a wei per leaf stays behind.
    function testFuzz_SalesSplitExactly(uint256 price, uint16 bps, uint256 n, uint256 sales, uint256 seed) public {
        price = bound(price, 1, 1e30);
        bps = uint16(bound(bps, 0, escrow.MAX_CONTRIBUTORS_BPS()));
        n = bound(n, 1, 8);
        sales = bound(sales, 1, 6);
        uint256[] memory w = weights(n, seed);
        Merkle.Payout[] memory p = shares(w);
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, price, bps, bps == 0 ? bytes32(0) : Merkle.root(t));

        uint256 part = price * bps / 10_000;
        for (uint256 s = 0; s < sales; s++) {
            buy(buyer(s), listing, price);
            // Some leaves claim after some sales.
            if (bps != 0) {
                for (uint256 i = 0; i < n; i++) {
                    if (uint256(keccak256(abi.encode(seed, s, i))) % 3 == 0) {
                        uint256 owed = escrow.listings(listing).pool * w[i] / UNIT;
                        if (owed > escrow.sharePaid(listing, i)) {
                            escrow.claimShare(listing, i, p[i].account, w[i], Merkle.proof(t, i));
                        }
                    }
                }
            }
        }
        if (bps != 0) claimAll(listing, p, t);
        vm.prank(owner);
        escrow.withdraw();

        uint256 pool = part * sales;
        assertEq(owner.balance, (price - part) * sales, "owner: price less the contributors' part, per sale");
        uint256 paid = 0;
        for (uint256 i = 0; i < n; i++) {
            uint256 expected = bps == 0 ? 0 : pool * w[i] / UNIT;
            assertEq(p[i].account.balance, expected, "leaf: its weight of all sales, rounded down once");
            paid += expected;
        }
        assertEq(address(escrow).balance, pool - paid, "only rounding stays");
        assertLt(pool - paid, n, "less than a wei per leaf");
    }

    /// @dev Any payment other than the price is refused, and costs the buyer nothing.
    function testFuzz_OnlyThePriceBuys(uint256 price, uint256 sent) public {
        price = bound(price, 1, 1e30);
        sent = bound(sent, 0, 2e30);
        vm.assume(sent != price);
        bytes32 listing = listAs(owner, MODEL_ID, price, 0, bytes32(0));
        address b = buyer(1);
        vm.deal(b, sent);
        vm.prank(b);
        vm.expectRevert();
        escrow.purchase{value: sent}(listing);
        assertEq(b.balance, sent, "nothing taken");
        assertFalse(escrow.hasBought(listing, b), "nothing bought");
    }
}
