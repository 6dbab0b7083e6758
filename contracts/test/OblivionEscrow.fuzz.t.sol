// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowTest} from "./utils/EscrowTest.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {OblivionEscrow} from "../src/OblivionEscrow.sol";

contract OblivionEscrowFuzzTest is EscrowTest {
    /// @dev Random deposit, total and split into up to 8 leaves summing exactly to the total:
    /// every leaf is paid exactly its amount, the creator gets the excess, and nothing is left.
    function testFuzz_SettleAndClaim_Reconciles(uint256 deposit, uint256 total, uint256 n, uint256 seed) public {
        deposit = bound(deposit, 1, 1e30);
        total = bound(total, 0, deposit);
        n = bound(n, 1, 8);

        uint256[] memory amounts = new uint256[](n);
        uint256 left = total;
        for (uint256 i = 0; i + 1 < n; i++) {
            amounts[i] = bound(uint256(keccak256(abi.encode(seed, i))), 0, left);
            left -= amounts[i];
        }
        amounts[n - 1] = left;

        Merkle.Payout[] memory p = payouts(amounts);
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 job = fundNative(1, deposit);
        settleAs(creator, job, Merkle.root(t), total);
        assertEq(creator.balance, deposit - total, "excess returned at settle");

        // Claim in a seed-dependent order.
        uint256 start = seed % n;
        for (uint256 j = 0; j < n; j++) {
            uint256 i = (start + j) % n;
            escrow.claim(job, p[i].index, p[i].account, p[i].amount, Merkle.proof(t, i));
        }
        for (uint256 i = 0; i < n; i++) {
            assertEq(p[i].account.balance, amounts[i], "leaf paid exactly");
        }
        assertEq(claimedOf(job), total, "claimed == total");
        assertEq(address(escrow).balance, 0, "escrow holds nothing");

        vm.warp(START + WINDOW + 1);
        escrow.sweep(job);
        assertEq(creator.balance, deposit - total, "sweep of a fully claimed job pays nothing");
    }

    /// @dev Random partial claims, then a sweep: creator + contributors get exactly the deposit.
    function testFuzz_PartialClaimsThenSweep(uint256 deposit, uint256 total, uint256 claimMask) public {
        deposit = bound(deposit, 4, 1e30);
        total = bound(total, 4, deposit);
        uint256 q = total / 4;
        uint256[] memory amounts = new uint256[](4);
        amounts[0] = q;
        amounts[1] = q;
        amounts[2] = q;
        amounts[3] = total - 3 * q;
        Merkle.Payout[] memory p = payouts(amounts);
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 job = fundNative(1, deposit);
        settleAs(creator, job, Merkle.root(t), total);

        uint256 paid = 0;
        for (uint256 i = 0; i < 4; i++) {
            if (claimMask & (1 << i) != 0) {
                escrow.claim(job, i, p[i].account, p[i].amount, Merkle.proof(t, i));
                paid += p[i].amount;
            }
        }
        vm.warp(START + WINDOW + 1);
        escrow.sweep(job);
        assertEq(creator.balance + paid, deposit, "everything accounted for");
        assertEq(address(escrow).balance, 0, "escrow holds nothing");
    }

    /// @dev Any key other than the named signer's fails, whatever it signs.
    function testFuzz_Settle_WrongSignerKeyReverts(uint256 key, bytes32 root, uint256 total) public {
        key = bound(key, 1, SECP256K1_N - 1);
        vm.assume(key != SIGNER_KEY);
        bytes32 job = fundNative(1, 1 ether);
        total = bound(total, 0, 1 ether);
        bytes memory sig = sign(key, escrow, job, root, total, 0);
        vm.prank(creator);
        vm.expectRevert(OblivionEscrow.InvalidSignature.selector);
        escrow.settle(job, root, total, MODEL, sig);
    }

    /// @dev Distinct (creator, signer, job id) triples give distinct keys, and a settlement signed
    /// for one never settles another, even for the same creator and signer.
    function testFuzz_JobKeys_NoCarryOver(uint256 idA, uint256 idB, address otherCreator) public {
        vm.assume(idA != idB);
        assertNotEq(escrow.jobKey(creator, signer, idA), escrow.jobKey(creator, signer, idB), "ids collide");
        if (otherCreator != creator) {
            assertNotEq(
                escrow.jobKey(creator, signer, idA), escrow.jobKey(otherCreator, signer, idA), "creators collide"
            );
        }

        bytes32 a = fundNative(creator, idA, 1 ether, START + 1 days);
        bytes32 b = fundNative(creator, idB, 1 ether, START + 1 days);
        bytes32 root = keccak256(abi.encode(idA, idB));
        bytes memory sigA = sign(SIGNER_KEY, escrow, a, root, 1 ether, 0);
        vm.prank(creator);
        vm.expectRevert(OblivionEscrow.InvalidSignature.selector);
        escrow.settle(b, root, 1 ether, MODEL, sigA);
        vm.prank(creator);
        escrow.settle(a, root, 1 ether, MODEL, sigA);
        assertTrue(stateOf(b) == OblivionEscrow.State.Funded, "other job untouched");
    }

    /// @dev Fee-on-transfer tokens: the escrow credits what arrived and can always pay it all out.
    function testFuzz_FeeToken_DepositIsWhatArrived(uint256 amount, uint256 feeBps) public {
        amount = bound(amount, 1, 1e30);
        feeBps = bound(feeBps, 0, 5_000);
        MockERC20 fee = new MockERC20("Fee", "FEE", feeBps);
        fee.mint(creator, amount);
        vm.startPrank(creator);
        fee.approve(address(escrow), amount);
        uint256 expected = amount - amount * feeBps / 10_000;
        if (expected == 0) {
            vm.expectRevert(OblivionEscrow.ZeroAmount.selector);
            escrow.fundToken(1, signer, SPEC, START + 1 days, fee, amount);
            vm.stopPrank();
            return;
        }
        bytes32 job = escrow.fundToken(1, signer, SPEC, START + 1 days, fee, amount);
        vm.stopPrank();
        (,,,,, uint256 deposit,,,,,,) = escrow.jobs(job);
        assertEq(deposit, expected, "deposit");
        assertEq(fee.balanceOf(address(escrow)), deposit, "held == deposit");
        vm.warp(START + 1 days + 1);
        escrow.refund(job);
        assertEq(fee.balanceOf(address(escrow)), 0, "refund drains exactly the deposit");
    }
}

