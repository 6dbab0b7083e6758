//! The session's rules, played event by event with a made-up clock.

use super::*;
use oblivion_protocol::LocalWork;
use oblivion_protocol::OptimizerSpec;
use oblivion_protocol::spec::ModelSpec;
use oblivion_protocol::wire::{LeaseWork, TrainTask, TrainingData};
use oblivion_protocol::{BlobId, JobId, LeaseId, WorkerId};

fn profile() -> Profile {
    Profile {
        name: "w".into(),
        client: ClientKind::Native,
        device: DeviceInfo {
            backend: "cpu".into(),
            name: "test".into(),
            detail: String::new(),
        },
        benchmark: 100.0,
        payout_address: None,
        max_leases: None,
        local_data: None,
    }
}

fn task(lease_id: u64) -> LeaseTask {
    LeaseTask {
        lease_id: LeaseId(lease_id),
        job_id: JobId(1),
        round: 1,
        shard: 0,
        model: ModelSpec::Mlp { hidden: vec![] },
        input_shape: vec![4],
        classes: 3,
        weights: BlobId::of(b"w"),
        work: LeaseWork::Train(TrainTask {
            optimizer: OptimizerSpec::Sgd {
                learning_rate: 0.1,
                momentum: 0.0,
            },
            batch_size: 8,
            local_work: LocalWork::Epochs(1),
            seed: 1,
            data: TrainingData::Shard(BlobId::of(b"d")),
        }),
        expires_in_secs: 45,
    }
}

fn text(message: &CoordinatorMessage) -> Event {
    Event::Message(serde_json::to_string(message).unwrap())
}

fn lease(id: u64) -> Event {
    text(&CoordinatorMessage::Lease(task(id)))
}

fn revoke(id: u64) -> Event {
    text(&CoordinatorMessage::Revoke {
        lease_id: LeaseId(id),
        reason: "expired".into(),
    })
}

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint::new(&format!("http://c{i}:8080")))
        .collect()
}

/// Everything the session asks for now.
fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// Only what it sends.
fn sent(actions: &[Action]) -> Vec<WorkerMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn works(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Work { task, .. } => Some(task.lease_id.0),
            _ => None,
        })
        .collect()
}

fn returned(lease_id: u64, reason: &str, decline_job: bool) -> WorkerMessage {
    WorkerMessage::ReturnLease {
        lease_id: LeaseId(lease_id),
        reason: reason.into(),
        decline_job,
    }
}

/// A session welcomed at `now` by the first of `n` coordinators, with
/// heartbeats every 15 s.
fn welcomed(n: usize, now: f64) -> Session {
    let mut s = Session::new(profile(), endpoints(n), OnRefusal::End, 7);
    assert_eq!(s.poll_timeout(), Some(0.0));
    s.handle_timeout(now);
    assert_eq!(
        drain(&mut s),
        vec![Action::Connect(endpoints(n)[0].clone())]
    );
    s.handle(now, Event::Opened);
    assert_eq!(sent(&drain(&mut s)), vec![profile().hello()]);
    s.handle(
        now,
        text(&CoordinatorMessage::Welcome {
            worker_id: WorkerId(3),
            token: "t".into(),
            heartbeat_secs: 15,
            lease_cap: 2,
        }),
    );
    assert_eq!(
        drain(&mut s),
        vec![Action::Notice(Notice::Connected {
            worker_id: WorkerId(3),
            endpoint: endpoints(n)[0].clone(),
        })]
    );
    s
}

#[test]
fn leases_are_worked_one_at_a_time_in_order_and_kept_alive() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(2.0, lease(2));
    let a = drain(&mut s);
    assert_eq!(works(&a), vec![1]);
    assert!(matches!(
        &a[1],
        Action::Work { endpoint, token, .. } if endpoint == &endpoints(1)[0] && token == "t"
    ));
    s.progress(LeaseId(1), 0.5);
    // Nothing is due before the heartbeat; then both leases are in it.
    assert_eq!(s.poll_timeout(), Some(15_000.0));
    s.handle_timeout(14_999.0);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(15_000.0);
    assert_eq!(
        sent(&drain(&mut s)),
        vec![WorkerMessage::Heartbeat {
            leases: vec![
                LeaseProgress {
                    lease_id: LeaseId(1),
                    progress: 0.5
                },
                LeaseProgress {
                    lease_id: LeaseId(2),
                    progress: 0.0
                },
            ],
        }]
    );
    assert_eq!(s.poll_timeout(), Some(30_000.0));
    s.handle(
        16_000.0,
        Event::Finished {
            lease_id: LeaseId(1),
            result: WorkResult::Accepted { credited: 40 },
        },
    );
    let a = drain(&mut s);
    assert!(sent(&a).is_empty(), "{a:?}");
    assert_eq!(works(&a), vec![2]);
    s.handle(
        17_000.0,
        Event::Finished {
            lease_id: LeaseId(2),
            result: WorkResult::Refused("stale".into()),
        },
    );
    assert_eq!(sent(&drain(&mut s)), vec![returned(2, "stale", false)]);
    assert_eq!(
        s.tally(),
        Tally {
            accepted: 1,
            refused: 1,
            credited: 40
        }
    );
    assert_eq!(s.tally().posted(), 2);
    assert_eq!(s.working(), None);
}

#[test]
fn a_revoked_lease_stops_its_work_and_goes_back_unsaid() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(1.0, lease(2));
    drain(&mut s);
    // The queued one simply leaves the queue.
    s.handle(2.0, revoke(2));
    let a = drain(&mut s);
    assert!(!a.contains(&Action::Cancel(LeaseId(2))));
    assert!(matches!(
        &a[..],
        [Action::Notice(Notice::Revoked {
            lease_id: LeaseId(2),
            ..
        })]
    ));
    // The one in hand is cancelled, and its end returns nothing.
    assert!(s.should_continue(LeaseId(1)));
    s.handle(3.0, revoke(1));
    assert_eq!(drain(&mut s)[0], Action::Cancel(LeaseId(1)));
    assert!(!s.should_continue(LeaseId(1)));
    s.handle_timeout(15_000.0);
    assert_eq!(
        sent(&drain(&mut s)),
        vec![WorkerMessage::Heartbeat { leases: vec![] }]
    );
    s.handle(
        15_001.0,
        Event::Finished {
            lease_id: LeaseId(1),
            result: WorkResult::Failed("cancelled".into()),
        },
    );
    assert!(sent(&drain(&mut s)).is_empty());
    // A revocation of a lease it never had changes nothing.
    s.handle(15_002.0, revoke(9));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_failed_lease_goes_back_and_a_declined_job_says_so() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(1.0, lease(2));
    drain(&mut s);
    let long = "x".repeat(500);
    s.handle(
        2.0,
        Event::Finished {
            lease_id: LeaseId(1),
            result: WorkResult::Failed(long.clone()),
        },
    );
    let a = drain(&mut s);
    assert_eq!(sent(&a), vec![returned(1, &long[..200], false)]);
    assert_eq!(works(&a), vec![2]);
    s.handle(
        3.0,
        Event::Finished {
            lease_id: LeaseId(2),
            result: WorkResult::Declined("ε".into()),
        },
    );
    assert_eq!(sent(&drain(&mut s)), vec![returned(2, "ε", true)]);
}

#[test]
fn the_first_stop_drains_and_the_second_returns_everything() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(1.0, lease(2));
    drain(&mut s);
    s.handle(2.0, Event::Stop { now: false });
    assert_eq!(
        sent(&drain(&mut s)),
        vec![
            WorkerMessage::Drain,
            returned(2, "worker is stopping", false)
        ]
    );
    // Work that arrives meanwhile goes straight back.
    s.handle(3.0, lease(3));
    assert_eq!(
        sent(&drain(&mut s)),
        vec![returned(3, "worker is stopping", false)]
    );
    // The lease in hand finishes, then the socket closes.
    s.handle(
        4.0,
        Event::Finished {
            lease_id: LeaseId(1),
            result: WorkResult::Accepted { credited: 1 },
        },
    );
    let a = drain(&mut s);
    assert!(works(&a).is_empty());
    assert_eq!(
        a[a.len() - 2..],
        [Action::Close, Action::Ended(Ended::Stopped)]
    );
    assert!(s.is_over());

    // Twice: everything goes back at once.
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(1.0, lease(2));
    drain(&mut s);
    s.handle(2.0, Event::Stop { now: false });
    drain(&mut s);
    s.handle(3.0, Event::Stop { now: false });
    assert_eq!(
        drain(&mut s),
        vec![
            Action::Cancel(LeaseId(1)),
            Action::Send(returned(1, "worker stopped", false)),
            Action::Close,
            Action::Ended(Ended::Stopped),
        ]
    );
    // Nothing more is asked.
    s.handle(4.0, lease(4));
    s.handle_timeout(60_000.0);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_lost_connection_drops_its_leases_and_the_next_coordinator_is_tried_after_a_pause() {
    let mut s = welcomed(2, 0.0);
    s.handle(1.0, lease(1));
    s.handle(1.0, lease(2));
    drain(&mut s);
    s.handle(100.0, Event::Closed("reset".into()));
    let a = drain(&mut s);
    assert_eq!(a[0], Action::Cancel(LeaseId(1)));
    let Action::Notice(Notice::Disconnected { retry_in_ms, .. }) = a[1] else {
        panic!("{a:?}");
    };
    assert!((FIRST_BACKOFF_MS..FIRST_BACKOFF_MS + JITTER_MS).contains(&retry_in_ms));
    // Nothing happens before the pause is over.
    assert_eq!(s.poll_timeout(), Some(100.0 + retry_in_ms));
    s.handle_timeout(100.0 + retry_in_ms - 1.0);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(100.0 + retry_in_ms);
    assert_eq!(
        drain(&mut s),
        vec![Action::Connect(endpoints(2)[1].clone())]
    );
    // A failed attempt doubles the pause, and goes back to the first.
    let now = 1_000.0;
    s.handle(now, Event::Closed("refused".into()));
    let Action::Notice(Notice::Disconnected { retry_in_ms, .. }) = drain(&mut s)[0] else {
        panic!();
    };
    assert!((2.0 * FIRST_BACKOFF_MS..2.0 * FIRST_BACKOFF_MS + JITTER_MS).contains(&retry_in_ms));
    s.handle_timeout(now + retry_in_ms);
    assert_eq!(
        drain(&mut s),
        vec![Action::Connect(endpoints(2)[0].clone())]
    );
    s.handle(2_000.0, Event::Opened);
    s.handle(
        2_000.0,
        text(&CoordinatorMessage::Welcome {
            worker_id: WorkerId(4),
            token: "u".into(),
            heartbeat_secs: 15,
            lease_cap: 2,
        }),
    );
    drain(&mut s);
    // The old lease's work still winds down: the new one waits for it.
    s.handle(2_001.0, lease(5));
    assert!(works(&drain(&mut s)).is_empty());
    s.handle(
        2_002.0,
        Event::Finished {
            lease_id: LeaseId(1),
            result: WorkResult::Cancelled,
        },
    );
    let a = drain(&mut s);
    assert!(sent(&a).is_empty());
    assert_eq!(works(&a), vec![5]);
    assert!(matches!(&a[1], Action::Work { token, .. } if token == "u"));
    // A welcome resets the pause.
    s.handle(3_000.0, Event::Closed("reset".into()));
    let Action::Notice(Notice::Disconnected { retry_in_ms, .. }) = drain(&mut s)[1] else {
        panic!();
    };
    assert!(retry_in_ms < FIRST_BACKOFF_MS + JITTER_MS);
}

#[test]
fn the_pause_between_attempts_is_capped() {
    let mut s = Session::new(profile(), endpoints(1), OnRefusal::End, 1);
    let mut now = 0.0;
    let mut last = 0.0;
    for _ in 0..20 {
        s.handle_timeout(now);
        drain(&mut s);
        s.handle(now, Event::Closed("refused".into()));
        let Action::Notice(Notice::Disconnected { retry_in_ms, .. }) = drain(&mut s)[0] else {
            panic!();
        };
        last = retry_in_ms;
        now += retry_in_ms;
    }
    assert!((MAX_BACKOFF_MS..MAX_BACKOFF_MS + JITTER_MS).contains(&last));
}

#[test]
fn a_refused_hello_ends_or_waits_as_the_driver_chose() {
    for on_refusal in [OnRefusal::End, OnRefusal::Retry] {
        let mut s = Session::new(profile(), endpoints(1), on_refusal, 1);
        s.handle_timeout(0.0);
        s.handle(0.0, Event::Opened);
        drain(&mut s);
        s.handle(
            1.0,
            text(&CoordinatorMessage::Error {
                message: "protocol 1 is not 2".into(),
            }),
        );
        let a = drain(&mut s);
        assert_eq!(a[0], Action::Close);
        match on_refusal {
            OnRefusal::End => {
                assert_eq!(
                    a[1],
                    Action::Ended(Ended::Refused("protocol 1 is not 2".into()))
                );
                assert!(s.is_over());
            }
            OnRefusal::Retry => {
                assert!(matches!(
                    &a[1],
                    Action::Notice(Notice::Disconnected { reason, .. }) if reason == "protocol 1 is not 2"
                ));
                assert!(s.poll_timeout().is_some());
            }
        }
    }
}

#[test]
fn a_coordinator_that_never_welcomes_is_left() {
    let mut s = Session::new(profile(), endpoints(1), OnRefusal::End, 1);
    s.handle_timeout(0.0);
    s.handle(5.0, Event::Opened);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(5.0 + WELCOME_TIMEOUT_MS));
    // Work before a welcome is not this protocol: ignored.
    s.handle(6.0, lease(1));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(5.0 + WELCOME_TIMEOUT_MS);
    let a = drain(&mut s);
    assert_eq!(a[0], Action::Close);
    assert!(matches!(
        &a[1],
        Action::Notice(Notice::Disconnected { reason, .. }) if reason.contains("no welcome")
    ));
}

#[test]
fn a_stop_before_a_welcome_ends_at_once_and_garbage_is_only_a_warning() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, Event::Message("{not json".into()));
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Notice(Notice::Warning(w))] if w.contains("unreadable")
    ));
    let mut s = Session::new(profile(), endpoints(1), OnRefusal::End, 1);
    s.handle_timeout(0.0);
    drain(&mut s);
    s.handle(1.0, Event::Stop { now: false });
    assert_eq!(
        drain(&mut s),
        vec![Action::Close, Action::Ended(Ended::Stopped)]
    );
}

#[test]
fn stopping_at_once_returns_no_revoked_lease() {
    let mut s = welcomed(1, 0.0);
    s.handle(1.0, lease(1));
    s.handle(2.0, revoke(1));
    drain(&mut s);
    // The revoked lease's work still winds down; it is not returned.
    s.handle(3.0, Event::Stop { now: true });
    assert_eq!(
        drain(&mut s),
        vec![Action::Close, Action::Ended(Ended::Stopped)]
    );
}
