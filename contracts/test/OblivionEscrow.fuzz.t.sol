// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowTest} from "./utils/EscrowTest.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {OblivionEscrow} from "../src/OblivionEscrow.sol";
import {EscrowCore} from "../src/EscrowCore.sol";

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
        bytes memory sig = sign(key, escrow, job, root, total, 0, START);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, total, MODEL, START, sig);
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
        bytes memory sigA = sign(SIGNER_KEY, escrow, a, root, 1 ether, 0, START);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(b, root, 1 ether, MODEL, START, sigA);
        vm.prank(creator);
        escrow.settle(a, root, 1 ether, MODEL, START, sigA);
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
            vm.expectRevert(EscrowCore.ZeroAmount.selector);
            escrow.fundToken(1, signer, SPEC, START + 1 days, fee, amount);
            vm.stopPrank();
            return;
        }
        bytes32 job = escrow.fundToken(1, signer, SPEC, START + 1 days, fee, amount);
        vm.stopPrank();
        (,,,,, uint256 deposit,,,,,,) = escrow.jobs(job);
        assertEq(deposit, expected, "deposit");
        assertEq(fee.balanceOf(address(escrow)), deposit, "held == deposit");
        vm.warp(escrow.refundOpensAt(job));
        escrow.refund(job);
        assertEq(fee.balanceOf(address(escrow)), 0, "refund drains exactly the deposit");
    }

    /// @dev The guarantee the grace gives contributors: whatever the grace, the deadline, when the
    /// settlement was issued (at most the deadline) and when it is first seen (any time before the
    /// refund opens), the creator can submit it at once, and a stranger at
    /// `max(now, issuedAt + grace)`, which always comes before the refund opens. Until then the
    /// refund stays shut.
    function testFuzz_IssuedSettlement_AlwaysSubmittableBeforeRefund(
        uint256 grace,
        uint256 deadlineDelta,
        uint256 issuedAt,
        uint256 seenAt,
        address caller
    ) public {
        grace = bound(grace, 1, 3650 days);
        OblivionEscrow e = new OblivionEscrow(WINDOW, uint64(grace));
        uint64 deadline = uint64(bound(deadlineDelta, 1, 3650 days)) + START;
        uint64 issued = uint64(bound(issuedAt, 0, deadline));
        vm.deal(creator, 2 ether);
        vm.startPrank(creator);
        bytes32 a = e.fund{value: 1 ether}(1, signer, SPEC, deadline);
        bytes32 b = e.fund{value: 1 ether}(2, signer, SPEC, deadline);
        vm.stopPrank();
        uint256 refundAt = e.refundOpensAt(a);
        assertEq(refundAt, uint256(deadline) + 2 * grace + 1, "refundOpensAt");
        // Seen some time after it was issued (and after funding), but before the refund opens.
        uint256 seen = bound(seenAt, issued > START ? issued : START, refundAt - 1);
        bytes memory sigA = sign(SIGNER_KEY, e, a, keccak256("root"), 1 ether, 0, issued);
        bytes memory sigB = sign(SIGNER_KEY, e, b, keccak256("root"), 1 ether, 0, issued);

        // The creator can submit it at once.
        vm.warp(seen);
        vm.prank(creator);
        e.settle(a, keccak256("root"), 1 ether, MODEL, issued, sigA);

        // Anyone else once the grace since issue is over, which is still before the refund opens.
        uint256 open = seen > uint256(issued) + grace ? seen : uint256(issued) + grace;
        assertLt(open, refundAt, "a stranger's turn comes before the refund");
        vm.warp(open);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.RefundNotOpen.selector, refundAt));
        e.refund(b);
        if (caller == creator) caller = stranger;
        vm.prank(caller);
        e.settle(b, keccak256("root"), 1 ether, MODEL, issued, sigB);
        assertTrue(e.nonces(a) == 1 && e.nonces(b) == 1, "both settled");
    }

    /// @dev The grace rule for any caller at any time: the creator may settle from issue until the
    /// refund opens; anyone else from `issuedAt + GRACE` until the refund opens, and before that
    /// gets `SettlementInGrace(issuedAt + GRACE)`. At and after `refundOpensAt` nobody may.
    function testFuzz_Settle_GraceRule(address caller, uint256 issuedAt, uint256 time) public {
        if (caller == address(vm)) caller = stranger; // the cheatcode address cannot be pranked
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 1 ether, deadline);
        uint64 issued = uint64(bound(issuedAt, 0, deadline));
        uint256 refundAt = escrow.refundOpensAt(job);
        time = bound(time, issued > START ? issued : START, refundAt + 1 days);
        bytes memory sig = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether, 0, issued);

        vm.warp(time);
        uint256 opensAt = uint256(issued) + GRACE;
        if (time >= refundAt) {
            vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.RefundOpen.selector, refundAt));
        } else if (caller != creator && time < opensAt) {
            vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.SettlementInGrace.selector, opensAt));
        }
        vm.prank(caller);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issued, sig);
        bool settled = time < refundAt && (caller == creator || time >= opensAt);
        assertEq(stateOf(job) == OblivionEscrow.State.Settled, settled, "settled exactly when allowed");
    }

    /// @dev Whatever the grace and time: refund succeeds exactly from `deadline + 2 * grace + 1`,
    /// and a settlement issued at the deadline is accepted exactly before that.
    function testFuzz_RefundOpensExactlyAt(uint256 grace, uint256 deadlineDelta, uint256 time) public {
        grace = bound(grace, 1, 3650 days);
        OblivionEscrow e = new OblivionEscrow(WINDOW, uint64(grace));
        uint64 deadline = uint64(bound(deadlineDelta, 1, 3650 days)) + START;
        vm.deal(creator, 2 ether);
        vm.startPrank(creator);
        bytes32 a = e.fund{value: 1 ether}(1, signer, SPEC, deadline);
        bytes32 b = e.fund{value: 1 ether}(2, signer, SPEC, deadline);
        vm.stopPrank();
        uint256 refundAt = uint256(deadline) + 2 * grace + 1;
        assertEq(e.refundOpensAt(a), refundAt, "refundOpensAt");
        time = bound(time, START, refundAt + 3650 days);
        bytes memory sig = sign(SIGNER_KEY, e, b, keccak256("root"), 1 ether, 0, deadline);
        vm.warp(time);
        if (time < refundAt) {
            vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.RefundNotOpen.selector, refundAt));
            e.refund(a);
            if (time >= deadline) {
                vm.prank(creator);
                e.settle(b, keccak256("root"), 1 ether, MODEL, deadline, sig);
            }
        } else {
            e.refund(a);
            vm.prank(creator);
            vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.RefundOpen.selector, refundAt));
            e.settle(b, keccak256("root"), 1 ether, MODEL, deadline, sig);
        }
    }
}

