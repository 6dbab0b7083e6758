// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Base} from "../Base.sol";
import {Merkle} from "../utils/Merkle.sol";
import {OblivionEscrow} from "../../src/OblivionEscrow.sol";
import {OblivionMarket} from "../../src/OblivionMarket.sol";

/// @notice Drives the market through random sequences of listings, relistings at new prices and
/// parts, delistings, purchases (some with the wrong payment or twice), share claims (some
/// forged), withdrawals (some by strangers) and time jumps. It keeps a ledger of what each
/// listing took in and paid out, and counters of forbidden successes.
contract MarketHandler is Base {
    uint256 internal constant SIGNER_KEY = 0xC0FFEE;
    uint256 internal constant UNIT = 1_000_000;
    uint256 internal constant LISTINGS = 4;
    uint256 internal constant LEAVES = 3;
    bytes32 internal constant MODEL = keccak256("model: weights v1");

    OblivionEscrow public immutable escrow;
    address public immutable signer;

    bytes32[LISTINGS] public keys;
    address[LISTINGS] public owners;
    bool[LISTINGS] internal _listed;
    Merkle.Payout[LEAVES] internal _leaves;
    Merkle.Tree internal _tree;
    bytes32 public root;

    /// @dev What the ledger says each listing's pool took in and each owner is owed.
    uint256[LISTINGS] public poolIn;
    mapping(address owner => uint256) public owed;
    uint256 public held;

    uint256 public ghostDoublePurchases;
    uint256 public ghostWrongPayments;
    uint256 public ghostForgedClaims;
    uint256 public ghostOverpaidLeaves;
    uint256 public ghostStrangerWithdrawals;
    uint256 public okPurchases;
    uint256 public okClaims;
    uint256 public okWithdrawals;
    uint256 public okListings;

    constructor(OblivionEscrow escrow_) {
        escrow = escrow_;
        signer = vm.addr(SIGNER_KEY);
        uint256[3] memory w = [uint256(600_000), 250_001, 149_999];
        Merkle.Payout[] memory p = new Merkle.Payout[](LEAVES);
        for (uint256 i = 0; i < LEAVES; i++) {
            p[i] = Merkle.Payout(i, address(uint160(0xC0DE00 + i)), w[i]);
            _leaves[i] = p[i];
        }
        Merkle.Tree memory t = Merkle.build(p);
        root = Merkle.root(t);
        _tree = t;
        for (uint256 i = 0; i < LISTINGS; i++) {
            owners[i] = address(uint160(0x0A0000 + i % 2));
            keys[i] = escrow.listingKey(owners[i], signer, i);
        }
    }

    function leaf(uint256 i) external view returns (Merkle.Payout memory) {
        return _leaves[i];
    }

    function list(uint256 which, uint256 price, uint16 bps) external {
        which = which % LISTINGS;
        price = bound(price, 1, 1e24);
        bps = uint16(bound(bps, 0, 5_000));
        address owner = owners[which];
        bytes32 key = keys[which];
        uint256 nonce = escrow.listings(key).nonce;
        bytes32 digest = escrow.listingDigest(which, owner, MODEL, price, bps, root, nonce);
        bytes memory sig = signDigest(SIGNER_KEY, digest);
        vm.prank(owner);
        escrow.list(which, signer, MODEL, price, bps, root, sig);
        _listed[which] = true;
        okListings++;
    }

    function delist(uint256 which) external {
        which = which % LISTINGS;
        if (!escrow.listings(keys[which]).active) return;
        vm.prank(owners[which]);
        escrow.delist(keys[which]);
    }

    function purchase(uint256 which, uint256 buyerSeed, uint256 wrong) external {
        which = which % LISTINGS;
        bytes32 key = keys[which];
        OblivionMarket.Listing memory l = escrow.listings(key);
        address buyer = address(uint160(0xB00000 + buyerSeed % 5));
        uint256 pay = l.price;
        bool offPrice = wrong % 4 == 0;
        if (offPrice) pay = l.price + 1 + wrong % 1000;
        vm.deal(buyer, pay);
        bool already = escrow.hasBought(key, buyer);
        vm.prank(buyer);
        try escrow.purchase{value: pay}(key) {
            if (already) ghostDoublePurchases++;
            if (offPrice || !l.active) ghostWrongPayments++;
            uint256 part = pay * l.contributorsBps / 10_000;
            poolIn[which] += part;
            owed[l.owner] += pay - part;
            held += pay;
            okPurchases++;
        } catch {}
    }

    function claim(uint256 which, uint256 index) external {
        which = which % LISTINGS;
        index = index % LEAVES;
        bytes32 key = keys[which];
        Merkle.Payout memory p = _leaves[index];
        uint256 before = p.account.balance;
        try escrow.claimShare(key, index, p.account, p.amount, Merkle.proof(_tree, index)) {
            uint256 got = p.account.balance - before;
            held -= got;
            okClaims++;
            if (escrow.sharePaid(key, index) > poolIn[which] * p.amount / UNIT) ghostOverpaidLeaves++;
        } catch {}
    }

    function claimForged(uint256 which, uint256 index, uint256 weight) external {
        which = which % LISTINGS;
        index = index % LEAVES;
        Merkle.Payout memory p = _leaves[index];
        weight = bound(weight, p.amount + 1, UNIT * 4);
        try escrow.claimShare(keys[which], index, p.account, weight, Merkle.proof(_tree, index)) {
            ghostForgedClaims++;
        } catch {}
    }

    function withdraw(uint256 who) external {
        address caller = who % 3 == 2 ? address(0xDEAD) : owners[who % 2];
        uint256 before = caller.balance;
        vm.prank(caller);
        try escrow.withdraw() {
            uint256 got = caller.balance - before;
            if (got != owed[caller]) ghostStrangerWithdrawals++;
            owed[caller] = 0;
            held -= got;
            okWithdrawals++;
        } catch {}
    }

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 30 days));
    }
}
