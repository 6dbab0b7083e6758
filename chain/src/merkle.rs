//! The payout tree: a Merkle tree over a job's payouts whose root the
//! coordinator signs in the settlement, and whose proofs contributors submit
//! to the escrow's `claim`.
//!
//! The tree is exactly OpenZeppelin's `StandardMerkleTree` for the types
//! `["uint256", "address", "uint256"]` (`index, account, amount`): the same
//! leaves, the same layout, so the same root and proofs as
//! `@openzeppelin/merkle-tree` produces, and proofs that OpenZeppelin's
//! `MerkleProof` (used by the escrow) accepts.
//!
//! It is written out here (a few dozen lines over `abi_encode_params` and
//! `keccak256`) rather than taken from a Merkle crate because the ones at
//! hand, `alloy-merkle-tree` among them, hash raw bytes into leaves and keep
//! leaves in insertion order; neither matches the double-hashed ABI-encoded
//! leaves and the sorted layout of `StandardMerkleTree`.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// One leaf: leaf `index` pays `amount` (wei, or the token's smallest unit)
/// to `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    /// Position of the payout in the job's list; the escrow marks it claimed.
    pub index: u64,
    /// Who is paid.
    pub account: Address,
    /// How much.
    pub amount: U256,
}

impl Payout {
    /// The leaf hash, as the escrow computes it:
    /// `keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))))`.
    pub fn leaf(&self) -> B256 {
        let encoded = (U256::from(self.index), self.account, self.amount).abi_encode_params();
        keccak256(keccak256(encoded))
    }
}

/// Why a list of payouts cannot make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A tree needs at least one leaf (and a job paying nobody is not settled).
    #[error("a payout tree needs at least one payout")]
    Empty,
    /// The payouts must carry the indices `0..n`, in order.
    #[error("payout at position {position} has index {index}, expected {position}")]
    Index {
        /// Position in the list.
        position: usize,
        /// The index found there.
        index: u64,
    },
}

/// A job's payout tree, in `StandardMerkleTree`'s layout: the `n` leaves
/// sorted by hash and stored in reverse at the end of a flat array of
/// `2n - 1` nodes, node `i`'s children at `2i + 1` and `2i + 2`, the root at 0.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    payouts: Vec<Payout>,
    /// The flat array of nodes.
    nodes: Vec<B256>,
    /// For each payout (by index), the position of its leaf in `nodes`.
    positions: Vec<usize>,
}

impl PayoutTree {
    /// Builds the tree of `payouts`, which must carry the indices `0..n` in
    /// order.
    pub fn new(payouts: Vec<Payout>) -> Result<PayoutTree, TreeError> {
        if payouts.is_empty() {
            return Err(TreeError::Empty);
        }
        if let Some((position, p)) = payouts
            .iter()
            .enumerate()
            .find(|(i, p)| p.index != *i as u64)
        {
            return Err(TreeError::Index {
                position,
                index: p.index,
            });
        }
        let n = payouts.len();
        // Leaves sorted by hash (ties cannot matter: equal hashes are equal
        // leaves), then laid out from the end of the array backwards.
        let mut leaves: Vec<(B256, usize)> = payouts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.leaf(), i))
            .collect();
        leaves.sort();
        let mut nodes = vec![B256::ZERO; 2 * n - 1];
        let mut positions = vec![0; n];
        for (k, (leaf, i)) in leaves.into_iter().enumerate() {
            let at = nodes.len() - 1 - k;
            nodes[at] = leaf;
            positions[i] = at;
        }
        for i in (0..n - 1).rev() {
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2]);
        }
        Ok(PayoutTree {
            payouts,
            nodes,
            positions,
        })
    }

    /// Builds the tree paying `shares` in order: leaf `i` pays `shares[i]`.
    pub fn from_shares(shares: &[(Address, U256)]) -> Result<PayoutTree, TreeError> {
        PayoutTree::new(
            shares
                .iter()
                .enumerate()
                .map(|(i, &(account, amount))| Payout {
                    index: i as u64,
                    account,
                    amount,
                })
                .collect(),
        )
    }

    /// The root the settlement commits to.
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// The payouts, by index.
    pub fn payouts(&self) -> &[Payout] {
        &self.payouts
    }

    /// The sum of all payouts: the settlement's `total` when every leaf is
    /// to be claimable.
    pub fn total(&self) -> U256 {
        self.payouts.iter().map(|p| p.amount).sum()
    }

    /// The proof of payout `index` (sibling hashes from the leaf up; empty for
    /// a single-leaf tree), or `None` if there is no such payout.
    pub fn proof(&self, index: u64) -> Option<Vec<B256>> {
        let mut at = *self.positions.get(usize::try_from(index).ok()?)?;
        let mut proof = Vec::new();
        while at > 0 {
            let sibling = if at % 2 == 1 { at + 1 } else { at - 1 };
            proof.push(self.nodes[sibling]);
            at = (at - 1) / 2;
        }
        Some(proof)
    }
}

/// Whether `proof` shows `payout` to be a leaf of the tree with `root`, as the
/// escrow's `claim` checks it (OpenZeppelin `MerkleProof.verify`).
pub fn verify(root: B256, payout: &Payout, proof: &[B256]) -> bool {
    proof
        .iter()
        .fold(payout.leaf(), |node, &sibling| hash_pair(node, sibling))
        == root
}

/// `Hashes.commutativeKeccak256`: the hash of the two nodes, smaller first.
fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    const ETHER: u64 = 1_000_000_000_000_000_000;

    /// `contracts/test/Merkle.t.sol`'s vector: `(i, address(0x1000 + i), (i + 1) ether)`.
    fn vector(n: u64) -> Vec<Payout> {
        (0..n)
            .map(|i| Payout {
                index: i,
                account: Address::left_padding_from(&(0x1000 + i).to_be_bytes()),
                amount: U256::from(i + 1) * U256::from(ETHER),
            })
            .collect()
    }

    fn tree(n: u64) -> PayoutTree {
        PayoutTree::new(vector(n)).unwrap()
    }

    /// Roots and proofs produced by `@openzeppelin/merkle-tree`
    /// (`StandardMerkleTree.of(values, ["uint256", "address", "uint256"])`),
    /// as pinned in `contracts/test/Merkle.t.sol`.
    #[test]
    fn matches_standard_merkle_tree() {
        let t1 = tree(1);
        let leaf0 = b256!("71e6ef658774193f574a5fa24557e2befcf72a3b48e26db0e4b5d968e92bc3de");
        assert_eq!(t1.root(), leaf0);
        assert_eq!(t1.root(), vector(1)[0].leaf());
        assert_eq!(t1.proof(0).unwrap(), Vec::<B256>::new());

        let t2 = tree(2);
        assert_eq!(
            t2.root(),
            b256!("6e2d809e3c657e0bd8d5236e9c9461e194e9c6100316e429399f0bb42b87c72b")
        );
        assert_eq!(t2.proof(1).unwrap(), vec![leaf0]);

        let t5 = tree(5);
        assert_eq!(
            t5.root(),
            b256!("5a9f5d858930641cfcacc15256b77b75941603e11ebeb547c89c016efe81806c")
        );
        assert_eq!(
            t5.proof(4).unwrap(),
            vec![
                b256!("9d0a552cff865ad6cab1c8b4e6b61126e1ad568ee0df30d93613cde79451608b"),
                b256!("022ecfd26067553e7e4951ed42e12a5c8e5370f6050e28dde4ebbcafa081652c"),
            ]
        );
    }

    #[test]
    fn every_proof_verifies() {
        for n in [1, 2, 3, 7, 100] {
            let t = tree(n);
            for p in t.payouts() {
                let proof = t.proof(p.index).unwrap();
                assert!(verify(t.root(), p, &proof), "n={n} index={}", p.index);
            }
            assert_eq!(t.proof(n), None);
            assert_eq!(t.total(), U256::from(n * (n + 1) / 2) * U256::from(ETHER));
        }
    }

    #[test]
    fn tampered_leaves_fail() {
        for n in [1, 2, 3, 7, 100] {
            let t = tree(n);
            for p in t.payouts() {
                let proof = t.proof(p.index).unwrap();
                let more = Payout {
                    amount: p.amount + U256::from(1),
                    ..*p
                };
                let other = Payout {
                    account: Address::repeat_byte(0xee),
                    ..*p
                };
                let moved = Payout {
                    index: p.index + 1,
                    ..*p
                };
                for bad in [more, other, moved] {
                    assert!(!verify(t.root(), &bad, &proof), "n={n} {bad:?}");
                }
                if n > 1 {
                    // Someone else's proof, or a truncated one, fails too.
                    let theirs = t.proof((p.index + 1) % n).unwrap();
                    assert!(!verify(t.root(), p, &theirs), "n={n} other proof");
                    assert!(!verify(t.root(), p, &proof[..proof.len() - 1]));
                }
            }
        }
    }

    #[test]
    fn rejects_empty_and_misnumbered_lists() {
        assert_eq!(PayoutTree::new(vec![]).unwrap_err(), TreeError::Empty);
        let mut v = vector(3);
        v.swap(1, 2);
        assert_eq!(
            PayoutTree::new(v).unwrap_err(),
            TreeError::Index {
                position: 1,
                index: 2
            }
        );
        let shares: Vec<_> = vector(3).iter().map(|p| (p.account, p.amount)).collect();
        assert_eq!(
            PayoutTree::from_shares(&shares).unwrap().root(),
            tree(3).root()
        );
    }
}
