//! The contributor's side of federated privacy: the limits a contributor
//! sets on its own data, whatever a job asks, and the ledger of what its
//! data has spent, both kept by its worker.
//!
//! In a federated job each contributor clips its update to the job's norm
//! `C` and adds Gaussian noise of standard deviation `σ·C` before the update
//! leaves, and the coordinator sees each update alone. Replacing one of the
//! contributor's records (or all of them) can move the clipped update
//! anywhere in a ball of radius `C`, so by up to `2C`: the sensitivity is
//! `2C`, and each round the contributor takes part in is a Gaussian
//! mechanism with noise multiplier `σ/2`. Rounds and jobs compose; the
//! worker computes ε itself from what each lease asks, never from the
//! coordinator's figure.
//!
//! Besides the ε limits, a lease must clear floors that hold whatever
//! limits a contributor sets (see [`ContributorLimits`]): the ε guarantee is
//! about one record among a contributor's data, and these keep one record
//! from being the whole of an update.

use serde::{Deserialize, Serialize};

use crate::{PrivacyError, RdpAccountant};

/// Default most ε one job may spend of a contributor's data, all its rounds
/// together, at [`DEFAULT_DELTA`].
pub const DEFAULT_JOB_EPSILON: f64 = 10.0;
/// Default most ε all jobs together may spend of a contributor's data.
pub const DEFAULT_TOTAL_EPSILON: f64 = 30.0;
/// Default δ of both: below one over the records a contributor holds.
pub const DEFAULT_DELTA: f64 = 1e-5;
/// Default least noise multiplier σ (noise standard deviation over clip
/// norm). Below 0.5 one round alone costs ε > 25 at δ = 1e-5: the noise is
/// under a quarter of what one record can move the update by, so a record
/// stands out of a single update.
pub const DEFAULT_MIN_NOISE_MULTIPLIER: f64 = 0.5;
/// Default least mini-batch. With batch 1 and one step, an update is one
/// record's gradient, and a first layer's weights over its bias give the
/// record back exactly; with 16, every step mixes at least 16 records.
pub const DEFAULT_MIN_BATCH_SIZE: u32 = 16;
/// Default least records one update trains on (two batches' worth): fewer,
/// and each record is a large share of what leaves.
pub const DEFAULT_MIN_RECORDS: u64 = 32;

/// What a contributor accepts for its data in federated jobs. Its worker
/// refuses any lease beyond them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContributorLimits {
    /// The most ε one job may spend, all its rounds together, at `delta`.
    pub job_epsilon: f64,
    /// The most ε all jobs together may spend, at `delta`.
    pub total_epsilon: f64,
    /// δ of both limits.
    pub delta: f64,
    /// Least noise multiplier σ a lease may ask.
    pub min_noise_multiplier: f64,
    /// Least mini-batch a lease may ask.
    pub min_batch_size: u32,
    /// Least records one update may train on.
    pub min_records: u64,
}

impl Default for ContributorLimits {
    fn default() -> Self {
        ContributorLimits {
            job_epsilon: DEFAULT_JOB_EPSILON,
            total_epsilon: DEFAULT_TOTAL_EPSILON,
            delta: DEFAULT_DELTA,
            min_noise_multiplier: DEFAULT_MIN_NOISE_MULTIPLIER,
            min_batch_size: DEFAULT_MIN_BATCH_SIZE,
            min_records: DEFAULT_MIN_RECORDS,
        }
    }
}

impl ContributorLimits {
    /// Checks every limit; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.job_epsilon) {
            return Err(format!(
                "job_epsilon must be a positive number, not {}",
                self.job_epsilon
            ));
        }
        if !positive(self.total_epsilon) {
            return Err(format!(
                "total_epsilon must be a positive number, not {}",
                self.total_epsilon
            ));
        }
        if !(positive(self.delta) && self.delta < 1.0) {
            return Err(format!("delta must be in (0, 1), not {}", self.delta));
        }
        if !positive(self.min_noise_multiplier) {
            return Err(format!(
                "min_noise_multiplier must be a positive number, not {}",
                self.min_noise_multiplier
            ));
        }
        if self.min_batch_size == 0 || self.min_records == 0 {
            return Err("min_batch_size and min_records must be at least 1".into());
        }
        Ok(())
    }
}

/// What one federated lease asks of the contributor's data.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    /// The coordinator (network) the job runs on.
    pub network: String,
    /// The job.
    pub job: u64,
    /// σ: the noise's standard deviation over the clip norm.
    pub noise_multiplier: f64,
    /// The job's rounds: how often it may ask.
    pub rounds: u32,
    /// Its mini-batch.
    pub batch_size: u32,
    /// Distinct records one update trains on.
    pub records: u64,
}

/// Rounds of one job released at one noise multiplier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// The coordinator (network) of the job.
    pub network: String,
    /// The job.
    pub job: u64,
    /// σ of those rounds.
    pub noise_multiplier: f64,
    /// Updates released.
    pub rounds: u32,
}

/// Everything a contributor's data has released, job by job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// One entry per job and noise multiplier.
    pub spends: Vec<Spend>,
}

/// What admitting a lease costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// ε of the job over all its rounds (those spent and those to come at
    /// this lease's noise).
    pub job_epsilon: f64,
    /// ε of all jobs once this lease's update is out.
    pub total_epsilon: f64,
}

/// The noise multiplier of one release against the sensitivity `2C`.
fn per_release(noise_multiplier: f64) -> f64 {
    noise_multiplier / 2.0
}

/// ε of `rounds` updates at noise multiplier `noise_multiplier` (σ, against
/// the clip norm), at `delta`: what a job's rounds cost a contributor.
pub fn job_epsilon(noise_multiplier: f64, rounds: u32, delta: f64) -> Result<f64, PrivacyError> {
    crate::epsilon_for(1.0, per_release(noise_multiplier), u64::from(rounds), delta)
}

impl Ledger {
    fn compose<'a>(spends: impl Iterator<Item = &'a Spend>) -> Result<RdpAccountant, PrivacyError> {
        let mut accountant = RdpAccountant::new();
        for s in spends {
            accountant.compose_poisson_gaussian(
                1.0,
                per_release(s.noise_multiplier),
                u64::from(s.rounds),
            )?;
        }
        Ok(accountant)
    }

    fn of_job<'a>(&'a self, network: &'a str, job: u64) -> impl Iterator<Item = &'a Spend> {
        self.spends
            .iter()
            .filter(move |s| s.network == network && s.job == job)
    }

    /// ε spent by every job together, at `delta`.
    pub fn total_epsilon(&self, delta: f64) -> Result<f64, PrivacyError> {
        if self.spends.is_empty() {
            return Ok(0.0);
        }
        Ok(Self::compose(self.spends.iter())?.epsilon(delta)?.epsilon)
    }

    /// ε spent by one job, at `delta`.
    pub fn job_epsilon_spent(
        &self,
        network: &str,
        job: u64,
        delta: f64,
    ) -> Result<f64, PrivacyError> {
        if self.of_job(network, job).next().is_none() {
            return Ok(0.0);
        }
        Ok(Self::compose(self.of_job(network, job))?
            .epsilon(delta)?
            .epsilon)
    }

    /// Whether the contributor's data may train `ask`, under `limits`: the
    /// floors, then the job's ε over all its rounds, then the total once
    /// this update is out. The refusal says which limit, in words.
    pub fn admit(&self, limits: &ContributorLimits, ask: &Ask) -> Result<Cost, String> {
        limits.validate()?;
        let sigma = ask.noise_multiplier;
        if !(sigma.is_finite() && sigma >= limits.min_noise_multiplier) {
            return Err(format!(
                "the job asks noise multiplier {sigma}, under this contributor's floor of {} \
                 (min_noise_multiplier)",
                limits.min_noise_multiplier
            ));
        }
        if ask.batch_size < limits.min_batch_size {
            return Err(format!(
                "the job asks batches of {}, under this contributor's floor of {} \
                 (min_batch_size)",
                ask.batch_size, limits.min_batch_size
            ));
        }
        if ask.records < limits.min_records {
            return Err(format!(
                "an update would train on {} records, under this contributor's floor of {} \
                 (min_records)",
                ask.records, limits.min_records
            ));
        }
        if ask.rounds == 0 {
            return Err("the lease does not say how many rounds its job has".into());
        }
        let spent_rounds: u32 = self.of_job(&ask.network, ask.job).map(|s| s.rounds).sum();
        let to_come = Spend {
            network: ask.network.clone(),
            job: ask.job,
            noise_multiplier: sigma,
            rounds: ask.rounds.saturating_sub(spent_rounds).max(1),
        };
        let job = Self::compose(self.of_job(&ask.network, ask.job).chain([&to_come]))
            .and_then(|a| a.epsilon(limits.delta))
            .map_err(|e| e.to_string())?
            .epsilon;
        if job > limits.job_epsilon {
            return Err(format!(
                "the job's {} rounds at noise multiplier {sigma} would spend ε = {job:.2} of \
                 this contributor's data, over its limit of {} a job (job_epsilon, δ = {})",
                ask.rounds, limits.job_epsilon, limits.delta
            ));
        }
        let this_round = Spend {
            rounds: 1,
            ..to_come
        };
        let total = Self::compose(self.spends.iter().chain([&this_round]))
            .and_then(|a| a.epsilon(limits.delta))
            .map_err(|e| e.to_string())?
            .epsilon;
        if total > limits.total_epsilon {
            return Err(format!(
                "this update would bring the ε spent of this contributor's data to {total:.2}, \
                 over its total of {} (total_epsilon, δ = {})",
                limits.total_epsilon, limits.delta
            ));
        }
        Ok(Cost {
            job_epsilon: job,
            total_epsilon: total,
        })
    }

    /// Records one update released for `ask`.
    pub fn spend(&mut self, ask: &Ask) {
        match self.spends.iter_mut().find(|s| {
            s.network == ask.network
                && s.job == ask.job
                && s.noise_multiplier == ask.noise_multiplier
        }) {
            Some(s) => s.rounds = s.rounds.saturating_add(1),
            None => self.spends.push(Spend {
                network: ask.network.clone(),
                job: ask.job,
                noise_multiplier: ask.noise_multiplier,
                rounds: 1,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(sigma: f64, rounds: u32) -> Ask {
        Ask {
            network: "http://coordinator".into(),
            job: 7,
            noise_multiplier: sigma,
            rounds,
            batch_size: 32,
            records: 100,
        }
    }

    #[test]
    fn the_reconstruction_attack_is_refused_by_the_floors() {
        let ledger = Ledger::default();
        let limits = ContributorLimits::default();
        // Almost no noise, batch 1, one record an update.
        let mut attack = ask(1e-12, 20);
        let e = ledger.admit(&limits, &attack).unwrap_err();
        assert!(e.contains("min_noise_multiplier"), "{e}");
        attack.noise_multiplier = 8.0;
        attack.batch_size = 1;
        let e = ledger.admit(&limits, &attack).unwrap_err();
        assert!(e.contains("min_batch_size"), "{e}");
        attack.batch_size = 16;
        attack.records = 1;
        let e = ledger.admit(&limits, &attack).unwrap_err();
        assert!(e.contains("min_records"), "{e}");
        // Even a contributor who lifts its ε limits keeps the floors.
        let loose = ContributorLimits {
            job_epsilon: 1e9,
            total_epsilon: 1e9,
            ..limits
        };
        assert!(ledger.admit(&loose, &ask(1e-12, 20)).is_err());
    }

    #[test]
    fn a_job_is_priced_at_sensitivity_two_c_over_all_its_rounds() {
        let ledger = Ledger::default();
        let limits = ContributorLimits::default();
        // σ = 4: each release is a Gaussian of multiplier 2 against 2C.
        let cost = ledger.admit(&limits, &ask(4.0, 10)).unwrap();
        let expected = crate::epsilon_for(1.0, 2.0, 10, 1e-5).unwrap();
        assert!((cost.job_epsilon - expected).abs() < 1e-9, "{cost:?}");
        assert!(
            cost.job_epsilon > 7.0 && cost.job_epsilon < 10.0,
            "{cost:?}"
        );
        // σ = 3 for 10 rounds is ε ≈ 11.4: over the default 10.
        let e = ledger.admit(&limits, &ask(3.0, 10)).unwrap_err();
        assert!(e.contains("job_epsilon"), "{e}");
    }

    #[test]
    fn the_total_stops_a_contributor_across_jobs() {
        let limits = ContributorLimits::default();
        let mut ledger = Ledger::default();
        let mut spent = 0;
        for job in 0.. {
            let a = Ask {
                job,
                ..ask(4.0, 10)
            };
            match ledger.admit(&limits, &a) {
                Ok(cost) => {
                    assert!(cost.total_epsilon <= limits.total_epsilon);
                    ledger.spend(&a);
                    spent += 1;
                }
                Err(e) => {
                    assert!(e.contains("total_epsilon"), "{e}");
                    break;
                }
            }
        }
        // Each job's single round is cheap, but they add up.
        assert!(spent > 3, "{spent}");
        let total = ledger.total_epsilon(limits.delta).unwrap();
        assert!(total <= limits.total_epsilon, "{total}");
    }

    #[test]
    fn a_job_that_lowers_its_noise_midway_is_priced_on_what_it_spent() {
        let limits = ContributorLimits::default();
        let mut ledger = Ledger::default();
        for _ in 0..5 {
            let a = ask(4.0, 10);
            ledger.admit(&limits, &a).unwrap();
            ledger.spend(&a);
        }
        // The other 5 rounds at σ = 2 would take the job over its limit.
        assert!(ledger.admit(&limits, &ask(2.0, 10)).is_err());
        let spent = ledger
            .job_epsilon_spent("http://coordinator", 7, 1e-5)
            .unwrap();
        assert!(spent > 0.0 && spent < ledger.admit(&limits, &ask(4.0, 10)).unwrap().job_epsilon);
        assert_eq!(ledger.spends.len(), 1);
        assert_eq!(ledger.spends[0].rounds, 5);
    }

    #[test]
    fn limits_read_from_a_partial_file_keep_their_defaults() {
        let limits: ContributorLimits = serde_json::from_str(r#"{"job_epsilon": 4}"#).unwrap();
        assert_eq!(limits.job_epsilon, 4.0);
        assert_eq!(limits.min_batch_size, DEFAULT_MIN_BATCH_SIZE);
        assert!(
            ContributorLimits {
                delta: 1.0,
                ..limits.clone()
            }
            .validate()
            .is_err()
        );
    }
}
