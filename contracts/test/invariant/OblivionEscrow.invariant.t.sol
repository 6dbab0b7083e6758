// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InvariantBase, console} from "../Base.sol";
import {MockERC20} from "../mocks/MockERC20.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";
import {EscrowHandler} from "./EscrowHandler.sol";

contract OblivionEscrowInvariantTest is InvariantBase {
    OblivionEscrow internal escrow;
    EscrowHandler internal handler;
    MockERC20 internal token;

    function setUp() public {
        vm.warp(1_700_000_000);
        // A grace of 6 hours against time steps of up to 12 hours: runs cross every boundary.
        escrow = new OblivionEscrow(1 days, 6 hours);
        OblivionEscrow other = new OblivionEscrow(1 days, 6 hours);
        token = new MockERC20("Fee Token", "FEE", 100);
        handler = new EscrowHandler(escrow, other, token);

        bytes4[] memory selectors = new bytes4[](13);
        selectors[0] = EscrowHandler.fundNative.selector;
        selectors[1] = EscrowHandler.fundToken.selector;
        selectors[2] = EscrowHandler.fundDuplicate.selector;
        selectors[3] = EscrowHandler.settle.selector;
        selectors[4] = EscrowHandler.settleAsStranger.selector;
        selectors[5] = EscrowHandler.replaySettle.selector;
        selectors[6] = EscrowHandler.claim.selector;
        selectors[7] = EscrowHandler.claimInvalid.selector;
        selectors[8] = EscrowHandler.refund.selector;
        selectors[9] = EscrowHandler.sweep.selector;
        selectors[10] = EscrowHandler.warp.selector;
        selectors[11] = EscrowHandler.issue.selector;
        selectors[12] = EscrowHandler.submit.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice The escrow's native balance is exactly what its native jobs still owe:
    /// the sum over jobs of (deposit - paid out).
    function invariant_NativeBalanceMatchesLedger() public view {
        uint256 sum = 0;
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            EscrowHandler.JobInfo memory j = handler.info(handler.jobKeys(i));
            if (j.token == address(0)) sum += j.deposit - j.paidOut;
        }
        assertEq(sum, handler.nativeHeld(), "ledger sum");
        assertEq(address(escrow).balance, sum, "native balance == sum(deposit - paid out)");
    }

    /// @notice The same for the fee-on-transfer token.
    function invariant_TokenBalanceMatchesLedger() public view {
        assertEq(token.balanceOf(address(escrow)), handler.tokenHeld(), "token balance == sum(deposit - paid out)");
    }

    /// @notice claimed <= total <= deposit for every job, and the escrow's records agree with
    /// the handler's.
    function invariant_ClaimedWithinTotalWithinDeposit() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 job = handler.jobKeys(i);
            (,,,,, uint256 deposit, uint256 total, uint256 claimed,,,, OblivionEscrow.State state) = escrow.jobs(job);
            EscrowHandler.JobInfo memory j = handler.info(job);
            assertLe(claimed, total, "claimed <= total");
            assertLe(total, deposit, "total <= deposit");
            assertEq(deposit, j.deposit, "deposit");
            assertEq(claimed, j.claimed, "claimed");
            assertTrue(state == j.state, "state");
            assertEq(escrow.refundOpensAt(job), handler.refundAt(job), "refundOpensAt == deadline + 2 grace + 1");
        }
    }

    /// @notice No leaf index is ever paid twice, and the escrow marks exactly the paid ones.
    function invariant_NoIndexPaidTwice() public view {
        assertEq(handler.ghostDoublePays(), 0, "an index was paid twice");
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 job = handler.jobKeys(i);
            uint256 leaves = handler.leafCount(job);
            for (uint256 k = 0; k < leaves; k++) {
                uint256 paid = handler.payCount(job, k);
                assertLe(paid, 1, "paid at most once");
                assertEq(escrow.isClaimed(job, k), paid == 1, "isClaimed matches payouts");
            }
        }
    }

    /// @notice Within the grace after a settlement's issue, only the creator settles.
    function invariant_NoStrangerSettlesWithinGrace() public view {
        assertEq(handler.ghostStrangerSettles(), 0, "a non-creator settled within the grace");
    }

    /// @notice Every settle and refund attempt had exactly the outcome the rules give (creator at
    /// once, anyone after the grace, nobody once the refund is open; refund from
    /// `deadline + 2 grace + 1`), with the exact error when refused.
    function invariant_SettleAndRefundFollowTheRules() public view {
        assertEq(handler.ghostWrongSettleOutcomes(), 0, "a settle had the wrong outcome");
        assertEq(handler.ghostWrongRefundOutcomes(), 0, "a refund had the wrong outcome");
        assertEq(handler.ghostKeeperFailures(), 0, "contributors could not submit an issued settlement");
    }

    /// @notice A job whose coordinator issued a settlement by the deadline is never refunded:
    /// whatever its creator does, its contributors can submit the settlement first.
    function invariant_IssuedSettlementNeverRefunded() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 job = handler.jobKeys(i);
            if (handler.wasIssued(job)) {
                (,,,,,,,,,,, OblivionEscrow.State state) = escrow.jobs(job);
                assertTrue(state != OblivionEscrow.State.Refunded, "an issued settlement's job was refunded");
            }
        }
    }

    /// @notice A signature made for one job, chain, deployment or nonce never settles another.
    function invariant_NoSignatureReplay() public view {
        assertEq(handler.ghostReplays(), 0, "a replayed signature settled");
    }

    /// @notice Invalid claims never pay, and a used job key is never funded again.
    function invariant_InvalidCallsNeverSucceed() public view {
        assertEq(handler.ghostInvalidClaims(), 0, "an invalid claim paid");
        assertEq(handler.ghostDuplicateFunds(), 0, "a used key was funded again");
    }

    /// @notice After each run, print how many actions succeeded (visible with -vv), to show the
    /// runs reach every path.
    function afterInvariant() public view {
        console.log("jobs funded", handler.okFunds());
        console.log("settled", handler.okSettles());
        console.log("settlements issued", handler.okIssued());
        console.log("settled by non-creators", handler.okStrangerSettles());
        console.log("settled by contributors at their moment", handler.okKeeperSettles());
        console.log("claims paid", handler.okClaims());
        console.log("refunded", handler.okRefunds());
        console.log("swept", handler.okSweeps());
    }
}
