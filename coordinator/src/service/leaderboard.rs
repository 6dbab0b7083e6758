//! Leaderboards: contributors ranked by verified work (totals and a recent
//! average), by rewards and by reputation, over the network or one job;
//! models ranked per dataset by accuracy. Read from the database on each
//! request; uses no other service.

use std::collections::BTreeMap;

use oblivion_chain::calls::{u256, wei};
use oblivion_protocol::api::{ContributorStanding, DatasetModels, Leaderboard, ModelView};
use oblivion_protocol::{JobId, Visibility, Wei};

use super::accounts::Viewer;
use super::models::view_of;
use super::shared::Parts;
use crate::error::AppError;
use oblivion_store::{DayOfWork, Db, Payout, Standing, now};

/// Days in which a day's work comes to count half as much (BOINC's).
pub const HALF_LIFE_DAYS: f64 = 7.0;

/// How contributors are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContributorOrder {
    /// Most verified work (samples and rows) first.
    Work,
    /// Highest recent average first.
    Recent,
    /// Most rewards earned first.
    Earned,
    /// Most agreed results first, then fewest disputed.
    Reputation,
}

impl ContributorOrder {
    /// Parses `work`, `recent`, `earned` or `reputation`.
    pub fn parse(s: &str) -> Option<ContributorOrder> {
        match s {
            "work" => Some(ContributorOrder::Work),
            "recent" => Some(ContributorOrder::Recent),
            "earned" => Some(ContributorOrder::Earned),
            "reputation" => Some(ContributorOrder::Reputation),
            _ => None,
        }
    }
}

/// The leaderboards service.
pub struct Leaderboards {
    db: Db,
}

impl Leaderboards {
    /// Leaderboards over the store.
    pub(super) fn new(parts: &Parts) -> Leaderboards {
        Leaderboards {
            db: parts.db.clone(),
        }
    }

    /// The standings of every contributor (of `job` alone, when given, if
    /// `viewer` may read it), in `order`; and each dataset's public models,
    /// most accurate first.
    pub async fn leaderboard(
        &self,
        viewer: &Viewer,
        job: Option<JobId>,
        order: ContributorOrder,
    ) -> Result<Leaderboard, AppError> {
        if let Some(id) = job {
            let row = super::shared::job_row(&self.db, id).await?;
            if !viewer.may_read(&row) {
                return Err(AppError::new(
                    crate::error::Failure::Forbidden,
                    format!("job {id} is private to its owner"),
                ));
            }
        }
        let mut contributors = self.standings(job).await?;
        sort(&mut contributors, order);
        let models = match job {
            Some(_) => Vec::new(),
            None => {
                let readable: Vec<ModelView> = self
                    .db
                    .models()
                    .await
                    .map_err(AppError::db)?
                    .into_iter()
                    // A board is public: private models stay off it.
                    .filter(|m| m.entry.visibility == Visibility::Public)
                    .map(view_of)
                    .collect();
                by_dataset(readable)
            }
        };
        Ok(Leaderboard {
            job,
            contributors,
            models,
        })
    }
}

impl Leaderboards {
    /// `identity`'s standing over the whole network; `None` when it has
    /// none (no verified work or reward, or in quarantine).
    pub async fn standing_of(
        &self,
        identity: &str,
    ) -> Result<Option<ContributorStanding>, AppError> {
        Ok(self
            .standings(None)
            .await?
            .into_iter()
            .find(|s| s.identity == identity))
    }

    /// Every identity's standing, of `job` alone when given, unsorted.
    async fn standings(&self, job: Option<JobId>) -> Result<Vec<ContributorStanding>, AppError> {
        let work = self.db.verified_work(job).await.map_err(AppError::db)?;
        let payouts = self.db.all_payouts(job).await.map_err(AppError::db)?;
        let records = self.db.standings().await.map_err(AppError::db)?;
        let today = (now() / 86_400.0).floor() as i64;
        Ok(rank(&work, &payouts, &records, today))
    }
}

/// Each identity's standing from its verified work by day, the payouts
/// signed and its record, as of day `today`; an identity in quarantine is
/// left out, and its work with it.
pub fn rank(
    work: &[DayOfWork],
    payouts: &[Payout],
    records: &[Standing],
    today: i64,
) -> Vec<ContributorStanding> {
    let quarantined: Vec<&str> = records
        .iter()
        .filter(|r| r.quarantined)
        .map(|r| r.identity.as_str())
        .collect();
    let mut by: BTreeMap<&str, ContributorStanding> = BTreeMap::new();
    let blank = |identity: &str| ContributorStanding {
        identity: identity.to_string(),
        samples: 0,
        rows: 0,
        recent: 0.0,
        earned: Wei::zero(),
        claimed: Wei::zero(),
        agreed: 0,
        disputed: 0,
        refuted: 0,
    };
    let rate = std::f64::consts::LN_2 / HALF_LIFE_DAYS;
    for day in work {
        let s = by
            .entry(day.identity.as_str())
            .or_insert_with(|| blank(&day.identity));
        s.samples += day.samples;
        s.rows += day.rows;
        // A steady R a day sums to R / rate: scaled back to R.
        let age = (today - day.day).max(0) as f64;
        s.recent += (day.samples + day.rows) as f64 * (-rate * age).exp() * rate;
    }
    for p in payouts {
        let s = by
            .entry(p.account.as_str())
            .or_insert_with(|| blank(&p.account));
        s.earned = wei(u256(&s.earned).saturating_add(u256(&p.amount)));
        if p.claimed {
            s.claimed = wei(u256(&s.claimed).saturating_add(u256(&p.amount)));
        }
    }
    for r in records {
        if let Some(s) = by.get_mut(r.identity.as_str()) {
            (s.agreed, s.disputed, s.refuted) = (r.agreed, r.disputed, r.refuted);
        }
    }
    by.into_iter()
        .filter(|(identity, _)| !quarantined.contains(identity))
        .map(|(_, s)| s)
        .collect()
}

/// Orders standings as asked (ties by identity, for a stable page).
pub fn sort(standings: &mut [ContributorStanding], order: ContributorOrder) {
    standings.sort_by(|a, b| {
        let by = match order {
            ContributorOrder::Work => (b.samples + b.rows).cmp(&(a.samples + a.rows)),
            ContributorOrder::Recent => b.recent.total_cmp(&a.recent),
            ContributorOrder::Earned => u256(&b.earned).cmp(&u256(&a.earned)),
            ContributorOrder::Reputation => {
                b.agreed.cmp(&a.agreed).then(a.disputed.cmp(&b.disputed))
            }
        };
        by.then_with(|| a.identity.cmp(&b.identity))
    });
}

/// Models grouped by dataset (datasets by name), each group most accurate
/// first (unmeasured ones last).
fn by_dataset(models: Vec<ModelView>) -> Vec<DatasetModels> {
    let mut groups: BTreeMap<String, Vec<ModelView>> = BTreeMap::new();
    for m in models {
        groups.entry(m.dataset.clone()).or_default().push(m);
    }
    groups
        .into_iter()
        .map(|(dataset, mut models)| {
            models.sort_by(|a, b| {
                b.accuracy
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.accuracy.unwrap_or(f64::NEG_INFINITY))
            });
            DatasetModels { dataset, models }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(identity: &str, day: i64, samples: u64, rows: u64) -> DayOfWork {
        DayOfWork {
            identity: identity.into(),
            day,
            samples,
            rows,
        }
    }

    fn record(identity: &str, agreed: u64, quarantined: bool) -> Standing {
        Standing {
            identity: identity.into(),
            agreed,
            disputed: 0,
            refuted: 0,
            quarantined,
        }
    }

    #[test]
    fn standings_add_up_verified_work_and_leave_quarantined_identities_out() {
        let work = [
            day("0xa", 100, 300, 0),
            day("0xa", 93, 0, 50),
            day("worker:7", 100, 120, 0),
            day("0xq", 100, 10_000, 0),
        ];
        let payouts = [
            Payout {
                account: "0xa".into(),
                amount: Wei::parse("7").unwrap(),
                claimed: true,
            },
            Payout {
                account: "0xa".into(),
                amount: Wei::parse("5").unwrap(),
                claimed: false,
            },
        ];
        let records = [record("0xa", 4, false), record("0xq", 9, true)];
        let mut board = rank(&work, &payouts, &records, 100);
        sort(&mut board, ContributorOrder::Work);
        let ids: Vec<&str> = board.iter().map(|s| s.identity.as_str()).collect();
        assert_eq!(ids, ["0xa", "worker:7"], "the quarantined one is left out");
        let a = &board[0];
        assert_eq!((a.samples, a.rows, a.agreed), (300, 50, 4));
        assert_eq!((a.earned.as_str(), a.claimed.as_str()), ("12", "7"));
        // Today's 300 count fully, a week-old 50 half.
        let rate = std::f64::consts::LN_2 / 7.0;
        assert!(
            (a.recent - (300.0 + 25.0) * rate).abs() < 1e-9,
            "{}",
            a.recent
        );
        sort(&mut board, ContributorOrder::Earned);
        assert_eq!(board[0].identity, "0xa");
    }

    #[test]
    fn a_steady_rate_is_its_own_recent_average() {
        let work: Vec<DayOfWork> = (0..400).map(|d| day("0xa", d, 70, 0)).collect();
        let board = rank(&work, &[], &[], 399);
        // A day's worth sums over the days to 70 (within the daily steps).
        assert!(
            (board[0].recent - 70.0).abs() < 70.0 * 0.06,
            "{}",
            board[0].recent
        );
    }
}
