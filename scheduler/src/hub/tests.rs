use super::*;
use crate::kind::Federated;
use oblivion_protocol::api::WorkerView;
use oblivion_protocol::wire::TrainingData;
use oblivion_protocol::wire::{ClientKind, DeviceInfo, LeaseProgress};

struct Net {
    hub: Hub,
    next_worker: u64,
    next_lease: u64,
}

impl Net {
    fn new() -> Net {
        Net {
            hub: Hub::new(LeasePolicy {
                cap: 2,
                ttl: Duration::from_secs(30),
                max_lifetime: Duration::from_secs(600),
                stall: Duration::from_secs(120),
            }),
            next_worker: 0,
            next_lease: 0,
        }
    }

    /// Plans and grants everything, as the database would accept it.
    fn dispatch(&mut self, now: f64) -> Vec<Lease> {
        let plan = self.hub.plan(now);
        plan.into_iter()
            .filter_map(|g| {
                self.next_lease += 1;
                self.hub.grant(g, LeaseId(self.next_lease), now)
            })
            .collect()
    }

    fn add_worker(&mut self, benchmark: f64) -> WorkerId {
        self.add_worker_as(benchmark, None)
    }

    /// A worker signed in as `account` (its payout address), if any.
    fn add_worker_as(&mut self, benchmark: f64, account: Option<String>) -> WorkerId {
        self.next_worker += 1;
        let id = WorkerId(self.next_worker);
        let mut view = WorkerView::connected(
            format!("w{id}"),
            ClientKind::Native,
            DeviceInfo {
                backend: "cpu".into(),
                name: "test".into(),
                detail: String::new(),
            },
            benchmark,
        );
        view.id = id;
        view.payout_address = account;
        self.hub.add_worker(Worker {
            view,
            token: format!("token{id}"),
            draining: false,
            connected_at: 0.0,
            max_leases: u32::MAX,
            credits: VecDeque::new(),
            quarantine: None,
            declined: HashSet::new(),
            measured: None,
        });
        id
    }

    fn add_job(&mut self, id: u64, shards: usize) {
        let id = JobId(id);
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
            "rounds": 2, "shards_per_round": shards, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01}
        }))
        .unwrap();
        let arch = Architecture::new(spec.training().unwrap().model.clone(), vec![4], 3).unwrap();
        self.hub.jobs.insert(
            id,
            LiveJob::new(
                id,
                spec.clone(),
                crate::kind::kind_of(&spec).unwrap(),
                Arc::new(arch),
                Weights {
                    blob: BlobId::of(b"g"),
                    params: Arc::new(Params::default()),
                },
                (0..shards)
                    .map(|i| (Some(BlobId::of(format!("d{i}").as_bytes())), 10))
                    .collect(),
                &[],
            ),
        );
    }
}

/// The weights of a second round.
fn g2() -> Weights {
    Weights {
        blob: BlobId::of(b"g2"),
        params: Arc::new(Params::default()),
    }
}

fn holders(leases: &[Lease]) -> Vec<WorkerId> {
    leases.iter().map(|l| l.worker).collect()
}

#[test]
fn fewest_leases_first_then_measured_speed_and_cap_respected() {
    let mut n = Net::new();
    let honest = n.add_worker(10.0);
    // Claims to be the fastest: it decides nothing.
    let liar = n.add_worker(1e9);
    n.add_job(1, 6);
    let issued = n.dispatch(0.0);
    // Alternates between workers (the longest connected first on ties),
    // stops at the cap.
    assert_eq!(holders(&issued), vec![honest, liar, honest, liar]);
    assert_eq!(n.hub.jobs[&JobId(1)].status, JobStatus::Running);
    assert!(n.dispatch(0.0).is_empty(), "both workers are at the cap");
    // The liar's shard of 10 samples takes it 5 s, the honest one's 1 s.
    let Completed {
        lease,
        round_done: done,
        ..
    } = n.hub.complete(issued[1].id, 5.0).unwrap();
    assert_eq!((lease.worker, done), (liar, false));
    n.hub.complete(issued[0].id, 1.0).unwrap();
    // Both have room for one: the faster as measured goes first.
    assert_eq!(holders(&n.dispatch(5.0)), vec![honest, liar]);
    // A disputed result forgets the speed: fast at posting what is
    // not work is not fast.
    n.hub.record_result(honest, false, 0);
    assert_eq!(n.hub.workers[&honest].measured, None);
}

#[test]
fn a_paid_job_is_not_leased_near_its_deadline() {
    let mut n = Net::new();
    n.add_worker(1.0);
    n.add_job(1, 4);
    n.hub.jobs.get_mut(&JobId(1)).unwrap().admission.until = Some(100.0);
    assert_eq!(n.dispatch(99.0).len(), 2, "before the cut-off, leased");
    n.add_worker(1.0);
    assert!(
        n.dispatch(100.0).is_empty(),
        "from the cut-off on, no lease whatever the room"
    );
}

#[test]
fn a_plan_changes_nothing_until_granted_and_stale_grants_are_refused() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 1);
    let plan = n.hub.plan(0.0);
    assert_eq!(plan.len(), 1);
    assert_eq!(n.hub.plan(0.0), plan, "planning is pure");
    assert_eq!(n.hub.jobs[&JobId(1)].shards[0].state, ShardState::Pending);
    assert!(n.hub.grant(plan[0], LeaseId(7), 0.0).is_some());
    assert!(
        n.hub.grant(plan[0], LeaseId(8), 0.0).is_none(),
        "shard already leased"
    );
    n.hub.remove_worker(a);
    let b = n.add_worker(1.0);
    let again = n.hub.plan(0.0);
    n.hub.remove_worker(b);
    assert!(
        n.hub.grant(again[0], LeaseId(9), 0.0).is_none(),
        "worker gone"
    );
    n.hub.remove_job(JobId(1));
    assert!(n.hub.grant(plan[0], LeaseId(10), 0.0).is_none(), "job gone");
}

#[test]
fn vanished_worker_loses_its_leases_and_shards_are_reissued() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 2);
    assert_eq!(n.dispatch(0.0).len(), 2);
    let b = n.add_worker(1.0);
    let (_, ended) = n.hub.remove_worker(a);
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|e| e.status == LeaseStatus::Disconnected));
    let again = n.dispatch(1.0);
    assert_eq!(holders(&again), vec![b, b]);
    assert!(
        again
            .iter()
            .all(|l| n.hub.jobs[&JobId(1)].shards[l.shard as usize].attempts == 2)
    );
    assert!(n.hub.update_context("token1", again[0].id).is_err());
}

#[test]
fn federated_slots_go_one_a_round_to_contributors_whose_data_fits() {
    let mut n = Net::new();
    let offer = |shape: Vec<usize>, classes| {
        Some(oblivion_protocol::wire::LocalDataOffer {
            shape,
            classes,
            samples: 50,
            columns: None,
        })
    };
    let none = n.add_worker(1000.0);
    let wrong = n.add_worker(900.0);
    let a = n.add_worker(10.0);
    let b = n.add_worker(5.0);
    let late = n.add_worker(1.0);
    for (w, data) in [
        (wrong, offer(vec![5], 3)),
        (a, offer(vec![4], 3)),
        (b, offer(vec![4], 2)),
        (late, offer(vec![4], 3)),
    ] {
        n.hub.workers.get_mut(&w).unwrap().view.local_data = data;
    }
    n.add_job(1, 2);
    let kind = federated(0.1, 2);
    let local = kind.task(None);
    n.hub.jobs.get_mut(&JobId(1)).unwrap().kind = Arc::new(kind);
    let first = n.dispatch(0.0);
    assert_eq!(
        holders(&first),
        vec![a, b],
        "neither the worker without data nor the one whose data does not fit"
    );
    let task = n.hub.task(&first[0]).unwrap();
    assert_eq!(
        task.training().unwrap().data,
        TrainingData::Local(Box::new(local))
    );
    // a's update refused: its slot goes to another contributor first.
    n.hub.reject(first[0].id).unwrap();
    let again = n.dispatch(0.0);
    assert_eq!(holders(&again), vec![late]);
    assert!(none != late && n.dispatch(0.0).is_empty());
}

#[test]
fn a_contributor_that_declines_a_job_is_offered_none_of_it() {
    let mut n = Net::new();
    let alice = n.add_worker(1.0);
    n.hub.workers.get_mut(&alice).unwrap().view.local_data =
        Some(oblivion_protocol::wire::LocalDataOffer {
            shape: vec![4],
            classes: 3,
            samples: 64,
            columns: None,
        });
    n.add_job(1, 1);
    n.hub.jobs.get_mut(&JobId(1)).unwrap().kind = Arc::new(federated(1e-9, 20));
    let first = n.dispatch(0.0);
    assert_eq!(holders(&first), vec![alice]);
    // Returned without declining: offered again at once.
    n.hub.return_lease(alice, first[0].id, false).unwrap();
    let again = n.dispatch(0.0);
    assert_eq!(holders(&again), vec![alice]);
    // Declined (its limits refuse the job): never offered again.
    n.hub.return_lease(alice, again[0].id, true).unwrap();
    assert!(n.dispatch(0.0).is_empty());
    n.add_job(2, 1);
    assert_eq!(holders(&n.dispatch(0.0)), vec![alice], "other jobs still");
}

#[test]
fn a_worker_that_declines_a_training_job_is_offered_none_of_it() {
    let mut n = Net::new();
    let alice = n.add_worker(1.0);
    n.add_job(1, 1);
    let first = n.dispatch(0.0);
    assert_eq!(holders(&first), vec![alice]);
    n.hub.return_lease(alice, first[0].id, true).unwrap();
    assert!(
        n.dispatch(0.0).is_empty(),
        "a declined job is not offered again, whatever its kind"
    );
    let bob = n.add_worker(1.0);
    assert_eq!(holders(&n.dispatch(0.0)), vec![bob], "others still take it");
}

#[test]
fn a_replica_goes_to_another_worker_and_looks_like_its_shard() {
    let mut n = Net::new();
    let a = n.add_worker(100.0);
    n.add_job(1, 2);
    n.hub.jobs.get_mut(&JobId(1)).unwrap().set_replicas(&[1]);
    assert_eq!(n.hub.jobs[&JobId(1)].shards.len(), 3);
    // Alone, the worker gets both shards but never the replica.
    let first = n.dispatch(0.0);
    assert_eq!(
        first.iter().map(|l| l.shard).collect::<Vec<_>>(),
        vec![0, 1]
    );
    n.hub.complete(first[1].id, 0.0).unwrap();
    assert!(
        n.dispatch(0.0).is_empty(),
        "the replica waits for someone else"
    );
    let b = n.add_worker(1.0);
    let replica = n.dispatch(0.0);
    assert_eq!(replica.len(), 1);
    assert_eq!((replica[0].shard, replica[0].worker), (2, b));
    let (original, copy) = (
        n.hub.task(&first[1]).unwrap(),
        n.hub.task(&replica[0]).unwrap(),
    );
    assert_eq!((copy.shard, &copy.work), (original.shard, &original.work));
    assert_ne!(a, b);
    // A third opinion for the same shard needs a third worker.
    n.hub.set_replicas(JobId(1), 1, &[1, 1]);
    assert!(n.dispatch(0.0).is_empty());
    let c = n.add_worker(1.0);
    assert_eq!(n.dispatch(0.0)[0].worker, c);
    // The next round starts without replicas unless given some.
    n.hub.next_round(JobId(1), 2, g2(), &[]);
    assert_eq!(n.hub.jobs[&JobId(1)].shards.len(), 2);
}

#[test]
fn only_the_owner_sees_which_shards_are_replicated() {
    let mut n = Net::new();
    let a = n.add_worker(100.0);
    let b = n.add_worker(1.0);
    n.add_job(1, 2);
    n.hub.jobs.get_mut(&JobId(1)).unwrap().set_replicas(&[1]);
    let leases = n.dispatch(0.0);
    assert_eq!(leases.len(), 3);
    let public = |n: &Net| n.hub.shard_views(JobId(1), ShardDetail::Public);
    // Every lease shows the same: a leased shard, no holder, no progress.
    let shown = public(&n);
    assert_eq!(shown.len(), 2);
    assert!(
        shown
            .iter()
            .all(|s| s.state == ShardStatus::Leased && s.worker_id.is_none())
    );
    assert_eq!(n.hub.shard_views(JobId(1), ShardDetail::Owner).len(), 3);
    // Shard 0 is trained once and shard 1 twice; one holder of each is
    // done. Nothing public tells the other holder of shard 1 apart from
    // the holder of an unreplicated shard.
    let by = |shard: usize| leases.iter().find(|l| l.shard as usize == shard).unwrap();
    n.hub.complete(by(1).id, 0.0).unwrap();
    let shown = public(&n);
    assert_eq!(shown[1].state, ShardStatus::Leased);
    assert_eq!((shown[1].worker_id, shown[1].progress), (None, 0.0));
    n.hub.complete(by(2).id, 0.0).unwrap();
    n.hub.complete(by(0).id, 0.0).unwrap();
    assert!(public(&n).iter().all(|s| s.state == ShardStatus::Done));
    // The network view names no shard of a lease.
    let _ = (a, b);
    let json = serde_json::to_string(&n.hub.worker_views(0.0)).unwrap();
    assert!(!json.contains("\"shard\""), "{json}");
}

#[test]
fn a_private_job_goes_only_to_its_owner_and_trainers() {
    let mut n = Net::new();
    let account = |c: char| format!("0x{}", c.to_string().repeat(40));
    let signed_in = |n: &mut Net, who: Option<String>| n.add_worker_as(100.0, who);
    let anonymous = signed_in(&mut n, None);
    let stranger = signed_in(&mut n, Some(account('c')));
    let owner = signed_in(&mut n, Some(account('a')));
    let trainer = signed_in(&mut n, Some(account('b')));
    n.add_job(1, 6);
    let JobSpec::Training(mut training) = n.hub.jobs[&JobId(1)].spec.clone() else {
        unreachable!("a training job")
    };
    training.visibility = oblivion_protocol::Visibility::Private;
    training.trainers = vec![account('b').to_uppercase().replace("0X", "0x")];
    let spec = JobSpec::Training(training);
    let job = n.hub.jobs.remove(&JobId(1)).unwrap();
    let trainers = spec.restricted_to(Some(&account('a')));
    n.hub
        .jobs
        .insert(JobId(1), LiveJob { spec, ..job }.trained_by(trainers));
    let issued = n.dispatch(0.0);
    let mut who = holders(&issued);
    who.sort_unstable();
    who.dedup();
    assert_eq!(who, vec![owner, trainer], "{issued:?}");
    assert!(!who.contains(&anonymous) && !who.contains(&stranger));
    // Nor does the network view show the private job's leases.
    assert!(n.hub.worker_views(0.0).iter().all(|w| w.leases.is_empty()));
}

#[test]
fn a_quarantined_worker_loses_its_leases_and_gets_no_more() {
    let mut n = Net::new();
    let liar = n.add_worker(100.0);
    let honest = n.add_worker(1.0);
    n.add_job(1, 4);
    let issued = n.dispatch(0.0);
    assert_eq!(issued.len(), 4);
    let ended = n.hub.quarantine(&format!("worker:{liar}"), "disputed");
    assert_eq!(ended.len(), 2);
    assert!(
        ended
            .iter()
            .all(|e| e.lease.worker == liar && e.status == LeaseStatus::Revoked)
    );
    n.hub.complete(issued[1].id, 0.0).unwrap();
    let again = n.dispatch(1.0);
    assert!(
        !again.is_empty() && again.iter().all(|l| l.worker == honest),
        "{again:?}"
    );
    let view = n
        .hub
        .worker_views(1.0)
        .into_iter()
        .find(|w| w.id == liar)
        .unwrap();
    assert_eq!(view.state, WorkerState::Quarantined);
    assert_eq!(view.quarantine.as_deref(), Some("disputed"));
    assert!(n.hub.quarantine("0xnobody", "x").is_empty());
}

#[test]
fn an_update_accepted_after_its_lease_expired_here_still_counts() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].clone();
    assert_eq!(n.hub.expire(100.0).len(), 1, "expired here while checked");
    // The database took its update first.
    n.hub.shard_done(&lease);
    assert_eq!(n.hub.workers[&a].view.accepted, 1);
    assert!(matches!(
        n.hub.jobs[&JobId(1)].shards[0].state,
        ShardState::Done { .. }
    ));
}

#[test]
fn leases_expire_without_heartbeats() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].id;
    n.hub.heartbeat(
        a,
        &[LeaseProgress {
            lease_id: lease,
            progress: 0.5,
        }],
        20.0,
    );
    assert!(n.hub.expire(45.0).is_empty(), "renewed at 20 s until 50 s");
    assert_eq!(n.hub.lease(lease).unwrap().progress, 0.5);
    let ended = n.hub.expire(51.0);
    assert_eq!(ended[0].status, LeaseStatus::Expired);
    assert_eq!(n.hub.workers[&a].view.lost, 1);
    assert_eq!(n.hub.jobs[&JobId(1)].shards[0].state, ShardState::Pending);
    let reissued = n.dispatch(52.0);
    assert_ne!(reissued[0].id, lease, "a fresh lease id");
}

#[test]
fn a_lease_ends_at_its_lifetime_whatever_its_heartbeats() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].id;
    let mut t = 0.0;
    let at = |t: f64| {
        [LeaseProgress {
            lease_id: lease,
            progress: (t / 1000.0) as f32,
        }]
    };
    while t < 590.0 {
        t += 10.0;
        n.hub.heartbeat(a, &at(t), t);
        assert!(n.hub.expire(t).is_empty(), "alive at {t} s");
    }
    n.hub.heartbeat(a, &at(601.0), 601.0);
    let ended = n.hub.expire(601.0);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].lease.id, ended[0].status),
        (lease, LeaseStatus::Overdue)
    );
}

#[test]
fn a_lease_whose_progress_stalls_ends_however_diligent_its_heartbeats() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].id;
    let stuck = [LeaseProgress {
        lease_id: lease,
        progress: 0.5,
    }];
    // Progress grows to one half by 10 s, then never again.
    let mut t = 0.0;
    while t < 130.0 {
        t += 10.0;
        n.hub.heartbeat(a, &stuck, t);
        assert!(n.hub.expire(t).is_empty(), "alive at {t} s");
    }
    n.hub.heartbeat(a, &stuck, 131.0);
    let ended = n.hub.expire(131.0);
    assert_eq!(
        ended
            .iter()
            .map(|e| (e.lease.id, e.status))
            .collect::<Vec<_>>(),
        vec![(lease, LeaseStatus::Overdue)]
    );
}

#[test]
fn only_the_holder_may_post_and_rejected_shards_go_elsewhere() {
    let mut n = Net::new();
    let a = n.add_worker(100.0);
    let b = n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].clone();
    assert_eq!(lease.worker, a);
    assert_eq!(
        n.hub.update_context("token2", lease.id).unwrap_err(),
        Refusal::NotHeld(lease.id)
    );
    assert_eq!(
        n.hub.update_context("nope", lease.id).unwrap_err(),
        Refusal::UnknownWorker
    );
    assert!(n.hub.update_context("token1", lease.id).is_ok());
    n.hub.reject(lease.id).unwrap();
    assert_eq!(n.hub.workers[&a].view.rejected, 1);
    // The faster worker was refused: the shard goes to the other one.
    assert_eq!(holders(&n.dispatch(1.0)), vec![b]);
    assert!(
        n.hub.update_context("token1", lease.id).is_err(),
        "the old lease is gone"
    );
}

#[test]
fn a_refused_worker_still_gets_the_shard_when_alone() {
    let mut n = Net::new();
    n.add_worker(1.0);
    n.add_job(1, 1);
    let lease = n.dispatch(0.0)[0].id;
    n.hub.reject(lease).unwrap();
    assert_eq!(n.dispatch(1.0).len(), 1);
}

#[test]
fn shards_other_instances_hold_or_finished_are_not_planned() {
    let mut n = Net::new();
    let a = n.add_worker(1.0);
    n.add_job(1, 3);
    let mine = n.dispatch(0.0);
    assert_eq!(mine.len(), 2);
    let (first, second) = (mine[0].shard, mine[1].shard);
    // The database says: this instance's first shard was finished
    // elsewhere (its lease here is void) and shard 2 is leased by
    // another instance's worker 77.
    n.hub
        .sync_shards(JobId(1), 1, &[(first, WorkerId(55))], &[(2, WorkerId(77))]);
    assert_eq!(n.hub.leases_of(a).count(), 1);
    let views = n.hub.shard_views(JobId(1), ShardDetail::Owner);
    assert_eq!(views[first as usize].state, ShardStatus::Done);
    assert_eq!(views[2].worker_id, Some(WorkerId(77)));
    assert!(n.hub.plan(0.0).is_empty(), "nothing left to plan here");
    // The other instance's lease ends: the shard is free again.
    n.hub
        .sync_shards(JobId(1), 1, &[(first, WorkerId(55))], &[]);
    assert_eq!(n.dispatch(1.0).len(), 1);
    assert!(!n.hub.complete(mine[1].id, 1.0).unwrap().round_done);
    assert_eq!(
        n.hub.jobs[&JobId(1)].shards[second as usize].state,
        ShardState::Done { worker: a }
    );
}

#[test]
fn draining_workers_get_nothing() {
    let mut n = Net::new();
    let a = n.add_worker(100.0);
    let b = n.add_worker(1.0);
    n.hub.drain(a);
    n.add_job(1, 3);
    assert_eq!(holders(&n.dispatch(0.0)), vec![b, b]);
}

#[test]
fn the_last_slots_of_a_round_get_backups_and_the_first_update_wins() {
    let mut n = Net::new();
    let (a, b, c) = (n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0));
    n.add_job(1, 3);
    let issued = n.dispatch(0.0);
    assert_eq!(holders(&issued), vec![a, b, c]);
    assert!(n.dispatch(1.0).is_empty(), "no one is idle: no backup");
    // b finishes; nothing is pending, so idle b backs up the oldest
    // lease still out (a's, the lowest slot of those granted first).
    n.hub.complete(issued[1].id, 2.0).unwrap();
    let backup = n.dispatch(2.0);
    assert_eq!(holders(&backup), vec![b]);
    assert_eq!(backup[0].shard, 0);
    let slot = &n.hub.jobs[&JobId(1)].shards[0];
    assert_eq!(
        slot.state,
        ShardState::Leased {
            lease: issued[0].id,
            worker: a
        }
    );
    assert_eq!(
        slot.backup,
        Some(Backup {
            lease: backup[0].id,
            worker: b
        })
    );
    // One backup a slot: b is busy now and nobody else is idle.
    assert!(n.dispatch(2.5).is_empty());
    // The backup's update comes first: a's lease is revoked, and a,
    // which had not finished 10 samples in 3 s, is measured at most
    // that fast (never again a newcomer served first).
    let done = n.hub.complete(backup[0].id, 3.0).unwrap();
    assert!(!done.round_done);
    let lost = done.superseded.unwrap();
    assert_eq!(
        (lost.lease.id, lost.status),
        (issued[0].id, LeaseStatus::Revoked)
    );
    assert_eq!(
        n.hub.jobs[&JobId(1)].shards[0].state,
        ShardState::Done { worker: b }
    );
    assert_eq!(n.hub.workers[&a].measured, Some(10.0 / 3.0));
    assert!(
        n.hub.update_context("token1", issued[0].id).is_err(),
        "a may not post now"
    );
    // Both idle now, but b had its backup of the round: a backs up
    // c's slot.
    let backup = n.dispatch(3.0);
    assert_eq!(holders(&backup), vec![a]);
    // c goes away: its slot carries on with its backup alone, and no
    // one backs that up in turn (a holds it, b had its backup).
    n.hub.remove_worker(c);
    assert_eq!(
        n.hub.jobs[&JobId(1)].shards[2].state,
        ShardState::Leased {
            lease: backup[0].id,
            worker: a
        }
    );
    assert!(n.dispatch(3.5).is_empty());
    let done = n.hub.complete(backup[0].id, 4.0).unwrap();
    assert!(done.round_done);
    assert!(done.superseded.is_none());
    assert!(n.hub.leases.is_empty());
    // A new round: backups again, one each.
    n.hub.next_round(JobId(1), 2, g2(), &[]);
    assert!(n.hub.jobs[&JobId(1)].progress.backed_up_by.is_empty());
}

#[test]
fn a_fast_liar_takes_one_backup_a_round_not_the_round() {
    // The liar posts at once; three honest workers take a while. It
    // finishes its slot before anyone, and would otherwise back up
    // every slot still out, one after another, winning each.
    let mut n = Net::new();
    let liar = n.add_worker(1000.0);
    let honest = [n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0)];
    n.add_job(1, 4);
    let issued = n.dispatch(0.0);
    assert_eq!(issued.len(), 4);
    let mut won = 0;
    let mut t = 0.0;
    for _ in 0..4 {
        t += 0.1;
        let Some(l) = n
            .hub
            .leases
            .values()
            .find(|l| l.worker == liar)
            .map(|l| l.id)
        else {
            break;
        };
        let done = n.hub.complete(l, t).unwrap();
        won += usize::from(done.superseded.is_some());
        n.dispatch(t);
    }
    let slots = &n.hub.jobs[&JobId(1)].shards;
    let by_liar = slots
        .iter()
        .filter(|s| s.state == ShardState::Done { worker: liar })
        .count();
    assert_eq!(won, 1, "one honest holder beaten, not three");
    assert!(by_liar <= 2, "its own slot and one backup: {by_liar}");
    let liar_id = n.hub.workers[&liar].identity();
    let liars_backups = n.hub.jobs[&JobId(1)]
        .progress
        .backed_up_by
        .iter()
        .filter(|&w| *w == liar_id);
    assert_eq!(liars_backups.count(), 1);
    // The honest holders' slots are theirs to finish.
    let still_theirs = slots
        .iter()
        .filter(
            |s| matches!(s.state, ShardState::Leased { worker, .. } if honest.contains(&worker)),
        )
        .count();
    assert_eq!(by_liar + still_theirs, 4);
}

#[test]
fn reconnecting_buys_no_second_backup() {
    // A liar, signed in, posts at once and wins a backup; then it
    // comes back as a new connection, anonymous or as its account.
    let mut n = Net::new();
    let liar = n.add_worker_as(1000.0, Some("0xliar".into()));
    let honest = [n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0)];
    n.add_job(1, 4);
    let issued = n.dispatch(0.0);
    let own = issued.iter().find(|l| l.worker == liar).unwrap().id;
    n.hub.complete(own, 0.1).unwrap();
    let backup = n.dispatch(0.1);
    assert_eq!(holders(&backup), vec![liar], "measured now, and idle");
    assert!(
        n.hub
            .complete(backup[0].id, 0.2)
            .unwrap()
            .superseded
            .is_some()
    );
    n.hub.remove_worker(liar);
    // Anonymous: a new connection, never measured, gets no backup
    // (it would be served first, as a newcomer). The honest worker it
    // beat, idle and measured, may back up another slot.
    let anonymous = n.add_worker(1000.0);
    let planned = n.dispatch(0.3);
    assert!(
        planned.iter().all(|l| honest.contains(&l.worker)),
        "{planned:?}"
    );
    n.hub.remove_worker(anonymous);
    // As its account, however fast it was measured: it had its backup.
    let again = n.add_worker_as(1000.0, Some("0xliar".into()));
    n.hub.reindexed(again, |hub| {
        if let Some(w) = hub.workers.get_mut(&again) {
            w.measured = Some(1e6);
        }
    });
    let planned = n.dispatch(0.4);
    assert!(planned.iter().all(|l| l.worker != again), "{planned:?}");
    assert_eq!(
        n.hub.jobs[&JobId(1)]
            .progress
            .backed_up_by
            .iter()
            .filter(|i| *i == "0xliar")
            .count(),
        1
    );
}

#[test]
fn a_round_closes_on_its_quorum_once_it_has_waited_and_enough_is_in() {
    let mut n = Net::new();
    let (a, b, c, d) = (
        n.add_worker(1.0),
        n.add_worker(1.0),
        n.add_worker(1.0),
        n.add_worker(1.0),
    );
    n.add_job(1, 4);
    if let JobSpec::Training(t) = &mut n.hub.jobs.get_mut(&JobId(1)).unwrap().spec {
        t.quorum = Some(oblivion_protocol::aggregation::QuorumSpec {
            share: 0.75,
            after_secs: 10,
        });
    }
    let issued = n.dispatch(2.0);
    assert_eq!(holders(&issued), vec![a, b, c, d]);
    n.hub.complete(issued[0].id, 3.0).unwrap();
    n.hub.complete(issued[1].id, 4.0).unwrap();
    assert!(n.hub.quorum_due(20.0).is_empty(), "two of four: short of 3");
    n.hub.complete(issued[2].id, 5.0).unwrap();
    assert_eq!(n.dispatch(5.0).len(), 1, "a backup of d's slot");
    assert!(n.hub.quorum_due(11.9).is_empty(), "not yet waited 10 s");
    assert_eq!(n.hub.quorum_due(12.0), vec![(JobId(1), 1, 3)]);
    // Closed: d's lease (and the backup an idle worker took) end, and
    // the round is complete with three updates of four.
    let ended = n.hub.close_round(JobId(1), 1);
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(ended.iter().all(|e| e.status == LeaseStatus::Revoked));
    assert!(ended.iter().any(|e| e.lease.worker == d));
    assert!(n.hub.jobs[&JobId(1)].round_complete());
    assert!(n.hub.quorum_due(30.0).is_empty());
    assert!(n.dispatch(30.0).is_empty(), "a closed round takes no work");
    n.hub.next_round(JobId(1), 2, g2(), &[]);
    assert!(!n.hub.jobs[&JobId(1)].round_complete());
    assert_eq!(n.dispatch(31.0).len(), 4);
    assert!(n.hub.quorum_due(40.0).is_empty(), "nothing in yet");
}

/// The federated kind with clip norm 1.
fn federated(noise_std: f64, rounds: u32) -> Federated {
    Federated {
        clip_norm: 1.0,
        noise_std,
        rounds,
        spec: serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []},
            "dataset": {"federated": {"validation": {"builtin": "iris"}}},
            "rounds": rounds, "shards_per_round": 2, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01},
            "privacy": {"clip_norm": 1.0, "noise_multiplier": noise_std}
        }))
        .unwrap(),
    }
}

#[test]
fn federated_slots_get_no_backups() {
    let mut n = Net::new();
    let workers = [n.add_worker(1.0), n.add_worker(1.0)];
    n.add_job(1, 1);
    assert_eq!(n.dispatch(0.0).len(), 1);
    // The idle one has been measured (only such a worker backs up).
    for w in workers {
        n.hub.reindexed(w, |hub| {
            if let Some(w) = hub.workers.get_mut(&w) {
                w.measured = Some(1.0);
            }
        });
    }
    assert_eq!(n.hub.plan(1.0).len(), 1, "a backup, were it a shard");
    // A contributor's own data: no one else can stand in for it.
    n.hub.jobs.get_mut(&JobId(1)).unwrap().kind = Arc::new(federated(1.0, 2));
    assert!(n.hub.plan(1.0).is_empty());
}

#[test]
fn round_completes_when_every_shard_is_in() {
    let mut n = Net::new();
    n.add_worker(1.0);
    n.add_job(1, 2);
    let issued = n.dispatch(0.0);
    assert!(!n.hub.complete(issued[0].id, 0.0).unwrap().round_done);
    assert!(n.hub.complete(issued[1].id, 0.0).unwrap().round_done);
    assert!(n.hub.jobs[&JobId(1)].round_complete());
    assert!(n.dispatch(0.0).is_empty());
    n.hub.next_round(JobId(1), 2, g2(), &[]);
    let next = n.dispatch(0.0);
    assert_eq!(next.len(), 2);
    assert_eq!(n.hub.task(&next[0]).unwrap().weights, BlobId::of(b"g2"));
}

#[test]
fn jobs_share_workers_in_turns() {
    let mut n = Net::new();
    for _ in 0..2 {
        n.add_worker(1.0);
    }
    n.add_job(1, 3);
    n.add_job(2, 3);
    let jobs: Vec<JobId> = n.dispatch(0.0).iter().map(|l| l.job).collect();
    assert_eq!(jobs, [1, 2, 1, 2].map(JobId).to_vec());
}

#[test]
fn many_workers_are_served_fairly() {
    let mut n = Net::new();
    for i in 0..1000 {
        n.add_worker(f64::from(i % 7));
    }
    n.add_job(1, 256);
    n.add_job(2, 256);
    let issued = n.dispatch(0.0);
    assert_eq!(issued.len(), 512);
    let mut per_worker: HashMap<WorkerId, u32> = HashMap::new();
    for l in &issued {
        *per_worker.entry(l.worker).or_default() += 1;
    }
    assert_eq!(per_worker.len(), 512, "one lease each before any second");
    // Nobody measured yet: the longest connected go first, whatever
    // they claim.
    assert!(issued.iter().all(|l| l.worker <= WorkerId(512)));
}
