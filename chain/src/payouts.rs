//! The payout rule: how a job's payment is split among its contributors.

use alloy::primitives::{Address, U256, U512};

/// Splits `total` among the accounts in `work`, in proportion to the work
/// credited to each.
///
/// `work` lists `(account, credited samples)`: for each account, the samples
/// of its updates that the coordinator accepted. The rule:
///
/// - An account listed more than once is credited the sum of its entries;
///   accounts credited nothing are dropped.
/// - Each account's exact share is `total × work / all work`. Every account
///   first gets that share rounded down; the few units (wei, or the token's
///   smallest unit) left over, fewer than the number of accounts, go one each
///   to the accounts with the largest fractional parts (the largest remainder
///   method), ties going to the lower address. So the amounts add up to
///   exactly `total`, each is within one unit of its exact share, and the
///   result depends only on the input, not on its order.
/// - Accounts whose amount is zero (a `total` smaller than the number of
///   contributors) are left out: a leaf paying nothing would only cost its
///   claimant gas.
/// - The result is sorted by address. No work at all (or a zero `total`)
///   pays nobody: the result is empty.
///
/// The rule only sees the credited work, so a stricter notion of credit
/// (say, only updates that replicas verified) replaces the input, not the
/// rule. Feed the result to [`crate::PayoutTree::from_shares`] to build the
/// settlement's tree.
pub fn shares(total: U256, work: &[(Address, u64)]) -> Vec<(Address, U256)> {
    // Merge by account; a sum of u64s fits in u128 for any realistic length.
    let mut merged: Vec<(Address, u128)> = work
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|&(a, w)| (a, u128::from(w)))
        .collect();
    merged.sort_by_key(|&(a, _)| a);
    merged.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
    let all: u128 = merged.iter().map(|&(_, w)| w).sum();
    if all == 0 || total.is_zero() {
        return Vec::new();
    }

    // Floor of each exact share, and its remainder (in units of 1/all).
    let all_wide = U512::from(all);
    let mut out: Vec<(Address, U256, u128)> = merged
        .iter()
        .map(|&(account, w)| {
            let exact = U512::from(total) * U512::from(w);
            let floor: U256 = (exact / all_wide).to();
            let rem: u128 = (exact % all_wide).to();
            (account, floor, rem)
        })
        .collect();
    let paid: U256 = out.iter().map(|&(_, floor, _)| floor).sum();
    // Fewer than `out.len()` units are left, so this fits in usize.
    let left: usize = (total - paid).to();

    // The largest remainders get one more unit each; ties to the lower address.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&i, &j| out[j].2.cmp(&out[i].2).then(out[i].0.cmp(&out[j].0)));
    for &i in &order[..left] {
        out[i].1 += U256::from(1);
    }

    out.into_iter()
        .filter(|&(_, amount, _)| !amount.is_zero())
        .map(|(account, amount, _)| (account, amount))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn u(n: u64) -> U256 {
        U256::from(n)
    }

    #[test]
    fn splits_in_proportion() {
        let s = shares(u(100), &[(addr(2), 3), (addr(1), 1)]);
        assert_eq!(s, vec![(addr(1), u(25)), (addr(2), u(75))]);
    }

    #[test]
    fn largest_remainders_get_the_leftover_ties_to_the_lower_address() {
        // 10 / 3 = 3.33 each: one unit left, all remainders equal.
        let s = shares(u(10), &[(addr(3), 1), (addr(1), 1), (addr(2), 1)]);
        assert_eq!(s, vec![(addr(1), u(4)), (addr(2), u(3)), (addr(3), u(3))]);
        // 10 × (1, 2) / 3 = 3.33, 6.67: the larger remainder wins.
        let s = shares(u(10), &[(addr(1), 1), (addr(2), 2)]);
        assert_eq!(s, vec![(addr(1), u(3)), (addr(2), u(7))]);
    }

    #[test]
    fn merges_repeats_drops_idle_and_ignores_order() {
        let a = shares(
            u(90),
            &[(addr(1), 1), (addr(2), 0), (addr(3), 1), (addr(1), 1)],
        );
        assert_eq!(a, vec![(addr(1), u(60)), (addr(3), u(30))]);
        let b = shares(u(90), &[(addr(3), 1), (addr(1), 2)]);
        assert_eq!(a, b);
    }

    #[test]
    fn nothing_to_pay_pays_nobody() {
        assert!(shares(u(100), &[]).is_empty());
        assert!(shares(u(100), &[(addr(1), 0)]).is_empty());
        assert!(shares(U256::ZERO, &[(addr(1), 5)]).is_empty());
        // Less to pay than contributors: the zero amounts are left out.
        let s = shares(u(1), &[(addr(1), 1), (addr(2), 1)]);
        assert_eq!(s, vec![(addr(1), u(1))]);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let s = shares(
            U256::MAX,
            &[(addr(1), u64::MAX), (addr(2), u64::MAX), (addr(3), 1)],
        );
        assert_eq!(s.iter().map(|&(_, v)| v).sum::<U256>(), U256::MAX);
        // Equal work, equal remainders: the lower address gets the odd unit.
        assert_eq!(s[0].1, s[1].1 + U256::from(1));
    }

    /// splitmix64: a tiny deterministic generator for the property test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_splits_add_up_and_stay_within_one_unit() {
        let mut rng = Rng(0x0b11_7100);
        for round in 0..2000 {
            let total = match round % 4 {
                0 => U256::from(rng.below(1000)),
                1 => U256::from(rng.next()),
                2 => U256::from(rng.next()) * U256::from(rng.next()) * U256::from(rng.next()),
                _ => U256::MAX - U256::from(rng.next()),
            };
            let len = rng.below(40) as usize;
            let work: Vec<(Address, u64)> = (0..len)
                .map(|_| {
                    let w = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(10),
                        2 => rng.below(100_000),
                        _ => rng.next() >> rng.below(64),
                    };
                    (addr(rng.below(16) as u8), w)
                })
                .collect();
            let s = shares(total, &work);

            // Expected credit per account.
            let mut credit = std::collections::BTreeMap::<Address, u128>::new();
            for &(a, w) in &work {
                *credit.entry(a).or_default() += u128::from(w);
            }
            credit.retain(|_, w| *w > 0);
            let all: u128 = credit.values().sum();

            if all == 0 || total.is_zero() {
                assert!(s.is_empty(), "round {round}");
                continue;
            }
            let sum: U256 = s.iter().map(|&(_, v)| v).sum();
            assert_eq!(sum, total, "round {round}: sum");
            assert!(
                s.windows(2).all(|p| p[0].0 < p[1].0),
                "round {round}: sorted"
            );
            for (&a, &w) in &credit {
                let got = s
                    .iter()
                    .find(|(b, _)| *b == a)
                    .map_or(U256::ZERO, |&(_, v)| v);
                // |got × all − total × w| < all
                let got = U512::from(got) * U512::from(all);
                let exact = U512::from(total) * U512::from(w);
                let diff = if got > exact {
                    got - exact
                } else {
                    exact - got
                };
                assert!(
                    diff < U512::from(all),
                    "round {round}: {a} off by a unit or more"
                );
            }
            // Same input in another order, same result.
            let mut reversed = work.clone();
            reversed.reverse();
            assert_eq!(shares(total, &reversed), s, "round {round}: order");
        }
    }
}
