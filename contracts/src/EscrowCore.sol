// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title EscrowCore
/// @notice What the escrow's jobs and its model market share: the EIP-712 domain, the
/// reentrancy guard, the coordinator's signature check, payments, and the errors of each.
/// @dev The guard is OpenZeppelin's transient-storage ReentrancyGuard (EIP-1153), far cheaper
/// than a storage flag; the contract needs cancun anyway (OpenZeppelin's EIP712 uses mcopy).
abstract contract EscrowCore is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    error ZeroAmount();
    error ZeroSigner();
    error InvalidSignature();
    error InvalidProof();
    error NativeTransferFailed(address to, uint256 amount);

    /// @dev Reverts unless `signature` is `signer`'s over `digest`. tryRecover applies
    /// ECDSA.recover's checks (65-byte signatures, low-s only, so no malleated copy verifies) but
    /// lets every failure surface as one error.
    function _checkSignature(address signer, bytes32 digest, bytes calldata signature) internal pure {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) revert InvalidSignature();
    }

    /// @dev Pays `amount` of `token` (address(0) = native) to `to`. Called only after all state
    /// changes of the calling function. Zero amounts are skipped: some tokens reject them.
    function _pay(address token, address to, uint256 amount) internal {
        if (amount == 0) return;
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert NativeTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
