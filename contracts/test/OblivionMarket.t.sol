// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketTest} from "./utils/MarketTest.sol";
import {Merkle} from "./utils/Merkle.sol";
import {OblivionEscrow} from "../src/OblivionEscrow.sol";
import {OblivionMarket} from "../src/OblivionMarket.sol";
import {EscrowCore} from "../src/EscrowCore.sol";

/// @dev Refuses every payment, to show a failed payout reverts and loses nothing.
contract Refuser {
    receive() external payable {
        revert("no");
    }
}

contract OblivionMarketTest is MarketTest {
    uint256 internal constant PRICE = 1 ether;

    function threeShares() internal pure returns (Merkle.Payout[] memory) {
        // 50 %, 30 %, 20 % of the contributors' part.
        return shares(triple(500_000, 300_000, 200_000));
    }

    function test_ListPurchaseClaimWithdraw_PaysEveryoneExactly() public {
        Merkle.Payout[] memory p = threeShares();
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 2_000, Merkle.root(t));
        assertEq(listing, escrow.listingKey(owner, signer, MODEL_ID), "key");

        address b = buyer(1);
        buy(b, listing, PRICE);
        assertTrue(escrow.hasBought(listing, b), "bought");
        assertFalse(escrow.hasBought(listing, stranger), "a stranger bought nothing");
        assertEq(escrow.proceeds(owner), 0.8 ether, "owner's part owed");
        assertEq(escrow.listings(listing).pool, 0.2 ether, "contributors' pool");

        vm.prank(owner);
        escrow.withdraw();
        assertEq(owner.balance, 0.8 ether, "owner withdrew");
        claimAll(listing, p, t);
        assertEq(p[0].account.balance, 0.1 ether, "50 % of the pool");
        assertEq(p[1].account.balance, 0.06 ether, "30 %");
        assertEq(p[2].account.balance, 0.04 ether, "20 %");
        assertEq(address(escrow).balance, 0, "nothing left");
    }

    function test_ClaimsAccumulateOverLaterSales() public {
        Merkle.Payout[] memory p = threeShares();
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 1_000, Merkle.root(t));
        buy(buyer(1), listing, PRICE);
        escrow.claimShare(listing, 0, p[0].account, p[0].amount, Merkle.proof(t, 0));
        assertEq(p[0].account.balance, 0.05 ether, "first sale");

        vm.expectRevert(OblivionMarket.NothingToClaim.selector);
        escrow.claimShare(listing, 0, p[0].account, p[0].amount, Merkle.proof(t, 0));

        buy(buyer(2), listing, PRICE);
        buy(buyer(3), listing, PRICE);
        escrow.claimShare(listing, 0, p[0].account, p[0].amount, Merkle.proof(t, 0));
        assertEq(p[0].account.balance, 0.15 ether, "three sales, claimed in two goes");
        assertEq(escrow.sharePaid(listing, 0), 0.15 ether, "paid so far");
    }

    function test_RoundingLeavesLessThanAWeiPerLeaf() public {
        // Three equal thirds of a pool that does not divide by three.
        Merkle.Payout[] memory p = shares(triple(333_334, 333_333, 333_333));
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, 1001, 5_000, Merkle.root(t));
        buy(buyer(1), listing, 1001);
        // 1001 * 5000 / 10000 = 500 (floor); the owner gets 501.
        assertEq(escrow.proceeds(owner), 501, "owner takes the rounding of the split");
        assertEq(escrow.listings(listing).pool, 500, "pool");
        claimAll(listing, p, t);
        // floor(500 * 333334 / 1e6) = 166, floor(500 * 333333 / 1e6) = 166, 166.
        assertEq(p[0].account.balance, 166, "leaf 0");
        assertEq(p[1].account.balance, 166, "leaf 1");
        assertEq(p[2].account.balance, 166, "leaf 2");
        assertEq(escrow.listings(listing).poolClaimed, 498, "claimed");
        assertLt(escrow.listings(listing).pool - 498, 3, "less than a wei per leaf stays");
    }

    function test_PurchaseNeedsExactlyThePrice() public {
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 0, bytes32(0));
        address b = buyer(1);
        vm.deal(b, 2 ether);
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.WrongPayment.selector, 0.5 ether, PRICE));
        escrow.purchase{value: 0.5 ether}(listing);
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.WrongPayment.selector, 1.5 ether, PRICE));
        escrow.purchase{value: 1.5 ether}(listing);
        vm.prank(b);
        escrow.purchase{value: PRICE}(listing);
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.AlreadyBought.selector, b));
        escrow.purchase{value: PRICE}(listing);
        assertEq(escrow.proceeds(owner), PRICE, "no contributors: all to the owner");
    }

    function test_APriceRaisedUnderAPendingPurchaseRevertsIt() public {
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 0, bytes32(0));
        // The owner raises the price before the buyer's transaction is mined.
        listAs(owner, MODEL_ID, 3 ether, 0, bytes32(0));
        address b = buyer(1);
        vm.deal(b, 3 ether);
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.WrongPayment.selector, PRICE, 3 ether));
        escrow.purchase{value: PRICE}(listing);
        assertEq(b.balance, 3 ether, "the buyer paid nothing");
    }

    function test_ListingNeedsTheCoordinatorsSignatureForTheseTerms() public {
        Merkle.Tree memory t = Merkle.build(threeShares());
        bytes32 root = Merkle.root(t);
        bytes memory sig = listingSig(SIGNER_KEY, owner, MODEL_ID, PRICE, 2_000, root, 0);
        // A larger part for nobody, a lower price, another model, another lister: each refused.
        vm.startPrank(owner);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE / 2, 2_000, root, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 1_000, root, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID + 1, signer, MODEL, PRICE, 2_000, root, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, keccak256("other weights"), PRICE, 2_000, root, sig);
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 2_000, root, sig);
        // Signed by another key.
        bytes memory forged = listingSig(0xBAD, owner, MODEL_ID, PRICE, 2_000, root, 0);
        vm.prank(owner);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 2_000, root, forged);
        // The right one works once: the nonce moves on.
        vm.prank(owner);
        bytes32 listing = escrow.list(MODEL_ID, signer, MODEL, PRICE, 2_000, root, sig);
        assertEq(escrow.listings(listing).nonce, 1, "nonce");
        vm.prank(owner);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 2_000, root, sig);
    }

    function test_ContributorsPartIsCapped() public {
        bytes32 root = Merkle.root(Merkle.build(threeShares()));
        uint16 over = escrow.MAX_CONTRIBUTORS_BPS() + 1;
        bytes memory sig = listingSig(SIGNER_KEY, owner, MODEL_ID, PRICE, over, root, 0);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.ContributorsShareTooHigh.selector, over, 5_000));
        escrow.list(MODEL_ID, signer, MODEL, PRICE, over, root, sig);
        // A part for contributors needs some.
        sig = listingSig(SIGNER_KEY, owner, MODEL_ID, PRICE, 100, bytes32(0), 0);
        vm.prank(owner);
        vm.expectRevert(OblivionMarket.NoContributors.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 100, bytes32(0), sig);
        sig = listingSig(SIGNER_KEY, owner, MODEL_ID, 0, 0, bytes32(0), 0);
        vm.prank(owner);
        vm.expectRevert(EscrowCore.ZeroAmount.selector);
        escrow.list(MODEL_ID, signer, MODEL, 0, 0, bytes32(0), sig);
    }

    function test_SharesAndModelHashNeverChangeOnceListed() public {
        bytes32 root = Merkle.root(Merkle.build(threeShares()));
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 2_000, root);
        buy(buyer(1), listing, PRICE);
        // Relisting with other shares would re-split the pool already taken in.
        bytes32 mine = Merkle.root(Merkle.build(shares(pair(999_999, 1))));
        bytes memory sig = listingSig(SIGNER_KEY, owner, MODEL_ID, PRICE, 2_000, mine, 1);
        vm.prank(owner);
        vm.expectRevert(OblivionMarket.ListingTermsFixed.selector);
        escrow.list(MODEL_ID, signer, MODEL, PRICE, 2_000, mine, sig);
        // A new price and part are fine, and apply to later sales only.
        listAs(owner, MODEL_ID, 2 ether, 0, root);
        buy(buyer(2), listing, 2 ether);
        assertEq(escrow.listings(listing).pool, 0.2 ether, "the first sale's part stays");
        assertEq(escrow.proceeds(owner), 0.8 ether + 2 ether, "owner's parts");
    }

    function test_DelistStopsSalesNotClaims() public {
        Merkle.Payout[] memory p = threeShares();
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 2_000, Merkle.root(t));
        buy(buyer(1), listing, PRICE);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.NotOwner.selector, owner));
        escrow.delist(listing);
        vm.prank(owner);
        escrow.delist(listing);
        vm.deal(buyer(2), PRICE);
        vm.prank(buyer(2));
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.NotListed.selector, listing));
        escrow.purchase{value: PRICE}(listing);
        claimAll(listing, p, t);
        assertEq(p[0].account.balance, 0.1 ether, "claims go on after delisting");
        vm.prank(owner);
        escrow.withdraw();
        assertEq(owner.balance, 0.8 ether, "and withdrawals");
    }

    function test_ForgedShareClaimsPayNothing() public {
        Merkle.Payout[] memory p = threeShares();
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 2_000, Merkle.root(t));
        buy(buyer(1), listing, PRICE);
        bytes32[] memory proof = Merkle.proof(t, 0);
        // A bigger weight, another account, another index: the proof does not hold.
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claimShare(listing, 0, p[0].account, UNIT, proof);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claimShare(listing, 0, stranger, p[0].amount, proof);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claimShare(listing, 1, p[0].account, p[0].amount, proof);
        // A listing with no contributors has no leaves at all.
        bytes32 bare = listAs(owner, MODEL_ID + 1, PRICE, 0, bytes32(0));
        buy(buyer(1), bare, PRICE);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claimShare(bare, 0, stranger, 0, new bytes32[](0));
        // The owner's proceeds are the owner's alone.
        vm.prank(stranger);
        vm.expectRevert(OblivionMarket.NothingToWithdraw.selector);
        escrow.withdraw();
    }

    function test_AFaultyRootNeverPaysMoreThanThePool() public {
        // Leaves whose weights add up to twice the unit: the second claim is cut off.
        Merkle.Payout[] memory p = shares(pair(UNIT, UNIT));
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 listing = listAs(owner, MODEL_ID, PRICE, 5_000, Merkle.root(t));
        buy(buyer(1), listing, PRICE);
        escrow.claimShare(listing, 0, p[0].account, UNIT, Merkle.proof(t, 0));
        vm.expectRevert(abi.encodeWithSelector(OblivionMarket.PoolExceeded.selector, 1 ether, 0.5 ether));
        escrow.claimShare(listing, 1, p[1].account, UNIT, Merkle.proof(t, 1));
    }

    function test_AFailedPayoutRevertsAndLosesNothing() public {
        Refuser r = new Refuser();
        bytes32 root = Merkle.root(Merkle.build(threeShares()));
        bytes32 listing = listAs(address(r), MODEL_ID, PRICE, 2_000, root);
        buy(buyer(1), listing, PRICE);
        vm.prank(address(r));
        vm.expectRevert(abi.encodeWithSelector(EscrowCore.NativeTransferFailed.selector, address(r), 0.8 ether));
        escrow.withdraw();
        assertEq(escrow.proceeds(address(r)), 0.8 ether, "still owed");
    }

    function test_ListingsOfOneOwnerOrSignerDoNotMeet() public {
        bytes32 root = Merkle.root(Merkle.build(threeShares()));
        bytes32 a = listAs(owner, MODEL_ID, PRICE, 2_000, root);
        bytes32 b = listAs(stranger, MODEL_ID, PRICE, 2_000, root);
        assertNotEq(a, b, "one model id, two owners, two listings");
        buy(buyer(1), a, PRICE);
        assertFalse(escrow.hasBought(b, buyer(1)), "a purchase is of one listing");
    }

    function test_EventsNameTheSale() public {
        bytes32 root = Merkle.root(Merkle.build(threeShares()));
        bytes32 listing = escrow.listingKey(owner, signer, MODEL_ID);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionMarket.Listed(listing, owner, signer, MODEL_ID, MODEL, PRICE, 2_000, root, 0);
        listAs(owner, MODEL_ID, PRICE, 2_000, root);
        address b = buyer(1);
        vm.deal(b, PRICE);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionMarket.Purchased(listing, b, MODEL_ID, PRICE, 0.8 ether, 0.2 ether);
        vm.prank(b);
        escrow.purchase{value: PRICE}(listing);
    }
}
