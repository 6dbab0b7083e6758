//! Which shards of a round are replicated: each independently, with the
//! job's probability, drawn by the coordinator from a secret source so
//! that no worker can tell whether its shard will be checked.

/// The shards (of `shards`) to replicate, in order: each picked when
/// `random()` (uniform in [0, 1)) falls under `fraction`.
pub fn pick(shards: usize, fraction: f64, random: &mut dyn FnMut() -> f64) -> Vec<u32> {
    if fraction <= 0.0 {
        return Vec::new();
    }
    (0..shards as u32).filter(|_| random() < fraction).collect()
}

/// [`pick`] with the thread's cryptographically secure generator.
pub fn pick_secretly(shards: usize, fraction: f64) -> Vec<u32> {
    use rand::Rng;
    let mut rng = rand::rng();
    pick(shards, fraction, &mut || rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_replicated_at_zero_and_everything_at_one() {
        assert!(pick(10, 0.0, &mut || 0.0).is_empty());
        assert_eq!(pick(3, 1.0, &mut || 0.999), vec![0, 1, 2]);
    }

    #[test]
    fn about_the_fraction_is_replicated() {
        let picked = pick_secretly(10_000, 0.1).len();
        assert!((800..1_200).contains(&picked), "{picked}");
    }
}
