// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Payout tree builder for tests, laid out exactly as OpenZeppelin's StandardMerkleTree
/// (leaf hashes sorted ascending, stored from the end of a `2n - 1` node array, node `i` =
/// hash of nodes `2i + 1` and `2i + 2`, pairs hashed in sorted order), so its roots match
/// what the coordinator computes with a StandardMerkleTree of `[uint256, address, uint256]`.
library Merkle {
    struct Payout {
        uint256 index;
        address account;
        uint256 amount;
    }

    struct Tree {
        bytes32[] nodes;
        /// @dev `position[k]` is the node index of the k-th payout given to `build`.
        uint256[] position;
    }

    /// @notice The escrow's leaf: StandardMerkleTree's double hash of `abi.encode(index, account, amount)`.
    function leaf(uint256 index, address account, uint256 amount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
    }

    /// @notice Sorted-pair hash, as OpenZeppelin's `Hashes.commutativeKeccak256`.
    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function build(Payout[] memory payouts) internal pure returns (Tree memory t) {
        uint256 n = payouts.length;
        require(n > 0, "empty tree");
        bytes32[] memory hashes = new bytes32[](n);
        uint256[] memory order = new uint256[](n);
        for (uint256 k = 0; k < n; k++) {
            hashes[k] = leaf(payouts[k].index, payouts[k].account, payouts[k].amount);
            order[k] = k;
        }
        // Insertion sort of payout numbers by leaf hash (trees in tests are small).
        for (uint256 i = 1; i < n; i++) {
            uint256 cur = order[i];
            uint256 j = i;
            while (j > 0 && hashes[order[j - 1]] > hashes[cur]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = cur;
        }
        t.nodes = new bytes32[](2 * n - 1);
        t.position = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 pos = 2 * n - 2 - i;
            t.nodes[pos] = hashes[order[i]];
            t.position[order[i]] = pos;
        }
        if (n > 1) {
            for (uint256 i = n - 1; i > 0; i--) {
                t.nodes[i - 1] = hashPair(t.nodes[2 * i - 1], t.nodes[2 * i]);
            }
        }
    }

    function root(Tree memory t) internal pure returns (bytes32) {
        return t.nodes[0];
    }

    /// @notice Proof for the k-th payout given to `build`.
    function proof(Tree memory t, uint256 k) internal pure returns (bytes32[] memory p) {
        uint256 idx = t.position[k];
        uint256 len = 0;
        for (uint256 i = idx; i > 0; i = (i - 1) / 2) {
            len++;
        }
        p = new bytes32[](len);
        uint256 d = 0;
        while (idx > 0) {
            p[d++] = t.nodes[idx % 2 == 1 ? idx + 1 : idx - 1];
            idx = (idx - 1) / 2;
        }
    }
}
