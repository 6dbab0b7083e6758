//! Paid jobs on chain: a paid job waits in `funding` until the escrow's
//! `Funded` event for it is confirmed, with a deadline that leaves time for
//! its rounds; once it completes, the coordinator splits the deposit by the
//! payout rule, builds the payout tree and signs the settlement. The
//! creator's wallet may send it at once; once the escrow's grace has
//! passed, the coordinator sends it itself (anyone may), so contributors
//! are paid whatever the creator does. Settlements, claims and refunds seen
//! on chain update what the API shows; a paid job's weights are released
//! only once its settlement is seen.
//!
//! The chain is read by polling (`eth_getLogs` over confirmed blocks), from
//! a cursor kept in the database: a node that goes away only delays the
//! next read, and blocks shallower than the confirmation depth are never
//! read, so a reorganisation within it changes nothing here. A deeper one
//! is noticed (the cursor's block hash changed) and the range is read again;
//! what it had opened stays open (the deposit may come back; the job's
//! creator is the one who can tell).

use oblivion_protocol::JobId;
use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use oblivion_chain::escrow::{self, Claimed, Funded, Refunded, Settled};
use oblivion_chain::settlement::{self, Settlement};
use oblivion_chain::{PayoutTree, calls, shares};
use oblivion_protocol::api::{ChainInfo, PaymentState, PayoutView, RewardView, SettlementView};
use oblivion_protocol::profile::ChainEvent;

use super::chain_link::{ChainLink, chain_err, hex32, log_place};
use super::dispatch::Dispatch;
use super::market::Market;
use super::rounds::Rounds;
use super::shared::{JobsVersion, Parts, job_row, work_by_account};
use crate::config::Config;
use crate::error::AppError;
use oblivion_store::{Artifacts, Db, Deposit, now};

/// Most blocks read in one `eth_getLogs` (public nodes cap the range).
const MAX_LOG_RANGE: u64 = 2_000;
/// Blocks read again after a reorganisation deeper than the confirmations.
const REORG_REWIND: u64 = 64;
/// Seconds between two attempts to send the same settlement.
const RESEND_SECS: f64 = 60.0;

/// Paid jobs: deposits seen on chain start them, completed ones are
/// settled, and what the chain says of them is what the API shows.
pub struct Payments {
    config: Arc<Config>,
    db: Db,
    artifacts: Artifacts,
    /// The chain paid jobs settle on, if any.
    chain: Option<Arc<ChainLink>>,
    rounds: Arc<Rounds>,
    dispatch: Arc<Dispatch>,
    jobs_version: Arc<JobsVersion>,
    /// The model market, whose events the same watcher reads.
    market: Arc<Market>,
}

impl Payments {
    /// The payments service.
    pub(super) fn new(
        parts: &Parts,
        rounds: Arc<Rounds>,
        dispatch: Arc<Dispatch>,
        market: Arc<Market>,
    ) -> Payments {
        let parts = parts.clone();
        Payments {
            config: parts.config,
            db: parts.db,
            artifacts: parts.artifacts,
            chain: parts.chain,
            rounds,
            dispatch,
            jobs_version: parts.jobs_version,
            market,
        }
    }

    /// `GET /api/chain`.
    pub fn chain_info(&self) -> Result<ChainInfo, AppError> {
        self.chain
            .as_ref()
            .map(|c| c.info())
            .ok_or_else(|| AppError::not_found("this coordinator settles on no chain"))
    }

    /// Reads the chain and settles completed jobs, every poll interval,
    /// for as long as the coordinator runs. Failures (a node gone away)
    /// are logged and retried at the next poll.
    pub(super) async fn watch_chain(self: Arc<Self>, link: Arc<ChainLink>) {
        let mut checked_chain = false;
        loop {
            if !checked_chain {
                match link.provider.get_chain_id().await {
                    Ok(id) if id == link.config.chain_id => {
                        match escrow::at(link.escrow, &link.provider)
                            .settleGrace()
                            .call()
                            .await
                        {
                            Ok(grace) => {
                                let _ = link.grace.set(grace);
                                checked_chain = true;
                            }
                            Err(e) => tracing::warn!(
                                "reading the escrow's settlement grace at {:#x}: {}",
                                link.escrow,
                                chain_err(e)
                            ),
                        }
                    }
                    Ok(id) => {
                        tracing::error!(
                            "the node at {} serves chain {id}, not chain_id {}; paid jobs stay closed",
                            link.config.rpc_url,
                            link.config.chain_id
                        );
                        return;
                    }
                    Err(e) => tracing::warn!("{}", chain_err(e)),
                }
            }
            if checked_chain {
                if let Err(e) = self.read_chain(&link).await {
                    tracing::warn!("{e}");
                }
                if let Err(e) = self.sign_settlements(&link).await {
                    tracing::warn!("{e}");
                }
                if let Err(e) = self.send_settlements(&link).await {
                    tracing::warn!("{e}");
                }
            }
            tokio::time::sleep(link.config.poll).await;
        }
    }

    /// Reads the escrow's events from the cursor up to the confirmed head.
    async fn read_chain(self: &Arc<Self>, link: &ChainLink) -> Result<(), String> {
        let chain = link.config.chain_id;
        let head = link.provider.get_block_number().await.map_err(chain_err)?;
        let safe = head.saturating_sub(link.config.confirmations);
        let cursor = self.db.chain_cursor(chain).await.map_err(chain_err)?;
        let from = match cursor {
            // A new coordinator reads from the current confirmed head on:
            // its jobs do not exist before it.
            None => safe.saturating_sub(MAX_LOG_RANGE.min(REORG_REWIND)),
            Some((block, _)) if block > head => {
                tracing::error!(
                    block,
                    head,
                    "the chain is behind what was read (a new chain?); reading again"
                );
                safe.saturating_sub(REORG_REWIND)
            }
            Some((block, hash)) => {
                if self.block_hash(link, block).await? != hash {
                    tracing::error!(
                        block,
                        "the chain reorganised deeper than the confirmation depth; reading again"
                    );
                    block.saturating_sub(REORG_REWIND)
                } else {
                    block + 1
                }
            }
        };
        if from > safe {
            return Ok(());
        }
        let to = safe.min(from + MAX_LOG_RANGE - 1);
        let filter = Filter::new()
            .address(link.escrow)
            .from_block(from)
            .to_block(to);
        let logs = link.provider.get_logs(&filter).await.map_err(chain_err)?;
        for log in &logs {
            self.apply_log(link, log).await?;
        }
        let hash = self.block_hash(link, to).await?;
        self.db
            .set_chain_cursor(chain, to, &hash)
            .await
            .map_err(chain_err)
    }

    async fn block_hash(&self, link: &ChainLink, block: u64) -> Result<String, String> {
        let b = link
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(block))
            .await
            .map_err(chain_err)?
            .ok_or_else(|| chain_err(format!("block {block} is unknown")))?;
        Ok(hex32(b.header.hash))
    }

    /// Applies one escrow event.
    async fn apply_log(self: &Arc<Self>, link: &ChainLink, log: &Log) -> Result<(), String> {
        let Some(topic) = log.topic0() else {
            return Ok(());
        };
        if *topic == Funded::SIGNATURE_HASH {
            let event = log.log_decode::<Funded>().map_err(chain_err)?.inner.data;
            self.on_funded(link, log, event).await
        } else if *topic == Settled::SIGNATURE_HASH {
            let event = log.log_decode::<Settled>().map_err(chain_err)?.inner.data;
            self.db
                .set_payment_state(
                    &hex32(event.job),
                    PaymentState::Funded,
                    PaymentState::Settled,
                )
                .await
                .map_err(chain_err)?;
            self.db
                .mark_settled_by(&hex32(event.job), &log_place(log))
                .await
                .map_err(chain_err)?;
            self.jobs_version.bump();
            Ok(())
        } else if *topic == Claimed::SIGNATURE_HASH {
            let event = log.log_decode::<Claimed>().map_err(chain_err)?.inner.data;
            let index = u64::try_from(event.index).unwrap_or(u64::MAX);
            self.db
                .mark_claimed(&hex32(event.job), index, &log_place(log))
                .await
                .map_err(chain_err)
        } else if *topic == Refunded::SIGNATURE_HASH {
            let event = log.log_decode::<Refunded>().map_err(chain_err)?.inner.data;
            self.db
                .set_payment_state(
                    &hex32(event.job),
                    PaymentState::Funded,
                    PaymentState::Refunded,
                )
                .await
                .map_err(chain_err)?;
            Ok(())
        } else {
            self.market.apply_log(log).await
        }
    }

    /// A deposit: opens its job when it is for this coordinator, names the
    /// job's spec, is in the native currency and covers the reward.
    async fn on_funded(
        self: &Arc<Self>,
        link: &ChainLink,
        log: &Log,
        e: Funded,
    ) -> Result<(), String> {
        if e.signer != link.key.address_bytes() {
            return Ok(()); // another coordinator's job
        }
        let key = hex32(e.job);
        let Some(payment) = self.db.payment_by_key(&key).await.map_err(chain_err)? else {
            tracing::warn!(key, "a deposit names this signer but no job of ours");
            return Ok(());
        };
        let job = payment.job_id;
        let asked = calls::u256(&payment.view.amount);
        let refusal = if hex32(e.specHash) != payment.view.spec_hash {
            Some("it names another spec".to_string())
        } else if e.token != Address::ZERO {
            Some("it is not in the native currency".into())
        } else if e.amount < asked {
            Some(format!("it is {} wei, the job asks {asked}", e.amount))
        } else if (e.deadline as f64) <= now() {
            Some("deadline: it has passed".into())
        } else {
            self.deadline_too_near(link, job, e.deadline).await?
        };
        if let Some(why) = refusal {
            tracing::warn!(
                %job,
                "deposit refused: {why}; the creator may refund it once the refund opens"
            );
            self.db.refuse_deposit(job, &why).await.map_err(chain_err)?;
            self.jobs_version.bump();
            return Ok(());
        }
        let deposit = Deposit {
            amount: calls::wei(e.amount),
            deadline: e.deadline as i64,
            block: log.block_number.unwrap_or_default(),
            tx: log.transaction_hash.map(hex32).unwrap_or_default(),
        };
        if self.db.fund_job(job, &deposit).await.map_err(chain_err)? {
            tracing::info!(%job, amount = %e.amount, "deposit confirmed; job open");
            self.rounds
                .refresh_job(job)
                .await
                .map_err(|e| chain_err(e.message))?;
            self.jobs_version.bump();
            self.dispatch.request_pump();
        }
        Ok(())
    }

    /// Why a deposit with `deadline` leaves job `job` too little time (its
    /// rounds, a lease's lifetime and the margin), if it does.
    async fn deadline_too_near(
        &self,
        link: &ChainLink,
        job: JobId,
        deadline: u64,
    ) -> Result<Option<String>, String> {
        let row = job_row(&self.db, job)
            .await
            .map_err(|e| chain_err(e.message))?;
        let needed = link
            .config
            .time_needed(row.spec.rounds(), self.config.leases.lease_max_lifetime);
        let left = (deadline as f64 - now()).max(0.0);
        Ok((left < needed.as_secs_f64()).then(|| {
            format!(
                "deadline: it leaves {left:.0} s, and the job's {} rounds need {} s",
                row.spec.rounds(),
                needed.as_secs()
            )
        }))
    }

    /// Signs the settlement of every completed paid job that has none,
    /// issued at the chain's time, which must not be past the deadline.
    async fn sign_settlements(&self, link: &ChainLink) -> Result<(), String> {
        let jobs = self.db.unsettled_jobs().await.map_err(chain_err)?;
        if jobs.is_empty() {
            return Ok(());
        }
        let issued_at = link.chain_time().await?;
        for job in jobs {
            let deadline = self
                .db
                .payment(job)
                .await
                .map_err(chain_err)?
                .and_then(|p| p.deadline)
                .unwrap_or(0);
            if issued_at > deadline.max(0) as u64 {
                tracing::error!(
                    %job,
                    deadline,
                    "the job completed after its deadline: no settlement can be issued"
                );
                continue;
            }
            let view = self.settlement_for(link, job, issued_at).await?;
            self.db
                .store_settlement(job, &view, now())
                .await
                .map_err(chain_err)?;
            tracing::info!(
                %job,
                total = %view.total,
                payouts = view.payouts.len(),
                "settlement signed"
            );
            self.jobs_version.bump();
        }
        Ok(())
    }

    /// The payout rule over the job's paid work, its tree and the signed
    /// statement.
    async fn settlement_for(
        &self,
        link: &ChainLink,
        job: JobId,
        issued_at: u64,
    ) -> Result<SettlementView, String> {
        let payment = self
            .db
            .payment(job)
            .await
            .map_err(chain_err)?
            .ok_or_else(|| chain_err(format!("job {job} has no payment")))?;
        let key: B256 = payment.job_key.parse().map_err(chain_err)?;
        let deposit = payment.deposit.as_ref().map_or(U256::ZERO, calls::u256);
        let work = work_by_account(self.db.paid_work(job).await.map_err(chain_err)?);
        let split = shares(deposit, &work);
        let tree = (!split.is_empty())
            .then(|| PayoutTree::from_shares(&split))
            .transpose()
            .map_err(chain_err)?;
        let (root, total) = tree
            .as_ref()
            .map_or((B256::ZERO, U256::ZERO), |t| (t.root(), t.total()));
        let row = job_row(&self.db, job)
            .await
            .map_err(|e| chain_err(e.message))?;
        let model = self
            .artifacts
            .get(row.global_sha)
            .await
            .map_err(chain_err)?
            .ok_or_else(|| chain_err(format!("job {job}'s model is missing")))?;
        let model_hash = keccak256(&model);
        let nonce: U256 = escrow::at(link.escrow, &link.provider)
            .nonces(key)
            .call()
            .await
            .map_err(chain_err)?;
        let statement = Settlement {
            job: key,
            root,
            total,
            modelHash: model_hash,
            nonce,
            issuedAt: issued_at,
        };
        let signature = settlement::sign(&link.key, &statement, link.config.chain_id, link.escrow)
            .map_err(chain_err)?;
        Ok(SettlementView {
            root: hex32(root),
            total: calls::wei(total),
            model_hash: hex32(model_hash),
            nonce: u64::try_from(nonce).unwrap_or(u64::MAX),
            issued_at,
            signature: format!("0x{}", hex::encode(signature)),
            payouts: tree
                .map(|t| {
                    t.payouts()
                        .iter()
                        .map(|p| PayoutView {
                            index: p.index,
                            account: format!("{:#x}", p.account),
                            amount: calls::wei(p.amount),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Sends, from the signer's account, every signed settlement whose
    /// grace has passed on chain and that the chain does not show yet: the
    /// contributors of a finished job are paid whatever its creator does.
    /// A send that fails (no gas, a node away, settled meanwhile) is tried
    /// again a minute later.
    async fn send_settlements(&self, link: &ChainLink) -> Result<(), String> {
        let Some(&grace) = link.grace.get() else {
            return Ok(());
        };
        let unsent = self.db.unsent_settlements().await.map_err(chain_err)?;
        if unsent.is_empty() {
            return Ok(());
        }
        let chain_now = link.chain_time().await?;
        let escrow = escrow::at(link.escrow, &link.provider);
        for (job, key, s) in unsent {
            if chain_now < s.issued_at.saturating_add(grace) {
                continue;
            }
            {
                let mut sent = link.sent.lock().unwrap_or_else(|e| e.into_inner());
                if sent.get(&job).is_some_and(|t| now() - t < RESEND_SECS) {
                    continue;
                }
                sent.insert(job, now());
            }
            let call = (|| {
                Ok::<_, String>(escrow.settle(
                    key.parse().map_err(chain_err)?,
                    s.root.parse().map_err(chain_err)?,
                    calls::u256(&s.total),
                    s.model_hash.parse().map_err(chain_err)?,
                    s.issued_at,
                    s.signature.parse().map_err(chain_err)?,
                ))
            })()?;
            match call.send().await {
                Ok(pending) => match pending.get_receipt().await {
                    Ok(r) if r.status() => {
                        tracing::info!(%job, "settlement sent after the creator's grace")
                    }
                    Ok(_) => tracing::warn!(%job, "sending the settlement reverted"),
                    Err(e) => tracing::warn!(%job, "sending the settlement: {}", chain_err(e)),
                },
                Err(e) => tracing::warn!(%job, "sending the settlement: {}", chain_err(e)),
            }
        }
        Ok(())
    }

    /// `account`'s escrow transactions, newest first.
    pub async fn history(&self, account: &str) -> Result<Vec<ChainEvent>, AppError> {
        self.db.account_history(account).await.map_err(AppError::db)
    }

    /// `GET /api/rewards`: every payout leaf of `account`, with its proof.
    pub async fn rewards(&self, account: &str) -> Result<Vec<RewardView>, AppError> {
        let leaves = self.db.payouts_of(account).await.map_err(AppError::db)?;
        let mut out = Vec::with_capacity(leaves.len());
        for leaf in leaves {
            let settlement = self
                .db
                .settlement(leaf.job_id)
                .await
                .map_err(AppError::db)?
                .ok_or_else(|| AppError::internal("a payout without its settlement"))?;
            let tree = PayoutTree::new(
                settlement
                    .payouts
                    .iter()
                    .filter_map(|p| {
                        Some(oblivion_chain::Payout {
                            index: p.index,
                            account: p.account.parse().ok()?,
                            amount: calls::u256(&p.amount),
                        })
                    })
                    .collect(),
            )
            .map_err(|e| AppError::internal(format!("stored payout tree: {e}")))?;
            let proof = tree
                .proof(leaf.payout.index)
                .ok_or_else(|| AppError::internal("a payout outside its tree"))?;
            out.push(RewardView {
                job_id: leaf.job_id,
                job_name: leaf.job_name,
                job_key: leaf.job_key,
                index: leaf.payout.index,
                account: leaf.payout.account,
                amount: leaf.payout.amount,
                proof: proof.into_iter().map(hex32).collect(),
                settled: leaf.settled,
                claimed: leaf.claimed,
            });
        }
        Ok(out)
    }
}
