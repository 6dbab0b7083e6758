// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {EscrowCore} from "./EscrowCore.sol";

/// @title OblivionMarket
/// @notice Sales of trained models, in the native currency.
///
/// A model's owner lists it at a price with a listing the coordinator signed: the coordinator
/// vouches that the owner owns the model with hash `modelHash`, and commits to the shares of the
/// contributors who trained it (a Merkle tree of `(index, account, weight)` leaves, the weights
/// adding up to `SHARE_UNIT`, in proportion to their verified work). The owner sets the price and
/// the contributors' part of each sale in basis points, at most `MAX_CONTRIBUTORS_BPS`, and the
/// coordinator's signature covers both.
///
/// A purchase pays exactly the price: the contributors' part (rounded down) joins the listing's
/// pool, the rest is owed to the owner, who withdraws it. A contributor's claim is cumulative:
/// the leaf's account is owed `pool * weight / SHARE_UNIT` (rounded down) less what that leaf has
/// already been paid, so every later sale adds to what the same proof claims, with no deadline.
/// The pool never pays out more than it took in; what rounding leaves in it (less than one wei per
/// leaf, over all sales together) stays in the escrow.
///
/// Life cycle of a listing (key `listingKey(owner, signer, modelId)`):
///   list (owner, coordinator signature)  -> Active
///   Active --list again (new price or part; same model hash and shares)--> Active
///   Active --delist (owner)--> Inactive --list--> Active
///   Active --purchase (anyone, once per buyer, exactly the price)--> Active
///   any    --claimShare (anyone, for the leaf's account) / withdraw (owner)
abstract contract OblivionMarket is EscrowCore {
    /// @notice The largest part of a sale that a listing may give its contributors, in basis
    /// points: the rest is the owner's.
    uint16 public constant MAX_CONTRIBUTORS_BPS = 5_000;

    /// @notice What the weights of a listing's share leaves add up to.
    uint256 public constant SHARE_UNIT = 1_000_000;

    /// @notice EIP-712 type hash of the coordinator's listing statement.
    bytes32 public constant LISTING_TYPEHASH = keccak256(
        "Listing(uint256 modelId,address owner,bytes32 modelHash,uint256 price,uint16 contributorsBps,bytes32 sharesRoot,uint256 nonce)"
    );

    /// @dev slot 0 = owner|contributorsBps|nonce|active, slot 1 = signer.
    struct Listing {
        address owner;
        uint16 contributorsBps;
        uint32 nonce;
        bool active;
        address signer;
        uint256 modelId;
        uint256 price;
        bytes32 modelHash;
        bytes32 sharesRoot;
        uint256 pool;
        uint256 poolClaimed;
    }

    mapping(bytes32 listing => Listing) private _listings;
    mapping(bytes32 listing => mapping(address buyer => bool)) private _bought;
    mapping(bytes32 listing => mapping(uint256 index => uint256)) private _sharePaid;
    mapping(address owner => uint256) private _proceeds;

    /// @notice `owner` listed (or listed again) its model `modelId` with these terms.
    event Listed(
        bytes32 indexed listing,
        address indexed owner,
        address indexed signer,
        uint256 modelId,
        bytes32 modelHash,
        uint256 price,
        uint16 contributorsBps,
        bytes32 sharesRoot,
        uint256 nonce
    );

    /// @notice The owner took the listing off sale. Claims and withdrawals go on.
    event Delisted(bytes32 indexed listing);

    /// @notice `buyer` paid `price` for the listing's model: `ownerPart` is owed to the owner,
    /// `contributorsPart` joined the contributors' pool.
    event Purchased(
        bytes32 indexed listing,
        address indexed buyer,
        uint256 modelId,
        uint256 price,
        uint256 ownerPart,
        uint256 contributorsPart
    );

    /// @notice Share leaf `index` of the listing was paid `amount` more.
    event ShareClaimed(bytes32 indexed listing, uint256 index, address indexed account, uint256 amount);

    /// @notice An owner withdrew the proceeds of its sales.
    event Withdrawn(address indexed owner, uint256 amount);

    error ContributorsShareTooHigh(uint16 contributorsBps, uint16 max);
    error NoContributors();
    error ListingTermsFixed();
    error NotListed(bytes32 listing);
    error NotOwner(address owner);
    error WrongPayment(uint256 sent, uint256 price);
    error AlreadyBought(address buyer);
    error NothingToClaim();
    error PoolExceeded(uint256 claimed, uint256 pool);
    error NothingToWithdraw();

    /// @notice Key of the listing of model `modelId` by `owner` under the coordinator key
    /// `signer`. Binding the owner keeps anyone else from occupying it.
    function listingKey(address owner, address signer, uint256 modelId) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, signer, modelId));
    }

    /// @notice EIP-712 digest the coordinator signs for a listing. Exposed so that off-chain code
    /// can check its own encoding against the contract's.
    function listingDigest(
        uint256 modelId,
        address owner,
        bytes32 modelHash,
        uint256 price,
        uint16 contributorsBps,
        bytes32 sharesRoot,
        uint256 nonce
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(LISTING_TYPEHASH, modelId, owner, modelHash, price, contributorsBps, sharesRoot, nonce)
            )
        );
    }

    /// @notice Everything recorded about `listing`.
    function listings(bytes32 listing) external view returns (Listing memory) {
        return _listings[listing];
    }

    /// @notice Whether `buyer` has bought `listing`'s model.
    function hasBought(bytes32 listing, address buyer) external view returns (bool) {
        return _bought[listing][buyer];
    }

    /// @notice What share leaf `index` of `listing` has been paid so far.
    function sharePaid(bytes32 listing, uint256 index) external view returns (uint256) {
        return _sharePaid[listing][index];
    }

    /// @notice What `owner` may withdraw.
    function proceeds(address owner) external view returns (uint256) {
        return _proceeds[owner];
    }

    /// @notice List model `modelId` (or change an active or past listing's price and part) with
    /// the coordinator `signer`'s signature over
    /// `Listing(modelId, msg.sender, modelHash, price, contributorsBps, sharesRoot, nonce)`, where
    /// `nonce` is the listing's count of earlier listings, so no signature lists twice.
    /// A listing's model hash and shares never change once listed: sales already made were split
    /// by them.
    function list(
        uint256 modelId,
        address signer,
        bytes32 modelHash,
        uint256 price,
        uint16 contributorsBps,
        bytes32 sharesRoot,
        bytes calldata signature
    ) external nonReentrant returns (bytes32 listing) {
        if (signer == address(0)) revert ZeroSigner();
        if (price == 0) revert ZeroAmount();
        if (contributorsBps > MAX_CONTRIBUTORS_BPS) {
            revert ContributorsShareTooHigh(contributorsBps, MAX_CONTRIBUTORS_BPS);
        }
        if (sharesRoot == bytes32(0) && contributorsBps != 0) revert NoContributors();
        listing = listingKey(msg.sender, signer, modelId);
        Listing storage l = _listings[listing];
        bool listedBefore = l.owner != address(0);
        if (listedBefore && (l.modelHash != modelHash || l.sharesRoot != sharesRoot)) revert ListingTermsFixed();
        uint32 nonce = l.nonce;
        _checkSignature(
            signer, listingDigest(modelId, msg.sender, modelHash, price, contributorsBps, sharesRoot, nonce), signature
        );

        if (!listedBefore) {
            l.owner = msg.sender;
            l.signer = signer;
            l.modelId = modelId;
            l.modelHash = modelHash;
            l.sharesRoot = sharesRoot;
        }
        l.nonce = nonce + 1;
        l.active = true;
        l.price = price;
        l.contributorsBps = contributorsBps;
        emit Listed(listing, msg.sender, signer, modelId, modelHash, price, contributorsBps, sharesRoot, nonce);
    }

    /// @notice Take `listing` off sale (its owner only).
    function delist(bytes32 listing) external nonReentrant {
        Listing storage l = _listings[listing];
        if (!l.active) revert NotListed(listing);
        if (msg.sender != l.owner) revert NotOwner(l.owner);
        l.active = false;
        emit Delisted(listing);
    }

    /// @notice Buy `listing`'s model for exactly its price, sent along. A price changed while the
    /// purchase was pending makes it revert rather than pay another amount.
    function purchase(bytes32 listing) external payable nonReentrant {
        Listing storage l = _listings[listing];
        if (!l.active) revert NotListed(listing);
        uint256 price = l.price;
        if (msg.value != price) revert WrongPayment(msg.value, price);
        if (_bought[listing][msg.sender]) revert AlreadyBought(msg.sender);

        uint256 contributorsPart = price * l.contributorsBps / 10_000;
        uint256 ownerPart = price - contributorsPart;
        _bought[listing][msg.sender] = true;
        l.pool += contributorsPart;
        _proceeds[l.owner] += ownerPart;
        emit Purchased(listing, msg.sender, l.modelId, price, ownerPart, contributorsPart);
    }

    /// @notice Pay share leaf `index` of `listing` what the sales so far owe it beyond what it was
    /// paid: `pool * weight / SHARE_UNIT - sharePaid`. Anyone may submit it (a relayer, the
    /// coordinator); the funds always go to `account`.
    /// @dev Leaf encoding as the job payouts': `keccak256(bytes.concat(keccak256(abi.encode(index,
    /// account, weight))))`. The pool's running paid sum is capped at the pool, so even a faulty
    /// root cannot pay out more than the sales took in.
    function claimShare(bytes32 listing, uint256 index, address account, uint256 weight, bytes32[] calldata proof)
        external
        nonReentrant
    {
        Listing storage l = _listings[listing];
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, account, weight))));
        if (l.sharesRoot == bytes32(0) || !MerkleProof.verifyCalldata(proof, l.sharesRoot, leaf)) {
            revert InvalidProof();
        }
        uint256 owed = Math.mulDiv(l.pool, weight, SHARE_UNIT);
        uint256 paid = _sharePaid[listing][index];
        if (owed <= paid) revert NothingToClaim();
        uint256 amount = owed - paid;
        uint256 poolClaimed = l.poolClaimed + amount;
        if (poolClaimed > l.pool) revert PoolExceeded(poolClaimed, l.pool);

        _sharePaid[listing][index] = owed;
        l.poolClaimed = poolClaimed;
        emit ShareClaimed(listing, index, account, amount);

        _pay(address(0), account, amount);
    }

    /// @notice Pay the caller the proceeds of its sales.
    function withdraw() external nonReentrant {
        uint256 amount = _proceeds[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _proceeds[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);

        _pay(address(0), msg.sender, amount);
    }
}
