// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console} from "./Base.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Merkle} from "./utils/Merkle.sol";

/// @notice Gas of the two calls the coordinator and contributors pay for, with the escrow's
/// storage cooled first so the figures are those of a standalone transaction's execution
/// (they exclude the 21,000 base cost and calldata). Printed with `forge test -vv --match-contract Gas`.
contract GasTest is EscrowTest {
    function measureClaim(uint256 n) internal {
        uint256[] memory amounts = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            amounts[i] = 1 ether + i;
        }
        Merkle.Payout[] memory p = payouts(amounts);
        Merkle.Tree memory t = Merkle.build(p);
        uint256 total = 0;
        for (uint256 i = 0; i < n; i++) {
            total += amounts[i];
        }
        bytes32 job = fundNative(1, total + 1 ether);
        vm.deal(creator, 1 ether); // a creator's wallet holds some balance (it pays for gas)
        bytes32 root = Merkle.root(t);
        bytes memory sig = sign(SIGNER_KEY, escrow, job, root, total, 0, START);

        vm.cool(address(escrow));
        vm.prank(creator);
        uint256 g = gasleft();
        escrow.settle(job, root, total, MODEL, START, sig);
        g -= gasleft();
        console.log(string.concat("settle, returning excess, leaves=", vm.toString(n)), g);

        // Fresh recipient, first claim in its 256-index bitmap word: pays the new-account
        // surcharge of a value transfer and the zero-to-nonzero write of the bitmap word.
        uint256 k = n / 2;
        bytes32[] memory proof = Merkle.proof(t, k);
        vm.cool(address(escrow));
        g = gasleft();
        escrow.claim(job, p[k].index, p[k].account, p[k].amount, proof);
        g -= gasleft();
        console.log(
            string.concat(
                "claim, new account, new bitmap word, proof length ",
                vm.toString(proof.length),
                ", leaves=",
                vm.toString(n)
            ),
            g
        );

        // Recipient that already holds a balance, bitmap word already nonzero: the usual case.
        k = k ^ 1;
        proof = Merkle.proof(t, k);
        vm.deal(p[k].account, 1);
        vm.cool(address(escrow));
        vm.cool(p[k].account);
        g = gasleft();
        escrow.claim(job, p[k].index, p[k].account, p[k].amount, proof);
        g -= gasleft();
        console.log(
            string.concat(
                "claim, existing account, same bitmap word, proof length ",
                vm.toString(proof.length),
                ", leaves=",
                vm.toString(n)
            ),
            g
        );
    }

    function test_Gas_Claim_2Leaves() public {
        measureClaim(2);
    }

    function test_Gas_Claim_128Leaves() public {
        measureClaim(128);
    }

    function test_Gas_Claim_1024Leaves() public {
        measureClaim(1024);
    }
}
