// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EscrowTest} from "./utils/EscrowTest.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MockERC20} from "./mocks/MockERC20.sol";
import {OblivionEscrow} from "../src/OblivionEscrow.sol";
import {EscrowCore} from "../src/EscrowCore.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice A creator that is a contract: on receiving a payout it tries to re-enter the escrow.
contract ReentrantCreator {
    OblivionEscrow internal immutable escrow;
    bytes32 public job;
    bytes public reentryError;
    uint256 public received;
    bool public rejectPayments;

    constructor(OblivionEscrow escrow_) {
        escrow = escrow_;
    }

    function fund(uint256 jobId, address signer, uint64 deadline) external payable {
        job = escrow.fund{value: msg.value}(jobId, signer, bytes32(0), deadline);
    }

    function setRejectPayments(bool reject) external {
        rejectPayments = reject;
    }

    receive() external payable {
        require(!rejectPayments, "no thanks");
        received += msg.value;
        try escrow.refund(job) {
            reentryError = "reentry succeeded";
        } catch (bytes memory err) {
            reentryError = err;
        }
    }
}

contract OblivionEscrowTest is EscrowTest {
    // ------------------------------------------------------------------ construction and keys

    function test_Constructor_RejectsZeroWindow() public {
        vm.expectRevert(OblivionEscrow.ZeroClaimWindow.selector);
        new OblivionEscrow(0, GRACE);
    }

    function test_Constructor_RejectsZeroGrace() public {
        vm.expectRevert(OblivionEscrow.ZeroSettleGrace.selector);
        new OblivionEscrow(WINDOW, 0);
    }

    function test_Constructor_RecordsWindowAndGrace() public view {
        assertEq(escrow.claimWindow(), WINDOW, "claim window");
        assertEq(escrow.settleGrace(), GRACE, "settle grace");
    }

    function test_JobKey_BindsCreatorSignerAndJobId() public view {
        bytes32 k = escrow.jobKey(creator, signer, 7);
        assertEq(k, keccak256(abi.encode(creator, signer, uint256(7))), "key encoding");
        assertNotEq(k, escrow.jobKey(stranger, signer, 7), "creator not bound");
        assertNotEq(k, escrow.jobKey(creator, stranger, 7), "signer not bound");
        assertNotEq(k, escrow.jobKey(creator, signer, 8), "job id not bound");
    }

    /// @dev Recomputes the EIP-712 digest from its definition, so the type string and domain
    /// off-chain code uses are pinned here.
    function test_SettlementDigest_MatchesEip712Definition() public view {
        bytes32 job = keccak256("job");
        bytes32 root = keccak256("root");
        bytes32 typeHash = keccak256(
            "Settlement(bytes32 job,bytes32 root,uint256 total,bytes32 modelHash,uint256 nonce,uint64 issuedAt)"
        );
        assertEq(escrow.SETTLEMENT_TYPEHASH(), typeHash, "typehash");
        assertEq(typeHash, 0x57bba6a9d0cffc337e383cc7f09da2983fd5053a20872fcdf31294f01b72bada, "typehash value");
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("OblivionEscrow"),
                keccak256("1"),
                block.chainid,
                address(escrow)
            )
        );
        uint64 issuedAt = START - 1 hours;
        // issuedAt is encoded as a uint64 widened to a full 32-byte word.
        bytes32 structHash =
            keccak256(abi.encode(typeHash, job, root, uint256(5 ether), MODEL, uint256(0), uint256(issuedAt)));
        bytes32 expected = keccak256(abi.encodePacked("\x19\x01", domain, structHash));
        assertEq(escrow.settlementDigest(job, root, 5 ether, MODEL, 0, issuedAt), expected, "digest");
        assertNotEq(escrow.settlementDigest(job, root, 5 ether, MODEL, 0, issuedAt + 1), expected, "issuedAt not bound");
    }

    /// @dev A fixed vector for off-chain implementations of the job key, the digest and the
    /// signature (RFC 6979 deterministic ECDSA, as wallets and k256 produce): chain id 31337, the
    /// escrow at 0x5615dEB798BB3E4dFa0139dFa1b3D433Cc23b72f (the first contract a forge test
    /// deploys), coordinator key 0xC0FFEE, job id 7, root = keccak256("root"), total = 5 ether,
    /// modelHash = keccak256("model: weights v1"), nonce 0, issuedAt 1700000000. Checked against
    /// an independent keccak/EIP-712/RFC 6979 implementation.
    function test_SettlementDigest_FixedVector() public {
        vm.chainId(31337);
        assertEq(address(escrow), 0x5615dEB798BB3E4dFa0139dFa1b3D433Cc23b72f, "escrow address");
        assertEq(signer, 0xF5A5E415061470A8b9137959180901aEa72450a4, "signer address");
        assertEq(creator, 0xe1164Eb5D7892A8e85CcaB3097e8202AD9e33d88, "creator address");
        bytes32 job = fundNative(7, 5 ether);
        assertEq(job, 0x2c80e6d46b029b0d294657614b531670819a9c6e22ab3142aaf39bd19122b3f0, "job key");
        assertEq(
            escrow.SETTLEMENT_TYPEHASH(), 0x57bba6a9d0cffc337e383cc7f09da2983fd5053a20872fcdf31294f01b72bada, "typehash"
        );
        uint64 issuedAt = 1_700_000_000;
        bytes32 digest = escrow.settlementDigest(job, keccak256("root"), 5 ether, MODEL, 0, issuedAt);
        assertEq(digest, 0x19fb0968d3e450209606fb5bd74ebf56c53812c8be1f9d29952de741baaa7d80, "digest");
        bytes memory sig = abi.encodePacked(
            bytes32(0x11ac2088ace1a38c750a6db095d44e34cc198e06a36f24517d482368edb3283b),
            bytes32(0x3e576b379e9ed170fdc37838ac5fee7f401d1d7c55d6dd9bc90173c72a272e4e),
            uint8(28)
        );
        assertEq(keccak256(signDigest(SIGNER_KEY, digest)), keccak256(sig), "deterministic signature");
        vm.prank(creator);
        escrow.settle(job, keccak256("root"), 5 ether, MODEL, issuedAt, sig);
    }

    // ------------------------------------------------------------------ fund

    function test_Fund_Native_RecordsJob() public {
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 3 ether, deadline);
        assertEq(job, escrow.jobKey(creator, signer, 1), "returned key");
        (
            address c,
            address s,
            address t,
            uint64 d,
            uint64 settledAt,
            uint256 deposit,
            uint256 total,
            uint256 claimed,
            bytes32 root,
            bytes32 spec,
            bytes32 model,
            OblivionEscrow.State state
        ) = escrow.jobs(job);
        assertEq(c, creator, "creator");
        assertEq(s, signer, "signer");
        assertEq(t, address(0), "native token");
        assertEq(d, deadline, "deadline");
        assertEq(settledAt, 0, "settledAt");
        assertEq(deposit, 3 ether, "deposit");
        assertEq(total + claimed, 0, "total/claimed");
        assertEq(root, bytes32(0), "root");
        assertEq(spec, SPEC, "spec");
        assertEq(model, bytes32(0), "model");
        assertTrue(state == OblivionEscrow.State.Funded, "state");
        assertEq(address(escrow).balance, 3 ether, "escrow balance");
        assertEq(escrow.nonces(job), 0, "nonce");
    }

    function test_Fund_Native_EmitsFunded() public {
        uint64 deadline = START + 1 days;
        bytes32 job = escrow.jobKey(creator, signer, 42);
        vm.deal(creator, 1 ether);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Funded(job, creator, signer, 42, address(0), 1 ether, deadline, SPEC);
        vm.prank(creator);
        escrow.fund{value: 1 ether}(42, signer, SPEC, deadline);
    }

    function test_FundToken_PullsAndEmits() public {
        uint64 deadline = START + 2 days;
        token.mint(creator, 100e18);
        vm.prank(creator);
        token.approve(address(escrow), 40e18);
        bytes32 job = escrow.jobKey(creator, signer, 9);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Funded(job, creator, signer, 9, address(token), 40e18, deadline, SPEC);
        vm.prank(creator);
        escrow.fundToken(9, signer, SPEC, deadline, token, 40e18);
        assertEq(token.balanceOf(address(escrow)), 40e18, "escrow token balance");
        assertEq(token.balanceOf(creator), 60e18, "creator token balance");
        (,, address t,,, uint256 deposit,,,,,,) = escrow.jobs(job);
        assertEq(t, address(token), "token");
        assertEq(deposit, 40e18, "deposit");
    }

    function test_FundToken_FeeOnTransfer_CreditsWhatArrived() public {
        MockERC20 feeToken = new MockERC20("Fee", "FEE", 100); // 1 %
        feeToken.mint(creator, 100e18);
        vm.startPrank(creator);
        feeToken.approve(address(escrow), 100e18);
        bytes32 job = escrow.fundToken(1, signer, SPEC, START + 1 days, feeToken, 100e18);
        vm.stopPrank();
        (,,,,, uint256 deposit,,,,,,) = escrow.jobs(job);
        assertEq(deposit, 99e18, "deposit is what arrived");
        assertEq(feeToken.balanceOf(address(escrow)), 99e18, "escrow holds the deposit");
    }

    function test_Fund_RejectsBadInputs() public {
        vm.deal(creator, 10 ether);
        vm.startPrank(creator);
        vm.expectRevert(EscrowCore.ZeroAmount.selector);
        escrow.fund{value: 0}(1, signer, SPEC, START + 1);
        vm.expectRevert(EscrowCore.ZeroSigner.selector);
        escrow.fund{value: 1}(1, address(0), SPEC, START + 1);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.DeadlineNotInFuture.selector, START));
        escrow.fund{value: 1}(1, signer, SPEC, START);
        vm.expectRevert(EscrowCore.ZeroAmount.selector);
        escrow.fundToken(1, signer, SPEC, START + 1, token, 0);
        vm.expectRevert(OblivionEscrow.ZeroToken.selector);
        escrow.fundToken(1, signer, SPEC, START + 1, MockERC20(address(0)), 1);
        vm.stopPrank();
    }

    function test_Fund_RejectsUsedKey() public {
        bytes32 job = fundNative(1, 1 ether);
        vm.deal(creator, 1 ether);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobExists.selector, job));
        escrow.fund{value: 1 ether}(1, signer, SPEC, START + 1 days);
        // Still refused after the job is over: a key is used once.
        vm.warp(escrow.refundOpensAt(job));
        escrow.refund(job);
        vm.deal(creator, 1 ether);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobExists.selector, job));
        escrow.fund{value: 1 ether}(1, signer, SPEC, START + 5 days);
    }

    /// @dev Someone funding the same coordinator job id first gets a different key, so the
    /// creator's own funding and settlement are unaffected.
    function test_Fund_NoSquatting() public {
        bytes32 squatted = fundNative(stranger, 1, 1 wei, START + 1 days);
        bytes32 job = fundNative(1, 2 ether);
        assertNotEq(squatted, job, "keys differ");
        settleAs(creator, job, bytes32(uint256(1)), 2 ether);
        assertTrue(stateOf(job) == OblivionEscrow.State.Settled, "creator settled");
    }

    // ------------------------------------------------------------------ settle

    function test_Settle_HappyPath_ReturnsExcess() public {
        bytes32 job = fundNative(1, 10 ether);
        bytes32 root = keccak256("root");
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, 6 ether, 0, START);
        vm.warp(START + 1 hours);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Settled(job, root, 6 ether, MODEL, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Returned(job, creator, 4 ether);
        vm.prank(creator);
        escrow.settle(job, root, 6 ether, MODEL, START, sig);

        (,,,, uint64 settledAt, uint256 deposit, uint256 total,, bytes32 r,, bytes32 model, OblivionEscrow.State s) =
            escrow.jobs(job);
        assertEq(settledAt, START + 1 hours, "settledAt");
        assertEq(deposit, 10 ether, "deposit kept as record");
        assertEq(total, 6 ether, "total");
        assertEq(r, root, "root");
        assertEq(model, MODEL, "model");
        assertTrue(s == OblivionEscrow.State.Settled, "state");
        assertEq(escrow.nonces(job), 1, "nonce incremented");
        assertEq(creator.balance, 4 ether, "excess returned at once");
        assertEq(address(escrow).balance, 6 ether, "escrow keeps the total");
    }

    function test_Settle_FullTotal_NoReturn() public {
        bytes32 job = fundNative(1, 1 ether);
        settleAs(creator, job, keccak256("root"), 1 ether);
        assertEq(creator.balance, 0, "nothing returned");
        assertEq(address(escrow).balance, 1 ether, "escrow keeps all");
    }

    /// @dev Within the grace only the creator may submit: a stranger, the coordinator's own key
    /// and a contributor are all told when the settlement opens to them.
    function test_Settle_NonCreatorWithinGraceReverts() public {
        bytes32 job = fundNative(1, 1 ether);
        uint64 issuedAt = START + 1 hours;
        bytes memory sig = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether, 0, issuedAt);
        uint256 opensAt = uint256(issuedAt) + GRACE;
        bytes memory inGrace = abi.encodeWithSelector(OblivionEscrow.SettlementInGrace.selector, opensAt);
        address[3] memory others = [stranger, signer, contributor(0)];
        for (uint256 i = 0; i < others.length; i++) {
            vm.warp(issuedAt);
            vm.prank(others[i]);
            vm.expectRevert(inGrace);
            escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
            vm.warp(opensAt - 1);
            vm.prank(others[i]);
            vm.expectRevert(inGrace);
            escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
        }
        assertTrue(stateOf(job) == OblivionEscrow.State.Funded, "still funded");
        // The first second it opens, anyone may.
        vm.warp(opensAt);
        vm.prank(stranger);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
        assertTrue(stateOf(job) == OblivionEscrow.State.Settled, "settled by a stranger");
    }

    /// @dev The creator may submit at once, at any moment of the grace, and after it.
    function test_Settle_CreatorWithinGrace() public {
        uint64 issuedAt = START + 1 hours;
        bytes32 a = fundNative(1, 1 ether);
        bytes32 b = fundNative(2, 1 ether);
        bytes32 c = fundNative(3, 1 ether);
        vm.warp(issuedAt); // the very second it is issued
        settleAs(creator, a, keccak256("root"), 1 ether, issuedAt);
        vm.warp(uint256(issuedAt) + GRACE - 1); // the last second of the grace
        settleAs(creator, b, keccak256("root"), 1 ether, issuedAt);
        vm.warp(uint256(issuedAt) + GRACE);
        settleAs(creator, c, keccak256("root"), 1 ether, issuedAt);
        assertTrue(stateOf(a) == OblivionEscrow.State.Settled, "a settled");
        assertTrue(stateOf(b) == OblivionEscrow.State.Settled, "b settled");
        assertTrue(stateOf(c) == OblivionEscrow.State.Settled, "c settled");
    }

    /// @dev A contributor submits the coordinator's settlement once the grace is over, then every
    /// contributor claims; the creator still gets the excess, and the submitter is paid nothing
    /// beyond its own leaf.
    function test_Settle_StrangerAfterGrace_ContributorsClaim() public {
        bytes32 job = fundNative(1, 10 ether);
        Merkle.Payout[] memory p = payouts(triple(1 ether, 2 ether, 3 ether));
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 root = Merkle.root(t);
        uint64 issuedAt = START + 2 hours;
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, 6 ether, 0, issuedAt);

        vm.warp(uint256(issuedAt) + GRACE);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Settled(job, root, 6 ether, MODEL, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Returned(job, creator, 4 ether);
        vm.prank(p[1].account);
        escrow.settle(job, root, 6 ether, MODEL, issuedAt, sig);
        assertTrue(stateOf(job) == OblivionEscrow.State.Settled, "settled");
        assertEq(creator.balance, 4 ether, "excess to the creator");
        assertEq(p[1].account.balance, 0, "the submitter is not paid for submitting");

        for (uint256 i = 0; i < p.length; i++) {
            vm.prank(p[i].account);
            escrow.claim(job, p[i].index, p[i].account, p[i].amount, Merkle.proof(t, i));
            assertEq(p[i].account.balance, p[i].amount, "leaf paid");
        }
        assertEq(address(escrow).balance, 0, "escrow empty");
    }

    /// @dev A signature is bound to its issuedAt: submitting it with any other (say, an earlier
    /// one to skip the grace) fails.
    function test_Settle_RevertsForIssuedAtOtherThanSigned() public {
        bytes32 job = fundNative(1, 1 ether);
        uint64 issuedAt = START + 3 hours;
        bytes memory sig = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether, 0, issuedAt);
        vm.warp(uint256(issuedAt) + GRACE - 1);
        // A stranger back-dates it by a second to leave the grace.
        vm.prank(stranger);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt - 1, sig);
        // Nor may the creator change it either way.
        vm.startPrank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt - 1, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt + 1, sig);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
        vm.stopPrank();
    }

    function test_Settle_RevertsWhenIssuedAfterDeadline() public {
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 1 ether, deadline);
        // Signed one second after the deadline: refused to the creator at once and to anyone
        // after the grace, although the refund is not open yet.
        bytes memory late = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether, 0, deadline + 1);
        bytes memory err = abi.encodeWithSelector(OblivionEscrow.IssuedAfterDeadline.selector, deadline + 1, deadline);
        vm.warp(deadline + 1);
        vm.prank(creator);
        vm.expectRevert(err);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, deadline + 1, late);
        vm.warp(uint256(deadline) + 1 + GRACE);
        vm.prank(stranger);
        vm.expectRevert(err);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, deadline + 1, late);

        // One issued at the deadline still settles after it.
        settleAs(creator, job, keccak256("root"), 1 ether, deadline);
        assertTrue(stateOf(job) == OblivionEscrow.State.Settled, "settled with issuedAt == deadline");
    }

    function test_Settle_RevertsWhenIssuedInFuture() public {
        bytes32 job = fundNative(1, 1 ether);
        uint64 issuedAt = START + 1;
        bytes memory sig = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether, 0, issuedAt);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.IssuedInFuture.selector, issuedAt));
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
        vm.warp(issuedAt);
        vm.prank(creator);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, issuedAt, sig);
    }

    /// @dev No settlement once the refund is open, whoever submits it: the last second before
    /// it is fine for anyone, at it and after it nobody may.
    function test_Settle_RevertsOnceRefundOpen() public {
        uint64 deadline = START + 1 days;
        bytes32 a = fundNative(creator, 1, 1 ether, deadline);
        bytes32 b = fundNative(creator, 2, 1 ether, deadline);
        uint256 refundAt = escrow.refundOpensAt(a);
        assertEq(refundAt, uint256(deadline) + 2 * uint256(GRACE) + 1, "refundOpensAt");
        bytes memory sigA = sign(SIGNER_KEY, escrow, a, keccak256("root"), 1 ether, 0, deadline);
        bytes memory sigB = sign(SIGNER_KEY, escrow, b, keccak256("root"), 1 ether, 0, deadline);

        vm.warp(refundAt - 1);
        vm.prank(stranger);
        escrow.settle(a, keccak256("root"), 1 ether, MODEL, deadline, sigA);

        bytes memory open = abi.encodeWithSelector(OblivionEscrow.RefundOpen.selector, refundAt);
        vm.warp(refundAt);
        vm.prank(creator);
        vm.expectRevert(open);
        escrow.settle(b, keccak256("root"), 1 ether, MODEL, deadline, sigB);
        vm.warp(refundAt + 30 days);
        vm.prank(stranger);
        vm.expectRevert(open);
        escrow.settle(b, keccak256("root"), 1 ether, MODEL, deadline, sigB);

        escrow.refund(b);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, b));
        escrow.settle(b, keccak256("root"), 1 ether, MODEL, deadline, sigB);
    }

    function test_Settle_RevertsForOtherKey() public {
        bytes32 job = fundNative(1, 1 ether);
        bytes memory sig = sign(0xBAD, escrow, job, keccak256("root"), 1 ether, 0, START);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, START, sig);
    }

    function test_Settle_RevertsForSignatureOfOtherJob() public {
        bytes32 jobA = fundNative(1, 1 ether);
        bytes32 jobB = fundNative(2, 1 ether);
        bytes memory sigA = sign(SIGNER_KEY, escrow, jobA, keccak256("root"), 1 ether, 0, START);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(jobB, keccak256("root"), 1 ether, MODEL, START, sigA);
    }

    function test_Settle_RevertsForTamperedFields() public {
        bytes32 job = fundNative(1, 2 ether);
        bytes32 root = keccak256("root");
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, 1 ether, 0, START);
        vm.startPrank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("other root"), 1 ether, MODEL, START, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 2 ether, MODEL, START, sig);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, keccak256("other model"), START, sig);
        // A signature for a future nonce is not valid now either.
        bytes memory ahead = sign(SIGNER_KEY, escrow, job, root, 1 ether, 1, START);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, ahead);
        vm.stopPrank();
    }

    function test_Settle_RevertsForMalformedOrMalleatedSignature() public {
        bytes32 job = fundNative(1, 1 ether);
        bytes32 root = keccak256("root");
        bytes32 digest = escrow.settlementDigest(job, root, 1 ether, MODEL, 0, START);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(SIGNER_KEY, digest);
        // The same point with s' = n - s and flipped v recovers the same key with plain ecrecover.
        bytes memory malleated = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.startPrank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, malleated);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, abi.encodePacked(r, s)); // 64 bytes
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, "");
        escrow.settle(job, root, 1 ether, MODEL, START, abi.encodePacked(r, s, v));
        vm.stopPrank();
    }

    function test_Settle_RevertsOnOtherChainId() public {
        bytes32 job = fundNative(1, 1 ether);
        bytes32 root = keccak256("root");
        uint256 home = block.chainid;

        // Signed for this chain, submitted after a fork to another chain id.
        bytes memory sigHome = sign(SIGNER_KEY, escrow, job, root, 1 ether, 0, START);
        vm.chainId(home + 1);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, sigHome);

        // Signed for another chain id, submitted here.
        bytes memory sigOther = sign(SIGNER_KEY, escrow, job, root, 1 ether, 0, START);
        vm.chainId(home);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, root, 1 ether, MODEL, START, sigOther);

        vm.prank(creator);
        escrow.settle(job, root, 1 ether, MODEL, START, sigHome);
    }

    function test_Settle_RevertsOnOtherDeployment() public {
        OblivionEscrow other = new OblivionEscrow(WINDOW, GRACE);
        bytes32 job = fundNative(1, 1 ether);
        vm.deal(creator, 1 ether);
        vm.prank(creator);
        bytes32 sameKey = other.fund{value: 1 ether}(1, signer, SPEC, START + 1 days);
        assertEq(sameKey, job, "same key on both deployments");

        bytes memory sigOther = sign(SIGNER_KEY, other, job, keccak256("root"), 1 ether, 0, START);
        vm.prank(creator);
        vm.expectRevert(EscrowCore.InvalidSignature.selector);
        escrow.settle(job, keccak256("root"), 1 ether, MODEL, START, sigOther);
        vm.prank(creator);
        other.settle(job, keccak256("root"), 1 ether, MODEL, START, sigOther);
    }

    function test_Settle_RevertsTwice() public {
        bytes32 job = fundNative(1, 1 ether);
        bytes32 root = keccak256("root");
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, 1 ether, 0, START);
        vm.startPrank(creator);
        escrow.settle(job, root, 1 ether, MODEL, START, sig);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.settle(job, root, 1 ether, MODEL, START, sig);
        // A fresh signature for the new nonce does not reopen it either.
        bytes memory sig1 = sign(SIGNER_KEY, escrow, job, root, 1 ether, 1, START);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.settle(job, root, 1 ether, MODEL, START, sig1);
        vm.stopPrank();
    }

    function test_Settle_RevertsWhenTotalExceedsDeposit() public {
        bytes32 job = fundNative(1, 1 ether);
        bytes memory sig = sign(SIGNER_KEY, escrow, job, keccak256("root"), 1 ether + 1, 0, START);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.TotalExceedsDeposit.selector, 1 ether + 1, 1 ether));
        escrow.settle(job, keccak256("root"), 1 ether + 1, MODEL, START, sig);
    }

    /// @dev The attack the grace closes: the creator takes the coordinator's settlement (the
    /// model) but does not submit it, and tries to get the deposit back instead. Signed at the
    /// deadline, it leaves the refund shut for the whole grace after it, during which a
    /// contributor submits it; then the refund is gone for good.
    function test_Attack_CreatorCannotRefundIssuedSettlement() public {
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 10 ether, deadline);
        Merkle.Payout[] memory p = payouts(pair(4 ether, 6 ether));
        Merkle.Tree memory t = Merkle.build(p);
        bytes32 root = Merkle.root(t);
        uint64 issuedAt = deadline;
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, 10 ether, 0, issuedAt);
        uint256 refundAt = escrow.refundOpensAt(job);
        bytes memory notOpen = abi.encodeWithSelector(OblivionEscrow.RefundNotOpen.selector, refundAt);

        vm.warp(uint256(deadline) + 1);
        vm.prank(creator);
        vm.expectRevert(notOpen);
        escrow.refund(job);
        vm.warp(uint256(deadline) + GRACE);
        vm.prank(creator);
        vm.expectRevert(notOpen);
        escrow.refund(job);

        // The grace since issue is over: a contributor submits the settlement.
        vm.warp(uint256(issuedAt) + GRACE);
        assertLt(block.timestamp, refundAt, "contributors act before the refund opens");
        vm.prank(p[0].account);
        escrow.settle(job, root, 10 ether, MODEL, issuedAt, sig);
        for (uint256 i = 0; i < p.length; i++) {
            escrow.claim(job, p[i].index, p[i].account, p[i].amount, Merkle.proof(t, i));
            assertEq(p[i].account.balance, p[i].amount, "contributor paid");
        }

        vm.warp(refundAt);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.refund(job);
        assertEq(creator.balance, 0, "the creator got nothing back");
    }

    function test_Settle_RevertsForUnknownJob() public {
        bytes32 job = escrow.jobKey(creator, signer, 1);
        vm.prank(creator);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.settle(job, bytes32(0), 0, MODEL, START, "");
    }

    // ------------------------------------------------------------------ claim

    /// @dev Funds 10 ether, settles a three-leaf tree of 1 + 2 + 3 ether, returns the tree.
    function settledThree() internal returns (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) {
        job = fundNative(1, 10 ether);
        p = payouts(triple(1 ether, 2 ether, 3 ether));
        t = Merkle.build(p);
        settleAs(creator, job, Merkle.root(t), 6 ether);
    }

    function test_Claim_PaysExactLeafAmount() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Claimed(job, 1, p[1].account, 2 ether);
        vm.prank(stranger); // anyone may submit; the leaf's account is paid
        escrow.claim(job, 1, p[1].account, 2 ether, Merkle.proof(t, 1));
        assertEq(p[1].account.balance, 2 ether, "paid exactly the leaf");
        assertEq(stranger.balance, 0, "submitter not paid");
        assertTrue(escrow.isClaimed(job, 1), "index marked");
        assertFalse(escrow.isClaimed(job, 0), "other index untouched");
        assertEq(claimedOf(job), 2 ether, "claimed");
        assertEq(address(escrow).balance, 4 ether, "escrow rest");
    }

    function test_Claim_AllLeaves() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        for (uint256 i = 0; i < p.length; i++) {
            escrow.claim(job, p[i].index, p[i].account, p[i].amount, Merkle.proof(t, i));
            assertEq(p[i].account.balance, p[i].amount, "leaf paid");
        }
        assertEq(claimedOf(job), 6 ether, "all claimed");
        assertEq(address(escrow).balance, 0, "escrow empty");
    }

    function test_Claim_RevertsOnForgedProof() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        bytes32[] memory proof = Merkle.proof(t, 0);
        proof[0] = keccak256("forged");
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 0, p[0].account, p[0].amount, proof);
        // Another leaf's proof does not work for this leaf either.
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 0, p[0].account, p[0].amount, Merkle.proof(t, 1));
        // Nor does an inner node presented as a leaf with an empty proof.
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 0, p[0].account, p[0].amount, new bytes32[](0));
    }

    function test_Claim_RevertsSecondTime() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        escrow.claim(job, 2, p[2].account, p[2].amount, Merkle.proof(t, 2));
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.AlreadyClaimed.selector, 2));
        escrow.claim(job, 2, p[2].account, p[2].amount, Merkle.proof(t, 2));
        assertEq(p[2].account.balance, 3 ether, "paid once");
    }

    function test_Claim_RevertsOnWrongAmountOrAccount() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        bytes32[] memory proof = Merkle.proof(t, 0);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 0, p[0].account, p[0].amount + 1, proof);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 0, stranger, p[0].amount, proof);
        vm.expectRevert(EscrowCore.InvalidProof.selector);
        escrow.claim(job, 5, p[0].account, p[0].amount, proof);
    }

    function test_Claim_WindowLastSecondOk_AfterReverts() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        uint256 closesAt = uint256(START) + WINDOW;
        vm.warp(closesAt);
        escrow.claim(job, 0, p[0].account, p[0].amount, Merkle.proof(t, 0));
        vm.warp(closesAt + 1);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.ClaimWindowClosed.selector, closesAt));
        escrow.claim(job, 1, p[1].account, p[1].amount, Merkle.proof(t, 1));
    }

    function test_Claim_RevertsBeforeSettle() public {
        bytes32 job = fundNative(1, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotSettled.selector, job));
        escrow.claim(job, 0, stranger, 1, new bytes32[](0));
    }

    /// @dev A faulty root whose leaves add up to more than the signed total pays first come,
    /// first served, up to the total and never beyond.
    function test_Claim_CappedAtTotal() public {
        bytes32 job = fundNative(1, 10 ether);
        Merkle.Payout[] memory p = payouts(pair(3 ether, 3 ether));
        Merkle.Tree memory t = Merkle.build(p);
        settleAs(creator, job, Merkle.root(t), 5 ether);
        escrow.claim(job, 0, p[0].account, 3 ether, Merkle.proof(t, 0));
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.ClaimExceedsTotal.selector, 6 ether, 5 ether));
        escrow.claim(job, 1, p[1].account, 3 ether, Merkle.proof(t, 1));
        assertEq(address(escrow).balance, 2 ether, "rest stays for the sweep");
    }

    // ------------------------------------------------------------------ refund

    function test_Refund_RevertsBeforeRefundOpensAt() public {
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 1 ether, deadline);
        uint256 opensAt = escrow.refundOpensAt(job);
        assertEq(opensAt, uint256(deadline) + 2 * uint256(GRACE) + 1, "refundOpensAt");
        bytes memory notOpen = abi.encodeWithSelector(OblivionEscrow.RefundNotOpen.selector, opensAt);
        uint256[4] memory times = [uint256(START), deadline, uint256(deadline) + 1, opensAt - 1];
        for (uint256 i = 0; i < times.length; i++) {
            vm.warp(times[i]);
            vm.expectRevert(notOpen);
            escrow.refund(job);
        }
        vm.warp(opensAt);
        escrow.refund(job);
        assertTrue(stateOf(job) == OblivionEscrow.State.Refunded, "refunded at refundOpensAt");
    }

    function test_Refund_AtRefundOpensAt_PaysCreator() public {
        uint64 deadline = START + 1 days;
        bytes32 job = fundNative(creator, 1, 5 ether, deadline);
        vm.warp(escrow.refundOpensAt(job));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Refunded(job, creator, 5 ether);
        vm.prank(stranger); // anyone may trigger it
        escrow.refund(job);
        assertEq(creator.balance, 5 ether, "creator refunded");
        assertEq(stranger.balance, 0, "caller not paid");
        assertTrue(stateOf(job) == OblivionEscrow.State.Refunded, "state");
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.refund(job);
    }

    function test_Refund_RevertsAfterSettle() public {
        bytes32 job = fundNative(1, 1 ether);
        settleAs(creator, job, keccak256("root"), 1 ether);
        vm.warp(START + 30 days);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job));
        escrow.refund(job);
    }

    function test_Refund_ReentryBlocked() public {
        ReentrantCreator c = new ReentrantCreator(escrow);
        vm.deal(address(this), 2 ether);
        c.fund{value: 2 ether}(1, signer, START + 1 days);
        vm.warp(escrow.refundOpensAt(c.job()));
        escrow.refund(c.job());
        assertEq(c.received(), 2 ether, "refunded once");
        assertEq(address(escrow).balance, 0, "escrow empty");
        assertEq(
            keccak256(c.reentryError()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "reentry refused by the guard"
        );
    }

    function test_Refund_RecipientRejecting_RevertsWithError() public {
        ReentrantCreator c = new ReentrantCreator(escrow);
        vm.deal(address(this), 1 ether);
        c.fund{value: 1 ether}(1, signer, START + 1 days);
        c.setRejectPayments(true);
        bytes32 job = c.job();
        vm.warp(escrow.refundOpensAt(job));
        vm.expectRevert(abi.encodeWithSelector(EscrowCore.NativeTransferFailed.selector, address(c), 1 ether));
        escrow.refund(job);
        assertTrue(stateOf(job) == OblivionEscrow.State.Funded, "nothing changed");
    }

    // ------------------------------------------------------------------ sweep

    function test_Sweep_BeforeWindowEndReverts_AfterPaysRest() public {
        (bytes32 job, Merkle.Payout[] memory p, Merkle.Tree memory t) = settledThree();
        escrow.claim(job, 0, p[0].account, p[0].amount, Merkle.proof(t, 0));
        uint256 closesAt = uint256(START) + WINDOW;
        uint256 creatorBefore = creator.balance; // the 4 ether excess returned at settle

        vm.warp(closesAt);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.ClaimWindowOpen.selector, closesAt));
        escrow.sweep(job);

        vm.warp(closesAt + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit OblivionEscrow.Swept(job, creator, 5 ether);
        vm.prank(stranger);
        escrow.sweep(job);
        assertEq(creator.balance - creatorBefore, 5 ether, "unclaimed rest to creator");
        assertEq(address(escrow).balance, 0, "escrow empty");
        assertTrue(stateOf(job) == OblivionEscrow.State.Swept, "state");

        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotSettled.selector, job));
        escrow.sweep(job);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotSettled.selector, job));
        escrow.claim(job, 1, p[1].account, p[1].amount, Merkle.proof(t, 1));
    }

    function test_Sweep_RevertsForUnsettledJob() public {
        bytes32 job = fundNative(1, 1 ether);
        vm.warp(START + 365 days);
        vm.expectRevert(abi.encodeWithSelector(OblivionEscrow.JobNotSettled.selector, job));
        escrow.sweep(job);
    }

    // ------------------------------------------------------------------ token flow

    function test_Token_FullFlow() public {
        token.mint(creator, 50e18);
        vm.startPrank(creator);
        token.approve(address(escrow), 50e18);
        bytes32 job = escrow.fundToken(3, signer, SPEC, START + 1 days, token, 50e18);
        vm.stopPrank();

        Merkle.Payout[] memory p = payouts(triple(10e18, 15e18, 5e18));
        Merkle.Tree memory t = Merkle.build(p);
        settleAs(creator, job, Merkle.root(t), 30e18);
        assertEq(token.balanceOf(creator), 20e18, "excess returned in the token");

        escrow.claim(job, 0, p[0].account, 10e18, Merkle.proof(t, 0));
        escrow.claim(job, 2, p[2].account, 5e18, Merkle.proof(t, 2));
        assertEq(token.balanceOf(p[0].account), 10e18, "leaf 0");
        assertEq(token.balanceOf(p[2].account), 5e18, "leaf 2");
        assertEq(p[0].account.balance, 0, "no native paid");

        vm.warp(START + WINDOW + 1);
        escrow.sweep(job);
        assertEq(token.balanceOf(creator), 35e18, "unclaimed 15 back");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
    }
}
