// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "../Base.sol";
import {Merkle} from "../utils/Merkle.sol";
import {MockERC20} from "../mocks/MockERC20.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";

/// @notice Drives the escrow through random sequences of funding, settling, claiming, refunds,
/// sweeps and time jumps from several actors, including calls that must fail (settles by
/// strangers within the grace, replayed signatures, invalid claims, duplicate funding, early
/// refunds). Coordinators also issue settlements that nobody submits at once: random callers
/// try them at random times, and the job's contributors submit each one at a random moment
/// between the end of its grace and the opening of the refund, right after its creator tried to
/// refund it. It keeps a ledger of what each job should still hold and counters of forbidden
/// successes and unexpected outcomes for the invariants.
contract EscrowHandler is Base {
    struct JobInfo {
        address creator;
        uint256 signerKey;
        uint256 jobId;
        address token;
        uint64 deadline;
        uint256 deposit;
        uint256 paidOut;
        uint256 total;
        uint256 claimed;
        OblivionEscrow.State state;
    }

    /// @dev A settlement the coordinator issued (signed) that has not been submitted yet.
    struct Issued {
        bool pending;
        bytes32 root;
        uint256 total;
        bytes32 model;
        uint64 issuedAt;
        /// @dev When the job's contributors submit it if nobody has by then.
        uint256 keeperAt;
        bytes sig;
    }

    uint64 internal constant MAX_LEAVES = 5;

    OblivionEscrow public immutable escrow;
    /// @dev A second deployment, to sign settlements that must not work on `escrow`.
    OblivionEscrow public immutable otherEscrow;
    /// @dev An ERC-20 with a 1 % transfer fee.
    MockERC20 public immutable token;
    uint64 public immutable claimWindow;
    uint64 public immutable settleGrace;

    address[] internal actors;
    uint256[] internal signerKeys;

    bytes32[] public jobKeys;
    mapping(bytes32 job => JobInfo) internal _info;
    mapping(bytes32 job => Merkle.Payout[]) internal _leaves;
    mapping(bytes32 job => mapping(uint256 index => uint256)) public payCount;
    mapping(bytes32 job => Issued) internal _issued;
    mapping(bytes32 job => Merkle.Payout[]) internal _issuedLeaves;
    /// @dev Jobs for which the coordinator issued a settlement by the deadline.
    mapping(bytes32 job => bool) public wasIssued;

    uint256 public nextJobId;
    /// @dev Timestamp of the run so far; every action warps to it first, so time only moves
    /// through `warp` and never goes back.
    uint256 public currentTime;

    // Ledger: what the escrow should hold, per asset.
    uint256 public nativeHeld;
    uint256 public tokenHeld;

    // Forbidden successes: all must stay zero.
    uint256 public ghostDoublePays;
    /// @dev A non-creator settled within the grace of the settlement's issue.
    uint256 public ghostStrangerSettles;
    /// @dev A settle or refund succeeded where the rules forbid it, or failed (or failed with
    /// another error) where they allow it.
    uint256 public ghostWrongSettleOutcomes;
    uint256 public ghostWrongRefundOutcomes;
    /// @dev The contributors could not submit an issued settlement at their chosen moment.
    uint256 public ghostKeeperFailures;
    uint256 public ghostReplays;
    uint256 public ghostInvalidClaims;
    uint256 public ghostDuplicateFunds;

    // Successful actions, to show the runs reach every path.
    uint256 public okFunds;
    uint256 public okSettles;
    uint256 public okIssued;
    uint256 public okStrangerSettles;
    uint256 public okKeeperSettles;
    uint256 public okClaims;
    uint256 public okRefunds;
    uint256 public okSweeps;

    constructor(OblivionEscrow escrow_, OblivionEscrow otherEscrow_, MockERC20 token_) {
        escrow = escrow_;
        otherEscrow = otherEscrow_;
        token = token_;
        claimWindow = escrow_.claimWindow();
        settleGrace = escrow_.settleGrace();
        currentTime = block.timestamp;
        for (uint256 i = 0; i < 4; i++) {
            actors.push(makeAddr(string.concat("actor", vm.toString(i))));
        }
        signerKeys.push(0xA11CE);
        signerKeys.push(0xB0B);
    }

    modifier atCurrentTime() {
        vm.warp(currentTime);
        _;
    }

    // ------------------------------------------------------------------ views for the invariants

    function jobCount() external view returns (uint256) {
        return jobKeys.length;
    }

    function info(bytes32 job) external view returns (JobInfo memory) {
        return _info[job];
    }

    function leafCount(bytes32 job) external view returns (uint256) {
        return _leaves[job].length;
    }

    /// @notice When the refund of `job` opens, by the rule `deadline + 2 * grace + 1`.
    function refundAt(bytes32 job) public view returns (uint256) {
        return uint256(_info[job].deadline) + 2 * uint256(settleGrace) + 1;
    }

    // ------------------------------------------------------------------ helpers

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _pickJob(uint256 seed) internal view returns (bool ok, bytes32 job) {
        if (jobKeys.length == 0) return (false, bytes32(0));
        return (true, jobKeys[seed % jobKeys.length]);
    }

    /// @dev From a random start, the first job in `want` state (so actions mostly hit jobs they
    /// can act on); a random job when none is.
    function _pickJobIn(uint256 seed, OblivionEscrow.State want) internal view returns (bool ok, bytes32 job) {
        uint256 n = jobKeys.length;
        if (n == 0) return (false, bytes32(0));
        for (uint256 i = 0; i < n; i++) {
            bytes32 k = jobKeys[(seed % n + i) % n];
            if (_info[k].state == want) return (true, k);
        }
        return (true, jobKeys[seed % n]);
    }

    function _tree(bytes32 job) internal view returns (Merkle.Payout[] memory p, Merkle.Tree memory t) {
        p = _leaves[job];
        t = Merkle.build(p);
    }

    function _addHeld(address asset, uint256 amount) internal {
        if (asset == address(0)) nativeHeld += amount;
        else tokenHeld += amount;
    }

    function _pay(bytes32 job, uint256 amount) internal {
        JobInfo storage j = _info[job];
        j.paidOut += amount;
        if (j.token == address(0)) nativeHeld -= amount;
        else tokenHeld -= amount;
    }

    // ------------------------------------------------------------------ actions

    function fundNative(uint256 actorSeed, uint256 signerSeed, uint256 amount, uint256 deadlineDelta)
        external
        atCurrentTime
    {
        address creator = _actor(actorSeed);
        uint256 signerKey = signerKeys[signerSeed % signerKeys.length];
        amount = bound(amount, 1, 1e24);
        uint64 deadline = uint64(currentTime + bound(deadlineDelta, 1 hours, 3 days));
        uint256 jobId = nextJobId++;
        vm.deal(creator, creator.balance + amount);
        vm.prank(creator);
        bytes32 job = escrow.fund{value: amount}(jobId, vm.addr(signerKey), bytes32(jobId), deadline);
        _record(job, creator, signerKey, jobId, address(0), amount, deadline);
    }

    function fundToken(uint256 actorSeed, uint256 signerSeed, uint256 amount, uint256 deadlineDelta)
        external
        atCurrentTime
    {
        address creator = _actor(actorSeed);
        uint256 signerKey = signerKeys[signerSeed % signerKeys.length];
        amount = bound(amount, 100, 1e24);
        uint64 deadline = uint64(currentTime + bound(deadlineDelta, 1 hours, 3 days));
        uint256 jobId = nextJobId++;
        token.mint(creator, amount);
        vm.startPrank(creator);
        token.approve(address(escrow), amount);
        uint256 before = token.balanceOf(address(escrow));
        bytes32 job = escrow.fundToken(jobId, vm.addr(signerKey), bytes32(jobId), deadline, token, amount);
        vm.stopPrank();
        _record(job, creator, signerKey, jobId, address(token), token.balanceOf(address(escrow)) - before, deadline);
    }

    function _record(
        bytes32 job,
        address creator,
        uint256 signerKey,
        uint256 jobId,
        address asset,
        uint256 deposit,
        uint64 deadline
    ) internal {
        jobKeys.push(job);
        JobInfo storage j = _info[job];
        j.creator = creator;
        j.signerKey = signerKey;
        j.jobId = jobId;
        j.token = asset;
        j.deadline = deadline;
        j.deposit = deposit;
        j.state = OblivionEscrow.State.Funded;
        _addHeld(asset, deposit);
        okFunds++;
    }

    /// @notice The creator funds a job key it already used: must always fail.
    function fundDuplicate(uint256 jobSeed) external atCurrentTime {
        (bool any, bytes32 job) = _pickJob(jobSeed);
        if (!any) return;
        JobInfo memory j = _info[job];
        vm.deal(j.creator, j.creator.balance + 1);
        vm.prank(j.creator);
        try escrow.fund{value: 1}(j.jobId, vm.addr(j.signerKey), bytes32(0), uint64(currentTime + 1)) {
            ghostDuplicateFunds++;
        } catch {}
    }

    /// @notice The creator settles with a valid signature, issued at a random time up to now and
    /// up to the deadline: it must succeed exactly while the refund is not open. With `overfill`
    /// the leaves may add up to more than the total (a faulty root), which the escrow must cap.
    function settle(
        uint256 jobSeed,
        uint256 totalSeed,
        uint256 nSeed,
        uint256 splitSeed,
        bool overfill,
        uint256 issuedSeed
    ) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Funded);
        if (!any) return;
        JobInfo memory j = _info[job];
        uint256 total = bound(totalSeed, 0, j.deposit);
        Merkle.Payout[] memory p = _payouts(bound(nSeed, 1, MAX_LEAVES), total, splitSeed, overfill);
        bytes32 root = Merkle.root(Merkle.build(p));
        bytes32 model = keccak256(abi.encode(job, "model"));
        uint64 issuedAt = _issuedAt(job, issuedSeed);
        bytes memory sig = _sign(j.signerKey, job, root, total, model, issuedAt);
        _submit(job, j.creator, root, total, model, issuedAt, sig, p);
    }

    /// @notice The coordinator issues a settlement for a funded job, by its deadline, and hands it
    /// out; nobody submits it yet. Its contributors will submit it at a random moment after the
    /// grace and before the refund opens (see `warp`), unless someone does first.
    function issue(
        uint256 jobSeed,
        uint256 totalSeed,
        uint256 nSeed,
        uint256 splitSeed,
        uint256 issuedSeed,
        uint256 keeperSeed
    ) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Funded);
        if (!any) return;
        JobInfo memory j = _info[job];
        if (j.state != OblivionEscrow.State.Funded || _issued[job].pending || currentTime > j.deadline) return;
        uint256 total = bound(totalSeed, 0, j.deposit);
        Merkle.Payout[] memory p = _payouts(bound(nSeed, 1, MAX_LEAVES), total, splitSeed, false);
        Issued storage s = _issued[job];
        s.pending = true;
        s.root = Merkle.root(Merkle.build(p));
        s.total = total;
        s.model = keccak256(abi.encode(job, "issued model"));
        s.issuedAt = _issuedAt(job, issuedSeed);
        uint256 from = uint256(s.issuedAt) + settleGrace;
        if (from < currentTime) from = currentTime;
        s.keeperAt = bound(keeperSeed, from, refundAt(job) - 1);
        s.sig = _sign(j.signerKey, job, s.root, total, s.model, s.issuedAt);
        delete _issuedLeaves[job];
        for (uint256 i = 0; i < p.length; i++) {
            _issuedLeaves[job].push(p[i]);
        }
        wasIssued[job] = true;
        okIssued++;
    }

    /// @notice A random caller (the creator, the coordinator's address, a contributor or another
    /// actor) submits an issued settlement now: the grace rule decides, checked exactly.
    function submit(uint256 jobSeed, uint256 callerSeed) external atCurrentTime {
        uint256 n = jobKeys.length;
        if (n == 0) return;
        bytes32 job;
        bool found;
        for (uint256 i = 0; i < n; i++) {
            job = jobKeys[(jobSeed % n + i) % n];
            if (_issued[job].pending) {
                found = true;
                break;
            }
        }
        if (!found) return;
        JobInfo memory j = _info[job];
        Issued memory s = _issued[job];
        address caller;
        uint256 who = callerSeed % 6;
        if (who == 0) caller = j.creator;
        else if (who == 1) caller = vm.addr(j.signerKey);
        else if (who == 2) caller = _issuedLeaves[job][0].account;
        else caller = _actor(callerSeed >> 8);
        _submit(job, caller, s.root, s.total, s.model, s.issuedAt, s.sig, _issuedLeaves[job]);
    }

    /// @dev A random issue time at most now and at most the deadline, within two graces of that.
    function _issuedAt(bytes32 job, uint256 seed) internal view returns (uint64) {
        uint256 hi = currentTime;
        if (hi > _info[job].deadline) hi = _info[job].deadline;
        uint256 span = 2 * uint256(settleGrace);
        return uint64(bound(seed, hi > span ? hi - span : 0, hi));
    }

    /// @dev What settle must revert with now; empty when it must succeed. The signature is valid
    /// and the total within the deposit: only the state and the timing rules decide.
    function _settleError(bytes32 job, address caller, uint64 issuedAt) internal view returns (bytes memory) {
        JobInfo memory j = _info[job];
        if (j.state != OblivionEscrow.State.Funded) {
            return abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job);
        }
        if (currentTime >= refundAt(job)) {
            return abi.encodeWithSelector(OblivionEscrow.RefundOpen.selector, refundAt(job));
        }
        if (issuedAt > j.deadline) {
            return abi.encodeWithSelector(OblivionEscrow.IssuedAfterDeadline.selector, issuedAt, j.deadline);
        }
        if (issuedAt > currentTime) return abi.encodeWithSelector(OblivionEscrow.IssuedInFuture.selector, issuedAt);
        uint256 opensAt = uint256(issuedAt) + settleGrace;
        if (caller != j.creator && currentTime < opensAt) {
            return abi.encodeWithSelector(OblivionEscrow.SettlementInGrace.selector, opensAt);
        }
        return "";
    }

    /// @dev `caller` submits a validly signed settlement; the outcome must be what the rules say.
    function _submit(
        bytes32 job,
        address caller,
        bytes32 root,
        uint256 total,
        bytes32 model,
        uint64 issuedAt,
        bytes memory sig,
        Merkle.Payout[] memory p
    ) internal returns (bool ok) {
        bytes memory expected = _settleError(job, caller, issuedAt);
        vm.prank(caller);
        try escrow.settle(job, root, total, model, issuedAt, sig) {
            if (expected.length != 0) ghostWrongSettleOutcomes++;
            _recordSettle(job, total, p);
            if (caller != _info[job].creator) okStrangerSettles++;
            return true;
        } catch (bytes memory err) {
            if (keccak256(err) != keccak256(expected)) ghostWrongSettleOutcomes++;
            return false;
        }
    }

    function _recordSettle(bytes32 job, uint256 total, Merkle.Payout[] memory p) internal {
        JobInfo storage s = _info[job];
        s.state = OblivionEscrow.State.Settled;
        s.total = total;
        for (uint256 i = 0; i < p.length; i++) {
            _leaves[job].push(p[i]);
        }
        _issued[job].pending = false;
        _pay(job, s.deposit - total);
        okSettles++;
    }

    function _payouts(uint256 n, uint256 total, uint256 splitSeed, bool overfill)
        internal
        view
        returns (Merkle.Payout[] memory p)
    {
        p = new Merkle.Payout[](n);
        uint256 left = total;
        for (uint256 i = 0; i < n; i++) {
            uint256 r = uint256(keccak256(abi.encode(splitSeed, i)));
            uint256 amount;
            if (overfill) {
                amount = bound(r, 0, total);
            } else {
                amount = i + 1 == n ? left : bound(r, 0, left);
                left -= amount;
            }
            p[i] = Merkle.Payout(i, _actor(r >> 128), amount);
        }
    }

    function _sign(uint256 key, bytes32 job, bytes32 root, uint256 total, bytes32 model, uint64 issuedAt)
        internal
        view
        returns (bytes memory)
    {
        return signDigest(key, escrow.settlementDigest(job, root, total, model, escrow.nonces(job), issuedAt));
    }

    /// @notice Someone other than the creator (another actor or the coordinator's own address)
    /// submits a valid signature issued less than a grace ago: must always fail.
    function settleAsStranger(uint256 jobSeed, uint256 callerSeed, uint256 totalSeed, uint256 ageSeed)
        external
        atCurrentTime
    {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Funded);
        if (!any) return;
        JobInfo memory j = _info[job];
        address caller = callerSeed % 5 == 4 ? vm.addr(j.signerKey) : _actor(callerSeed);
        if (caller == j.creator) caller = address(uint160(caller) ^ 1);
        uint256 total = bound(totalSeed, 0, j.deposit);
        bytes32 root = keccak256(abi.encode(job, callerSeed));
        uint256 maxAge = settleGrace - 1;
        if (maxAge > currentTime) maxAge = currentTime;
        uint64 issuedAt = uint64(currentTime - bound(ageSeed, 0, maxAge));
        bytes memory sig = _sign(j.signerKey, job, root, total, 0, issuedAt);
        vm.prank(caller);
        try escrow.settle(job, root, total, 0, issuedAt, sig) {
            ghostStrangerSettles++;
        } catch {}
    }

    /// @notice The creator of job A submits a settlement signed for something else: job B
    /// (mode 0), another chain id (1), another deployment (2), a later nonce (3) or another issue
    /// time (4). Must always fail.
    function replaySettle(uint256 jobSeedA, uint256 jobSeedB, uint8 mode) external atCurrentTime {
        (bool any, bytes32 a) = _pickJobIn(jobSeedA, OblivionEscrow.State.Funded);
        if (!any) return;
        (, bytes32 b) = _pickJob(jobSeedB);
        JobInfo memory ja = _info[a];
        bytes32 root = keccak256(abi.encode(a, b, mode));
        uint256 total = ja.deposit / 2;
        uint256 nonce = escrow.nonces(a);
        uint64 issuedAt = uint64(currentTime < ja.deadline ? currentTime : ja.deadline);
        bytes32 digest;
        mode = mode % 5;
        if (mode == 0) {
            if (a == b) return;
            digest = escrow.settlementDigest(b, root, total, 0, escrow.nonces(b), issuedAt);
            // Signed by B's coordinator key, which may be the same key as A's.
            bytes memory sigB = signDigest(_info[b].signerKey, digest);
            vm.prank(ja.creator);
            try escrow.settle(a, root, total, 0, issuedAt, sigB) {
                ghostReplays++;
            } catch {}
            return;
        } else if (mode == 1) {
            uint256 home = block.chainid;
            vm.chainId(home + 1 + (jobSeedB % 1000));
            digest = escrow.settlementDigest(a, root, total, 0, nonce, issuedAt);
            vm.chainId(home);
        } else if (mode == 2) {
            digest = otherEscrow.settlementDigest(a, root, total, 0, nonce, issuedAt);
        } else if (mode == 3) {
            digest = escrow.settlementDigest(a, root, total, 0, nonce + 1, issuedAt);
        } else {
            // Signed as issued a second later than submitted (as if back-dated to skip the grace).
            digest = escrow.settlementDigest(a, root, total, 0, nonce, issuedAt + 1);
        }
        bytes memory sig = signDigest(ja.signerKey, digest);
        vm.prank(ja.creator);
        try escrow.settle(a, root, total, 0, issuedAt, sig) {
            ghostReplays++;
        } catch {}
    }

    /// @notice Anyone submits a valid claim for a leaf.
    function claim(uint256 jobSeed, uint256 leafSeed, uint256 callerSeed) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Settled);
        if (!any || _leaves[job].length == 0) return;
        (Merkle.Payout[] memory p, Merkle.Tree memory t) = _tree(job);
        uint256 k = leafSeed % p.length;
        bytes32[] memory proof = Merkle.proof(t, k);
        vm.prank(_actor(callerSeed));
        try escrow.claim(job, p[k].index, p[k].account, p[k].amount, proof) {
            if (++payCount[job][p[k].index] > 1) ghostDoublePays++;
            _info[job].claimed += p[k].amount;
            _pay(job, p[k].amount);
            okClaims++;
        } catch {}
    }

    /// @notice A claim that must fail: wrong amount (mode 0), wrong account (1), an index not in
    /// the tree (2), a forged proof (3), or a leaf and proof of another job (4).
    function claimInvalid(uint256 jobSeed, uint256 leafSeed, uint8 mode, uint256 noise) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Settled);
        if (!any || _leaves[job].length == 0) return;
        (Merkle.Payout[] memory p, Merkle.Tree memory t) = _tree(job);
        uint256 k = leafSeed % p.length;
        Merkle.Payout memory leaf = p[k];
        bytes32[] memory proof = Merkle.proof(t, k);
        mode = mode % 5;
        if (mode == 0) {
            leaf.amount += 1 + noise % 1e18;
        } else if (mode == 1) {
            leaf.account = address(uint160(leaf.account) ^ uint160(1 + noise % type(uint160).max));
        } else if (mode == 2) {
            leaf.index = p.length + noise % 1000;
        } else if (mode == 3) {
            if (proof.length == 0) {
                proof = new bytes32[](1);
            }
            proof[noise % proof.length] = keccak256(abi.encode(noise));
        } else {
            (, bytes32 other) = _pickJob(noise);
            if (other == job || _leaves[other].length == 0) return;
            (Merkle.Payout[] memory q, Merkle.Tree memory u) = _tree(other);
            uint256 m = noise % q.length;
            // Skip if the very same leaf is also in this job's tree: then it is a valid claim.
            for (uint256 i = 0; i < p.length; i++) {
                if (p[i].index == q[m].index && p[i].account == q[m].account && p[i].amount == q[m].amount) return;
            }
            leaf = q[m];
            proof = Merkle.proof(u, m);
        }
        try escrow.claim(job, leaf.index, leaf.account, leaf.amount, proof) {
            ghostInvalidClaims++;
        } catch {}
    }

    /// @notice Anyone (often the creator) tries to refund a job: it must succeed exactly when the
    /// job is still funded and its refund is open.
    function refund(uint256 jobSeed, uint256 callerSeed) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Funded);
        if (!any) return;
        address caller = callerSeed % 2 == 0 ? _info[job].creator : _actor(callerSeed >> 1);
        _refund(job, caller);
    }

    function _refund(bytes32 job, address caller) internal {
        bytes memory expected;
        if (_info[job].state != OblivionEscrow.State.Funded) {
            expected = abi.encodeWithSelector(OblivionEscrow.JobNotFunded.selector, job);
        } else if (currentTime < refundAt(job)) {
            expected = abi.encodeWithSelector(OblivionEscrow.RefundNotOpen.selector, refundAt(job));
        }
        vm.prank(caller);
        try escrow.refund(job) {
            if (expected.length != 0) ghostWrongRefundOutcomes++;
            _info[job].state = OblivionEscrow.State.Refunded;
            _issued[job].pending = false;
            _pay(job, _info[job].deposit);
            okRefunds++;
        } catch (bytes memory err) {
            if (keccak256(err) != keccak256(expected)) ghostWrongRefundOutcomes++;
        }
    }

    function sweep(uint256 jobSeed, uint256 callerSeed) external atCurrentTime {
        (bool any, bytes32 job) = _pickJobIn(jobSeed, OblivionEscrow.State.Settled);
        if (!any) return;
        vm.prank(_actor(callerSeed));
        try escrow.sweep(job) {
            JobInfo storage j = _info[job];
            j.state = OblivionEscrow.State.Swept;
            _pay(job, j.total - j.claimed);
            okSweeps++;
        } catch {}
    }

    /// @notice Time moves on. On the way, every issued settlement whose contributors' moment
    /// comes is handled in time order: its creator tries to refund the job first, then a
    /// contributor (or the coordinator) submits the settlement, which must succeed.
    function warp(uint256 secs) external {
        uint256 target = currentTime + bound(secs, 0, 12 hours);
        while (true) {
            (bool found, bytes32 job) = _nextKeeper(target);
            if (!found) break;
            Issued memory s = _issued[job];
            if (s.keeperAt > currentTime) currentTime = s.keeperAt;
            vm.warp(currentTime);
            JobInfo memory j = _info[job];
            _refund(job, j.creator);
            address caller = _issuedLeaves[job][0].account;
            if (caller == j.creator) caller = vm.addr(j.signerKey);
            if (_submit(job, caller, s.root, s.total, s.model, s.issuedAt, s.sig, _issuedLeaves[job])) {
                okKeeperSettles++;
            } else {
                ghostKeeperFailures++;
                _issued[job].pending = false;
            }
        }
        currentTime = target;
        vm.warp(currentTime);
    }

    /// @dev The pending issued settlement with the earliest contributors' moment at most `until`.
    function _nextKeeper(uint256 until) internal view returns (bool found, bytes32 job) {
        uint256 best = type(uint256).max;
        for (uint256 i = 0; i < jobKeys.length; i++) {
            bytes32 k = jobKeys[i];
            Issued storage s = _issued[k];
            if (s.pending && s.keeperAt <= until && s.keeperAt < best) {
                best = s.keeperAt;
                job = k;
                found = true;
            }
        }
    }
}
