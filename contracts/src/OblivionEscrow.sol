// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";
import {EscrowCore} from "./EscrowCore.sol";
import {OblivionMarket} from "./OblivionMarket.sol";

/// @title OblivionEscrow
/// @notice Escrow for paid machine-learning jobs.
///
/// A job's creator deposits the payment up front (native currency or an ERC-20) and names the
/// coordinator key that will sign the job's settlement. When the work is done the coordinator
/// signs a settlement (a Merkle root of contributor payouts, their total, the hash of the
/// resulting model and when it was issued). The creator may submit it at once; once the
/// settlement grace has passed since it was issued, anyone may (a contributor, the coordinator),
/// so contributors are paid for finished work whatever the creator does. At settlement the
/// excess of the deposit over the total goes back to the creator, and each contributor claims
/// their leaf with a Merkle proof during the claim window. Whatever is not claimed by the end of
/// the window goes back to the creator.
///
/// A job that is not settled by `deadline + 2 * settleGrace` is refunded in full. A settlement
/// must be issued by the deadline, so a signed one always leaves anyone at least one grace period
/// to submit it before the refund opens: a creator cannot take the work and then the deposit.
///
/// Life cycle of a job:
///   fund / fundToken  -> Funded
///   Funded  --settle (coordinator signature; creator at once, anyone after grace)--> Settled
///   Funded  --refund (anyone, after deadline + 2 grace)-----------------------------> Refunded
///   Settled --claim (anyone, for the leaf's account, within window)-----------------> Settled
///   Settled --sweep (anyone, after window)------------------------------------------> Swept
///
/// The same contract sells trained models (`OblivionMarket`): a model's sales pay its owner and,
/// through claims of the same kind, the contributors who trained it.
///
/// @dev Every state-changing entry point is `nonReentrant` and follows checks-effects-interactions.
contract OblivionEscrow is EscrowCore, OblivionMarket {
    using SafeERC20 for IERC20;
    using BitMaps for BitMaps.BitMap;

    // ------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------

    /// @notice Life-cycle state of a job. `None` means the key was never funded.
    enum State {
        None,
        Funded,
        Settled,
        Refunded,
        Swept
    }

    /// @dev Storage layout packed so that the claim path touches as few slots as possible:
    /// slot 0 = creator|deadline|state, slot 1 = signer|settledAt|nonce, slot 2 = token.
    struct Job {
        address creator;
        uint64 deadline;
        State state;
        address signer;
        uint64 settledAt;
        uint32 nonce;
        address token;
        uint256 deposit;
        uint256 total;
        uint256 claimed;
        bytes32 root;
        bytes32 specHash;
        bytes32 modelHash;
    }

    // ------------------------------------------------------------------------------------------
    // Constants and immutables
    // ------------------------------------------------------------------------------------------

    /// @notice EIP-712 type hash of the coordinator's settlement statement.
    bytes32 public constant SETTLEMENT_TYPEHASH =
        keccak256("Settlement(bytes32 job,bytes32 root,uint256 total,bytes32 modelHash,uint256 nonce,uint64 issuedAt)");

    /// @notice Seconds after settlement during which contributors may claim. Fixed per deployment
    /// so that neither the creator nor the coordinator can shorten a window after the fact.
    uint64 public immutable claimWindow;

    /// @notice Seconds after a settlement is issued during which only the creator may submit it;
    /// after them anyone may. The refund opens `2 * settleGrace` after the deadline, so a
    /// settlement issued at the deadline still leaves everyone a full grace period to submit it.
    uint64 public immutable settleGrace;

    // ------------------------------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------------------------------

    mapping(bytes32 job => Job) private _jobs;
    mapping(bytes32 job => BitMaps.BitMap) private _claimedIndexes;

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice A job was funded. `token` is address(0) for the native currency; `amount` is what
    /// the escrow actually received.
    event Funded(
        bytes32 indexed job,
        address indexed creator,
        address indexed signer,
        uint256 jobId,
        address token,
        uint256 amount,
        uint64 deadline,
        bytes32 specHash
    );

    /// @notice A job was settled with the coordinator's signed payout root.
    event Settled(bytes32 indexed job, bytes32 root, uint256 total, bytes32 modelHash, uint256 nonce);

    /// @notice At settlement, the part of the deposit above the settled total went back to the
    /// creator. Emitted only when that excess is nonzero.
    event Returned(bytes32 indexed job, address indexed creator, uint256 amount);

    /// @notice A contributor's leaf was paid.
    event Claimed(bytes32 indexed job, uint256 index, address indexed account, uint256 amount);

    /// @notice An unsettled job passed its deadline and its whole deposit went back to the creator.
    event Refunded(bytes32 indexed job, address indexed creator, uint256 amount);

    /// @notice The claim window closed and the unclaimed rest went back to the creator.
    event Swept(bytes32 indexed job, address indexed creator, uint256 amount);

    // ------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------

    error ZeroClaimWindow();
    error ZeroSettleGrace();
    error ZeroToken();
    error DeadlineNotInFuture(uint64 deadline);
    error JobExists(bytes32 job);
    error JobNotFunded(bytes32 job);
    error JobNotSettled(bytes32 job);
    error SettlementInGrace(uint256 opensAt);
    error IssuedAfterDeadline(uint64 issuedAt, uint64 deadline);
    error IssuedInFuture(uint64 issuedAt);
    error RefundOpen(uint256 openedAt);
    error RefundNotOpen(uint256 opensAt);
    error TotalExceedsDeposit(uint256 total, uint256 deposit);
    error ClaimWindowClosed(uint256 closesAt);
    error ClaimWindowOpen(uint256 closesAt);
    error AlreadyClaimed(uint256 index);
    error ClaimExceedsTotal(uint256 claimed, uint256 total);

    // ------------------------------------------------------------------------------------------
    // Construction
    // ------------------------------------------------------------------------------------------

    /// @param claimWindow_ Seconds after settlement during which claims are open. Must be
    /// nonzero: a zero window would let the creator sweep in the very next block.
    /// @param settleGrace_ Seconds after a settlement is issued during which only the creator may
    /// submit it. Must be nonzero: with none, a settlement issued at the deadline could meet a
    /// refund in the same block.
    constructor(uint64 claimWindow_, uint64 settleGrace_) EIP712("OblivionEscrow", "1") {
        if (claimWindow_ == 0) revert ZeroClaimWindow();
        if (settleGrace_ == 0) revert ZeroSettleGrace();
        claimWindow = claimWindow_;
        settleGrace = settleGrace_;
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice Key of a job. It binds the funding wallet and the coordinator key to the
    /// coordinator's job id, so nobody can front-run a creator's funding transaction to occupy
    /// ("squat") its key, and a settlement signed for one creator's job can never apply to another's.
    function jobKey(address creator, address signer, uint256 jobId) public pure returns (bytes32) {
        return keccak256(abi.encode(creator, signer, jobId));
    }

    /// @notice EIP-712 digest the coordinator signs to settle `job`. Exposed so that off-chain
    /// code can check its own encoding against the contract's.
    function settlementDigest(
        bytes32 job,
        bytes32 root,
        uint256 total,
        bytes32 modelHash,
        uint256 nonce,
        uint64 issuedAt
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(SETTLEMENT_TYPEHASH, job, root, total, modelHash, nonce, issuedAt))
        );
    }

    /// @notice First timestamp at which `refund(job)` succeeds for a job still funded:
    /// `deadline + 2 * settleGrace + 1`.
    function refundOpensAt(bytes32 job) public view returns (uint256) {
        return uint256(_jobs[job].deadline) + 2 * uint256(settleGrace) + 1;
    }

    /// @notice Settlement nonce of `job`: the value the next settlement signature must carry.
    /// Starts at 0 and is incremented by `settle`, so a signature can be used at most once.
    function nonces(bytes32 job) external view returns (uint256) {
        return _jobs[job].nonce;
    }

    /// @notice Whether leaf `index` of `job` has been paid.
    function isClaimed(bytes32 job, uint256 index) external view returns (bool) {
        return _claimedIndexes[job].get(index);
    }

    /// @notice Everything recorded about `job`. `token` is address(0) for the native currency.
    function jobs(bytes32 job)
        external
        view
        returns (
            address creator,
            address signer,
            address token,
            uint64 deadline,
            uint64 settledAt,
            uint256 deposit,
            uint256 total,
            uint256 claimed,
            bytes32 root,
            bytes32 specHash,
            bytes32 modelHash,
            State state
        )
    {
        Job storage j = _jobs[job];
        creator = j.creator;
        signer = j.signer;
        token = j.token;
        deadline = j.deadline;
        settledAt = j.settledAt;
        deposit = j.deposit;
        total = j.total;
        claimed = j.claimed;
        root = j.root;
        specHash = j.specHash;
        modelHash = j.modelHash;
        state = j.state;
    }

    // ------------------------------------------------------------------------------------------
    // Funding
    // ------------------------------------------------------------------------------------------

    /// @notice Fund job `jobId` with the native currency sent along.
    /// @param jobId The coordinator's id of the job.
    /// @param signer The coordinator key that will sign the settlement.
    /// @param specHash Hash of the job specification, recorded so both sides can point at it.
    /// @param deadline Last timestamp at which the coordinator may issue the settlement; the
    /// refund opens `2 * settleGrace` after it.
    /// @return job The job key, `jobKey(msg.sender, signer, jobId)`.
    function fund(uint256 jobId, address signer, bytes32 specHash, uint64 deadline)
        external
        payable
        nonReentrant
        returns (bytes32 job)
    {
        if (msg.value == 0) revert ZeroAmount();
        job = _open(jobId, signer, deadline);
        _record(job, jobId, signer, specHash, deadline, address(0), msg.value);
    }

    /// @notice Fund job `jobId` with `amount` of `token`, pulled from the caller (who must have
    /// approved the escrow). The deposit is what actually arrived, measured by balance delta, so a
    /// fee-on-transfer token can never credit more than the escrow holds.
    /// @dev Tokens whose balances change on their own (rebasing) are not supported.
    function fundToken(uint256 jobId, address signer, bytes32 specHash, uint64 deadline, IERC20 token, uint256 amount)
        external
        nonReentrant
        returns (bytes32 job)
    {
        if (amount == 0) revert ZeroAmount();
        if (address(token) == address(0)) revert ZeroToken();
        job = _open(jobId, signer, deadline);

        // The deposit can only be known after the transfer; the job key is checked unused above
        // and the reentrancy guard keeps it so until the record is written.
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();

        _record(job, jobId, signer, specHash, deadline, address(token), received);
    }

    function _open(uint256 jobId, address signer, uint64 deadline) private view returns (bytes32 job) {
        if (signer == address(0)) revert ZeroSigner();
        if (deadline <= block.timestamp) revert DeadlineNotInFuture(deadline);
        job = jobKey(msg.sender, signer, jobId);
        if (_jobs[job].state != State.None) revert JobExists(job);
    }

    function _record(
        bytes32 job,
        uint256 jobId,
        address signer,
        bytes32 specHash,
        uint64 deadline,
        address token,
        uint256 amount
    ) private {
        Job storage j = _jobs[job];
        j.creator = msg.sender;
        j.deadline = deadline;
        j.state = State.Funded;
        j.signer = signer;
        j.token = token;
        j.deposit = amount;
        j.specHash = specHash;
        emit Funded(job, msg.sender, signer, jobId, token, amount, deadline, specHash);
    }

    // ------------------------------------------------------------------------------------------
    // Settlement
    // ------------------------------------------------------------------------------------------

    /// @notice Settle `job` with the coordinator's signed payout statement.
    ///
    /// The coordinator's signature decides how the deposit is spent; the creator chose the
    /// coordinator and the deposit's size when funding. The creator may submit the settlement as
    /// soon as it is issued; anyone may after `settleGrace`, so that the contributors of a
    /// finished job are paid even when its creator walks away. The settlement must have been
    /// issued by the deadline, and no settlement is accepted once the refund is open.
    ///
    /// @param root Merkle root of the payout leaves `(uint256 index, address account, uint256 amount)`.
    /// @param total Sum the leaves may pay at most; the deposit's excess over it is returned now.
    /// @param modelHash Hash of the model the job produced.
    /// @param issuedAt When the coordinator issued the settlement (at most the deadline).
    /// @param signature The signer's 65-byte EIP-712 signature over
    ///        `Settlement(job, root, total, modelHash, nonces(job), issuedAt)`.
    function settle(
        bytes32 job,
        bytes32 root,
        uint256 total,
        bytes32 modelHash,
        uint64 issuedAt,
        bytes calldata signature
    ) external nonReentrant {
        Job storage j = _jobs[job];
        _checkSettleable(j, job, issuedAt);
        uint256 deposit = j.deposit;
        if (total > deposit) revert TotalExceedsDeposit(total, deposit);

        uint256 nonce = j.nonce;
        _checkSignature(j.signer, settlementDigest(job, root, total, modelHash, nonce, issuedAt), signature);

        j.state = State.Settled;
        j.settledAt = uint64(block.timestamp);
        // A job settles at most once, so its nonce never exceeds 1.
        // forge-lint: disable-next-line(unsafe-typecast)
        j.nonce = uint32(nonce + 1);
        j.root = root;
        j.total = total;
        j.modelHash = modelHash;
        emit Settled(job, root, total, modelHash, nonce);

        uint256 excess = deposit - total;
        if (excess != 0) {
            address creator = j.creator;
            emit Returned(job, creator, excess);
            _pay(j.token, creator, excess);
        }
    }

    /// @dev Whether `msg.sender` may settle `job` now with a settlement issued at `issuedAt`.
    function _checkSettleable(Job storage j, bytes32 job, uint64 issuedAt) private view {
        if (j.state != State.Funded) revert JobNotFunded(job);
        uint256 refundAt = refundOpensAt(job);
        if (block.timestamp >= refundAt) revert RefundOpen(refundAt);
        if (issuedAt > j.deadline) revert IssuedAfterDeadline(issuedAt, j.deadline);
        if (issuedAt > block.timestamp) revert IssuedInFuture(issuedAt);
        if (msg.sender != j.creator) {
            uint256 opensAt = uint256(issuedAt) + settleGrace;
            if (block.timestamp < opensAt) revert SettlementInGrace(opensAt);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Claims
    // ------------------------------------------------------------------------------------------

    /// @notice Pay leaf `index` of `job`'s payout tree to `account`. Anyone may submit a claim
    /// (a relayer, the coordinator); the funds always go to `account`.
    /// @dev Leaf encoding is OpenZeppelin StandardMerkleTree's for types
    /// `[uint256, address, uint256]`: `keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))`.
    /// The running claimed sum is capped at `total`, so even a faulty root cannot pay out more
    /// than the creator agreed to at settlement.
    function claim(bytes32 job, uint256 index, address account, uint256 amount, bytes32[] calldata proof)
        external
        nonReentrant
    {
        Job storage j = _jobs[job];
        if (j.state != State.Settled) revert JobNotSettled(job);
        uint256 closesAt = uint256(j.settledAt) + claimWindow;
        if (block.timestamp > closesAt) revert ClaimWindowClosed(closesAt);
        BitMaps.BitMap storage paid = _claimedIndexes[job];
        if (paid.get(index)) revert AlreadyClaimed(index);

        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
        if (!MerkleProof.verifyCalldata(proof, j.root, leaf)) revert InvalidProof();

        uint256 claimed = j.claimed + amount;
        if (claimed > j.total) revert ClaimExceedsTotal(claimed, j.total);

        paid.set(index);
        j.claimed = claimed;
        emit Claimed(job, index, account, amount);

        _pay(j.token, account, amount);
    }

    // ------------------------------------------------------------------------------------------
    // Returns to the creator
    // ------------------------------------------------------------------------------------------

    /// @notice Return the whole deposit of a job that was not settled by `refundOpensAt(job)`.
    /// Anyone may call (so a creator's funds are never stuck behind its own availability); the
    /// funds always go to the creator.
    function refund(bytes32 job) external nonReentrant {
        Job storage j = _jobs[job];
        if (j.state != State.Funded) revert JobNotFunded(job);
        uint256 opensAt = refundOpensAt(job);
        if (block.timestamp < opensAt) revert RefundNotOpen(opensAt);

        j.state = State.Refunded;
        uint256 amount = j.deposit;
        address creator = j.creator;
        emit Refunded(job, creator, amount);

        _pay(j.token, creator, amount);
    }

    /// @notice After the claim window, return what contributors left unclaimed (`total - claimed`)
    /// to the creator. Once per job; anyone may call; the funds always go to the creator.
    function sweep(bytes32 job) external nonReentrant {
        Job storage j = _jobs[job];
        if (j.state != State.Settled) revert JobNotSettled(job);
        uint256 closesAt = uint256(j.settledAt) + claimWindow;
        if (block.timestamp <= closesAt) revert ClaimWindowOpen(closesAt);

        j.state = State.Swept;
        uint256 amount = j.total - j.claimed;
        address creator = j.creator;
        emit Swept(job, creator, amount);

        _pay(j.token, creator, amount);
    }
}
