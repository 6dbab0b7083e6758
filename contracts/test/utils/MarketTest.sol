// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowTest} from "./EscrowTest.sol";
import {Merkle} from "./Merkle.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";

/// @notice Shared fixture for the market: an owner, buyers, share trees and a signed listing.
abstract contract MarketTest is EscrowTest {
    uint256 internal constant MODEL_ID = 42;
    uint256 internal constant UNIT = 1_000_000;

    address internal owner;

    function setUp() public virtual override {
        super.setUp();
        owner = makeAddr("owner");
    }

    /// @dev Share leaves `(i, contributor(i), weights[i])`; the weights should add up to UNIT.
    function shares(uint256[] memory weights) internal pure returns (Merkle.Payout[] memory) {
        return payouts(weights);
    }

    function listingSig(
        uint256 key,
        address by,
        uint256 modelId,
        uint256 price,
        uint16 bps,
        bytes32 root,
        uint256 nonce
    ) internal view returns (bytes memory) {
        return signDigest(key, escrow.listingDigest(modelId, by, MODEL, price, bps, root, nonce));
    }

    /// @dev `by` lists `modelId` with terms the coordinator signs now.
    function listAs(address by, uint256 modelId, uint256 price, uint16 bps, bytes32 root)
        internal
        returns (bytes32 listing)
    {
        bytes32 key = escrow.listingKey(by, signer, modelId);
        uint256 nonce = escrow.listings(key).nonce;
        bytes memory sig = listingSig(SIGNER_KEY, by, modelId, price, bps, root, nonce);
        vm.prank(by);
        listing = escrow.list(modelId, signer, MODEL, price, bps, root, sig);
    }

    function buy(address who, bytes32 listing, uint256 price) internal {
        vm.deal(who, who.balance + price);
        vm.prank(who);
        escrow.purchase{value: price}(listing);
    }

    function buyer(uint256 i) internal pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encode("oblivion.test.buyer", i)))));
    }

    function claimAll(bytes32 listing, Merkle.Payout[] memory p, Merkle.Tree memory t) internal {
        for (uint256 i = 0; i < p.length; i++) {
            uint256 owed = escrow.listings(listing).pool * p[i].amount / UNIT;
            if (owed > escrow.sharePaid(listing, p[i].index)) {
                escrow.claimShare(listing, p[i].index, p[i].account, p[i].amount, Merkle.proof(t, i));
            }
        }
    }
}
