// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "../Base.sol";
import {Merkle} from "./Merkle.sol";
import {MockERC20} from "../mocks/MockERC20.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";

/// @notice Shared fixture: an escrow, a token, a creator, a coordinator key and helpers.
abstract contract EscrowTest is Base {
    uint64 internal constant WINDOW = 7 days;
    /// @dev Settlement grace: how long after a settlement is issued only the creator may submit it.
    uint64 internal constant GRACE = 1 days;
    uint64 internal constant START = 1_700_000_000;

    OblivionEscrow internal escrow;
    MockERC20 internal token;

    uint256 internal constant SIGNER_KEY = 0xC0FFEE;
    address internal signer;
    address internal creator;
    address internal stranger;

    bytes32 internal constant SPEC = keccak256("spec: mnist mlp, 3 epochs");
    bytes32 internal constant MODEL = keccak256("model: weights v1");

    function setUp() public virtual {
        vm.warp(START);
        escrow = new OblivionEscrow(WINDOW, GRACE);
        token = new MockERC20("Test Token", "TT", 0);
        signer = vm.addr(SIGNER_KEY);
        creator = makeAddr("creator");
        stranger = makeAddr("stranger");
        vm.label(signer, "signer");
        vm.label(address(escrow), "escrow");
    }

    function fundNative(address from, uint256 jobId, uint256 amount, uint64 deadline) internal returns (bytes32 job) {
        vm.deal(from, from.balance + amount);
        vm.prank(from);
        job = escrow.fund{value: amount}(jobId, signer, SPEC, deadline);
    }

    function fundNative(uint256 jobId, uint256 amount) internal returns (bytes32) {
        return fundNative(creator, jobId, amount, START + 1 days);
    }

    function sign(
        uint256 key,
        OblivionEscrow on,
        bytes32 job,
        bytes32 root,
        uint256 total,
        uint256 nonce,
        uint64 issuedAt
    ) internal view returns (bytes memory) {
        return signDigest(key, on.settlementDigest(job, root, total, MODEL, nonce, issuedAt));
    }

    /// @dev `who` submits a settlement the coordinator issues now.
    function settleAs(address who, bytes32 job, bytes32 root, uint256 total) internal {
        settleAs(who, job, root, total, uint64(block.timestamp));
    }

    /// @dev `who` submits a settlement the coordinator issued at `issuedAt`.
    function settleAs(address who, bytes32 job, bytes32 root, uint256 total, uint64 issuedAt) internal {
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, total, escrow.nonces(job), issuedAt);
        vm.prank(who);
        escrow.settle(job, root, total, MODEL, issuedAt, sig);
    }

    function deadlineOf(bytes32 job) internal view returns (uint64 d) {
        (,,, d,,,,,,,,) = escrow.jobs(job);
    }

    /// @dev Payouts to `n` distinct accounts with the given amounts.
    function payouts(uint256[] memory amounts) internal pure returns (Merkle.Payout[] memory p) {
        p = new Merkle.Payout[](amounts.length);
        for (uint256 i = 0; i < amounts.length; i++) {
            p[i] = Merkle.Payout(i, contributor(i), amounts[i]);
        }
    }

    function contributor(uint256 i) internal pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encode("oblivion.test.contributor", i)))));
    }

    function pair(uint256 a, uint256 b) internal pure returns (uint256[] memory v) {
        v = new uint256[](2);
        v[0] = a;
        v[1] = b;
    }

    function triple(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory v) {
        v = new uint256[](3);
        v[0] = a;
        v[1] = b;
        v[2] = c;
    }

    /// @dev Reads a job's state from the escrow.
    function stateOf(bytes32 job) internal view returns (OblivionEscrow.State s) {
        (,,,,,,,,,,, s) = escrow.jobs(job);
    }

    function claimedOf(bytes32 job) internal view returns (uint256 c) {
        (,,,,,,, c,,,,) = escrow.jobs(job);
    }
}
