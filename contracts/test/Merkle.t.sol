// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Merkle} from "./utils/Merkle.sol";

/// @notice The test tree builder agrees with OpenZeppelin's StandardMerkleTree and with
/// `MerkleProof`, so claims in the other tests exercise the encoding the coordinator uses.
contract MerkleTest is EscrowTest {
    /// @dev Payouts `(i, address(0x1000 + i), (i + 1) ether)` for i < n.
    function vector(uint256 n) internal pure returns (Merkle.Payout[] memory p) {
        p = new Merkle.Payout[](n);
        for (uint256 i = 0; i < n; i++) {
            p[i] = Merkle.Payout(i, address(uint160(0x1000 + i)), (i + 1) * 1 ether);
        }
    }

    /// @dev Roots and proofs below were produced by @openzeppelin/merkle-tree 1.x:
    /// `StandardMerkleTree.of(values, ["uint256", "address", "uint256"])`.
    function test_Builder_MatchesStandardMerkleTree() public pure {
        Merkle.Tree memory t1 = Merkle.build(vector(1));
        assertEq(Merkle.root(t1), 0x71e6ef658774193f574a5fa24557e2befcf72a3b48e26db0e4b5d968e92bc3de, "root n=1");
        assertEq(Merkle.proof(t1, 0).length, 0, "proof n=1");

        Merkle.Tree memory t2 = Merkle.build(vector(2));
        assertEq(Merkle.root(t2), 0x6e2d809e3c657e0bd8d5236e9c9461e194e9c6100316e429399f0bb42b87c72b, "root n=2");
        bytes32[] memory p2 = Merkle.proof(t2, 1);
        assertEq(p2.length, 1, "proof n=2 length");
        assertEq(p2[0], 0x71e6ef658774193f574a5fa24557e2befcf72a3b48e26db0e4b5d968e92bc3de, "proof n=2");

        Merkle.Tree memory t5 = Merkle.build(vector(5));
        assertEq(Merkle.root(t5), 0x5a9f5d858930641cfcacc15256b77b75941603e11ebeb547c89c016efe81806c, "root n=5");
        bytes32[] memory p5 = Merkle.proof(t5, 4);
        assertEq(p5.length, 2, "proof n=5 length");
        assertEq(p5[0], 0x9d0a552cff865ad6cab1c8b4e6b61126e1ad568ee0df30d93613cde79451608b, "proof n=5 [0]");
        assertEq(p5[1], 0x022ecfd26067553e7e4951ed42e12a5c8e5370f6050e28dde4ebbcafa081652c, "proof n=5 [1]");
    }

    function test_Builder_EveryLeafVerifies() public pure {
        for (uint256 n = 1; n <= 17; n++) {
            Merkle.Payout[] memory p = vector(n);
            Merkle.Tree memory t = Merkle.build(p);
            for (uint256 k = 0; k < n; k++) {
                bytes32 leaf = Merkle.leaf(p[k].index, p[k].account, p[k].amount);
                assertTrue(MerkleProof.verify(Merkle.proof(t, k), Merkle.root(t), leaf), "leaf verifies");
            }
        }
    }

    /// @dev End to end with the externally produced root and proof for n = 5.
    function test_Escrow_ClaimWithStandardMerkleTreeVector() public {
        bytes32 job = fundNative(1, 15 ether);
        settleAs(creator, job, 0x5a9f5d858930641cfcacc15256b77b75941603e11ebeb547c89c016efe81806c, 15 ether);
        bytes32[] memory proof = new bytes32[](2);
        proof[0] = 0x9d0a552cff865ad6cab1c8b4e6b61126e1ad568ee0df30d93613cde79451608b;
        proof[1] = 0x022ecfd26067553e7e4951ed42e12a5c8e5370f6050e28dde4ebbcafa081652c;
        escrow.claim(job, 4, address(uint160(0x1004)), 5 ether, proof);
        assertEq(address(uint160(0x1004)).balance, 5 ether, "paid");
    }
}
