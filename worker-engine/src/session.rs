//! A worker's side of the protocol as a state machine that owns no socket,
//! timer or thread: a driver tells it what happened ([`Event`]) and when
//! ([`Session::handle`] takes the time), and does what it asks
//! ([`Session::poll_action`]) until [`Session::poll_timeout`] comes round.
//! The native worker, the browser worker and the test workers are drivers
//! around this one session, so connecting, greeting, queueing leases,
//! heartbeats, revocations, returning leases, draining on stop and
//! reconnecting follow one set of rules, tested here without a network.
//!
//! The work on a lease (fetching what it names, training, uploading) is the
//! driver's: the session says which lease to work on ([`Action::Work`]),
//! hears how far it got ([`Session::progress`]) and how it ended
//! ([`Event::Finished`]). One lease is worked on at a time; the others
//! wait in arrival order.

use std::collections::VecDeque;

use oblivion_protocol::wire::{
    ClientKind, CoordinatorMessage, DeviceInfo, Endpoint, LeaseProgress, LeaseTask, LocalDataOffer,
    PROTOCOL_VERSION, WorkerMessage,
};
use oblivion_protocol::{LeaseId, WorkerId};

/// How long a coordinator has to answer a hello, ms.
pub const WELCOME_TIMEOUT_MS: f64 = 10_000.0;
/// The first pause before reconnecting, ms; it doubles after each attempt
/// that did not get as far as a welcome, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: f64 = 250.0;
/// The longest pause between reconnection attempts, ms.
pub const MAX_BACKOFF_MS: f64 = 15_000.0;
/// Random extra pause before a reconnection, at most this, ms: workers
/// that lost one coordinator together do not all return at once.
pub const JITTER_MS: f64 = 250.0;
/// The most of a return reason that is sent (the coordinator keeps 256
/// characters).
const MAX_REASON_CHARS: usize = 200;

/// What the worker says of itself in its hello.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Native binary or browser.
    pub client: ClientKind,
    /// The device it trains on.
    pub device: DeviceInfo,
    /// Samples per second on the reference benchmark.
    pub benchmark: f64,
    /// The account rewards go to (it signed in as it), if any.
    pub payout_address: Option<String>,
    /// Most leases it wants at once (`None`: the coordinator's cap).
    pub max_leases: Option<u32>,
    /// The local data it offers to federated jobs.
    pub local_data: Option<LocalDataOffer>,
}

impl Profile {
    /// The hello that opens every connection.
    pub fn hello(&self) -> WorkerMessage {
        WorkerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name: self.name.clone(),
            client: self.client,
            device: self.device.clone(),
            benchmark: self.benchmark,
            payout_address: self.payout_address.clone(),
            max_leases: self.max_leases,
            local_data: self.local_data.clone(),
        }
    }
}

/// What a refusal of the hello does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRefusal {
    /// The session ends: an operator's command is told why and exits.
    End,
    /// The session tries again later, as after a lost connection: a tab
    /// left open keeps contributing once the refusal passes.
    Retry,
}

/// What happened, as the driver tells it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The socket asked for with [`Action::Connect`] is open.
    Opened,
    /// A text message from the coordinator.
    Message(String),
    /// The socket could not open, or closed, and why.
    Closed(String),
    /// The work on a lease ended (see [`Action::Work`]).
    Finished {
        /// The lease.
        lease_id: LeaseId,
        /// How.
        result: WorkResult,
    },
    /// The user asks to stop: the first time, the session finishes the
    /// lease in hand and returns those queued; the second time (or with
    /// `now`), it returns everything at once.
    Stop {
        /// Return everything now.
        now: bool,
    },
}

/// How the work on a lease ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkResult {
    /// The update was accepted, crediting this many samples.
    Accepted {
        /// Samples credited.
        credited: u64,
    },
    /// The update was posted and refused, and why.
    Refused(String),
    /// The work stopped on [`Action::Cancel`].
    Cancelled,
    /// The work failed before an update was posted: the lease goes back.
    Failed(String),
    /// The contributor's privacy limits refuse the job: the lease goes
    /// back and the job is declined.
    Declined(String),
}

/// What the driver is to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a socket to this coordinator (signing in first, if the worker
    /// has an account); then tell [`Event::Opened`] or [`Event::Closed`].
    Connect(Endpoint),
    /// Send this message.
    Send(WorkerMessage),
    /// Work on this lease: fetch what it names from `endpoint` showing
    /// `token`, train, post the update; then tell [`Event::Finished`].
    Work {
        /// The lease.
        task: LeaseTask,
        /// The coordinator it came from.
        endpoint: Endpoint,
        /// The worker's token on that connection.
        token: String,
    },
    /// Stop working on this lease as soon as possible.
    Cancel(LeaseId),
    /// Close the socket.
    Close,
    /// Something to show or log.
    Notice(Notice),
    /// The session is over; nothing more will be asked.
    Ended(Ended),
}

/// What the session has to say, for the log or the page.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// Welcomed by a coordinator.
    Connected {
        /// Its id for this worker's connection.
        worker_id: WorkerId,
        /// The coordinator.
        endpoint: Endpoint,
    },
    /// A lease arrived.
    Leased(LeaseTask),
    /// The coordinator took a lease back.
    Revoked {
        /// The lease.
        lease_id: LeaseId,
        /// Why.
        reason: String,
    },
    /// The work on a lease ended.
    Finished {
        /// The lease.
        lease_id: LeaseId,
        /// How.
        result: WorkResult,
    },
    /// The connection was lost; the session connects again after a pause.
    Disconnected {
        /// Why.
        reason: String,
        /// The pause, ms.
        retry_in_ms: f64,
    },
    /// The coordinator said something is wrong, without closing.
    Warning(String),
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request.
    Stopped,
    /// The coordinator refused the worker's hello, and why (with
    /// [`OnRefusal::End`]).
    Refused(String),
}

/// Counts over the session, for the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Updates accepted.
    pub accepted: u64,
    /// Updates refused.
    pub refused: u64,
    /// Samples credited.
    pub credited: u64,
}

impl Tally {
    /// Leases whose work ended in a posted update.
    pub fn posted(&self) -> u64 {
        self.accepted + self.refused
    }
}

/// The connection, as far as it got.
#[derive(Clone, Debug)]
enum Link {
    /// No socket; the next one opens at `at` (ms).
    Waiting { at: f64 },
    /// A socket asked for.
    Opening,
    /// Hello sent, awaiting the welcome until `deadline` (ms).
    Greeting { deadline: f64 },
    /// Welcomed.
    Ready {
        token: String,
        heartbeat_ms: f64,
        next_beat: f64,
    },
    /// The session is over.
    Over,
}

/// Whether the worker is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    No,
    /// Finishing the lease in hand, taking no more.
    Draining,
}

/// The lease being worked on.
#[derive(Clone, Debug)]
struct Working {
    lease_id: LeaseId,
    progress: f32,
    /// The coordinator revoked it (or the session cancelled it): its end
    /// returns nothing.
    cancelled: bool,
}

/// One worker's session with its coordinators, across reconnections.
#[derive(Debug)]
pub struct Session {
    profile: Profile,
    on_refusal: OnRefusal,
    coordinators: Vec<Endpoint>,
    /// The coordinator of `coordinators` connected to, or next.
    at: usize,
    link: Link,
    stopping: Stopping,
    /// Leases received and not yet started, in arrival order.
    queue: VecDeque<LeaseTask>,
    working: Option<Working>,
    /// The pause before the next reconnection, ms.
    backoff: f64,
    /// State of the jitter's generator (xorshift64).
    rng: u64,
    tally: Tally,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session that connects to the first of `coordinators` at once,
    /// and to the next after a lost connection. `seed` seeds the jitter of
    /// reconnections (any value; a fixed one in tests).
    pub fn new(
        profile: Profile,
        coordinators: Vec<Endpoint>,
        on_refusal: OnRefusal,
        seed: u64,
    ) -> Session {
        Session {
            profile,
            on_refusal,
            link: if coordinators.is_empty() {
                Link::Over
            } else {
                Link::Waiting { at: 0.0 }
            },
            coordinators,
            at: 0,
            stopping: Stopping::No,
            queue: VecDeque::new(),
            working: None,
            backoff: FIRST_BACKOFF_MS,
            rng: seed | 1,
            tally: Tally::default(),
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due (ms on the driver's
    /// clock), if ever.
    pub fn poll_timeout(&self) -> Option<f64> {
        match &self.link {
            Link::Waiting { at } => Some(*at),
            Link::Greeting { deadline } => Some(*deadline),
            Link::Ready { next_beat, .. } => Some(*next_beat),
            Link::Opening | Link::Over => None,
        }
    }

    /// Whether the session is over.
    pub fn is_over(&self) -> bool {
        matches!(self.link, Link::Over)
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The lease being worked on, if any.
    pub fn working(&self) -> Option<LeaseId> {
        self.working.as_ref().map(|w| w.lease_id)
    }

    /// Whether the work on `lease_id` should go on (it is the lease in
    /// hand, and was not cancelled).
    pub fn should_continue(&self, lease_id: LeaseId) -> bool {
        self.working
            .as_ref()
            .is_some_and(|w| w.lease_id == lease_id && !w.cancelled)
    }

    /// The work on `lease_id` got this far (0 to 1); the next heartbeat
    /// says so.
    pub fn progress(&mut self, lease_id: LeaseId, progress: f32) {
        if let Some(w) = self.working.as_mut().filter(|w| w.lease_id == lease_id) {
            w.progress = progress;
        }
    }

    /// Does what is due at `now`: a reconnection, a heartbeat, or giving up
    /// on a welcome.
    pub fn handle_timeout(&mut self, now: f64) {
        match &mut self.link {
            Link::Waiting { at } if now >= *at => {
                self.link = Link::Opening;
                let endpoint = self.coordinators[self.at].clone();
                self.actions.push_back(Action::Connect(endpoint));
            }
            Link::Greeting { deadline } if now >= *deadline => {
                self.actions.push_back(Action::Close);
                self.lost(now, "no welcome from the coordinator".into());
            }
            Link::Ready {
                heartbeat_ms,
                next_beat,
                ..
            } if now >= *next_beat => {
                *next_beat = now + *heartbeat_ms;
                let leases = self.held();
                self.send(WorkerMessage::Heartbeat { leases });
            }
            _ => {}
        }
    }

    /// Takes in what happened at `now` (ms on the driver's clock).
    pub fn handle(&mut self, now: f64, event: Event) {
        if self.is_over() {
            return;
        }
        match event {
            Event::Opened => {
                if matches!(self.link, Link::Opening) {
                    self.link = Link::Greeting {
                        deadline: now + WELCOME_TIMEOUT_MS,
                    };
                    let hello = self.profile.hello();
                    self.send(hello);
                }
            }
            Event::Message(text) => match serde_json::from_str(&text) {
                Ok(message) => self.receive(now, message),
                Err(e) => self.notice(Notice::Warning(format!(
                    "unreadable message from the coordinator: {e}"
                ))),
            },
            Event::Closed(reason) => {
                if !matches!(self.link, Link::Waiting { .. }) {
                    self.lost(now, reason);
                }
            }
            Event::Finished { lease_id, result } => self.finished(lease_id, result),
            Event::Stop { now: at_once } => self.stop(at_once),
        }
    }

    fn receive(&mut self, now: f64, message: CoordinatorMessage) {
        match (message, &self.link) {
            (
                CoordinatorMessage::Welcome {
                    worker_id,
                    token,
                    heartbeat_secs,
                    ..
                },
                Link::Greeting { .. },
            ) => {
                let heartbeat_ms = heartbeat_secs.clamp(1, 3600) as f64 * 1000.0;
                self.link = Link::Ready {
                    token,
                    heartbeat_ms,
                    next_beat: now + heartbeat_ms,
                };
                self.backoff = FIRST_BACKOFF_MS;
                let endpoint = self.coordinators[self.at].clone();
                self.notice(Notice::Connected {
                    worker_id,
                    endpoint,
                });
            }
            (CoordinatorMessage::Error { message }, Link::Greeting { .. }) => {
                self.actions.push_back(Action::Close);
                match self.on_refusal {
                    OnRefusal::End => self.end(Ended::Refused(message)),
                    OnRefusal::Retry => self.lost(now, message),
                }
            }
            (CoordinatorMessage::Error { message }, _) => self.notice(Notice::Warning(message)),
            (CoordinatorMessage::Lease(task), Link::Ready { .. }) => {
                self.notice(Notice::Leased(task.clone()));
                if self.stopping == Stopping::Draining {
                    self.give_back(task.lease_id, "worker is stopping", false);
                } else {
                    self.queue.push_back(task);
                    self.start_next();
                }
            }
            (CoordinatorMessage::Revoke { lease_id, reason }, Link::Ready { .. }) => {
                let before = self.queue.len();
                self.queue.retain(|t| t.lease_id != lease_id);
                let queued = self.queue.len() < before;
                let in_hand = match self.working.as_mut() {
                    Some(w) if w.lease_id == lease_id && !w.cancelled => {
                        w.cancelled = true;
                        true
                    }
                    _ => false,
                };
                if in_hand {
                    self.actions.push_back(Action::Cancel(lease_id));
                }
                if queued || in_hand {
                    self.notice(Notice::Revoked { lease_id, reason });
                }
            }
            // A welcome out of turn, or work before one: not this protocol.
            _ => {}
        }
    }

    fn finished(&mut self, lease_id: LeaseId, result: WorkResult) {
        let Some(working) = self.working.take_if(|w| w.lease_id == lease_id) else {
            return;
        };
        match &result {
            WorkResult::Accepted { credited } => {
                self.tally.accepted += 1;
                self.tally.credited += credited;
            }
            WorkResult::Refused(_) => {
                self.tally.refused += 1;
            }
            WorkResult::Failed(_) | WorkResult::Declined(_) | WorkResult::Cancelled => {}
        }
        // A lease not done goes back at once, with why, rather than wait
        // out its expiry: a refused update's too, in case the refusal left
        // it open.
        let why = match &result {
            WorkResult::Refused(why) | WorkResult::Failed(why) | WorkResult::Declined(why) => {
                Some(why.clone())
            }
            WorkResult::Accepted { .. } | WorkResult::Cancelled => None,
        };
        if let Some(why) = why
            && !working.cancelled
            && matches!(self.link, Link::Ready { .. })
        {
            let declined = matches!(result, WorkResult::Declined(_));
            self.give_back(lease_id, &why, declined);
        }
        self.notice(Notice::Finished { lease_id, result });
        if self.stopping == Stopping::Draining {
            self.close_when_done();
        } else {
            self.start_next();
        }
    }

    fn stop(&mut self, at_once: bool) {
        if !matches!(self.link, Link::Ready { .. }) {
            // Nothing is held without a welcome.
            self.cancel_work();
            if !matches!(self.link, Link::Waiting { .. }) {
                self.actions.push_back(Action::Close);
            }
            self.end(Ended::Stopped);
            return;
        }
        if at_once || self.stopping == Stopping::Draining {
            // A revoked lease in hand is no longer this worker's to return.
            if let Some(id) = self
                .working
                .as_ref()
                .filter(|w| !w.cancelled)
                .map(|w| w.lease_id)
            {
                self.cancel_work();
                self.give_back(id, "worker stopped", false);
            }
            for task in std::mem::take(&mut self.queue) {
                self.give_back(task.lease_id, "worker stopped", false);
            }
            self.actions.push_back(Action::Close);
            self.end(Ended::Stopped);
            return;
        }
        self.stopping = Stopping::Draining;
        self.send(WorkerMessage::Drain);
        for task in std::mem::take(&mut self.queue) {
            self.give_back(task.lease_id, "worker is stopping", false);
        }
        self.close_when_done();
    }

    /// While draining: closes and ends once the lease in hand is done.
    fn close_when_done(&mut self) {
        if self.working.is_none() {
            self.actions.push_back(Action::Close);
            self.end(Ended::Stopped);
        }
    }

    /// The connection is gone: its leases with it (the coordinator ends
    /// them), and the next coordinator is tried after a pause.
    fn lost(&mut self, now: f64, reason: String) {
        self.cancel_work();
        self.queue.clear();
        if self.stopping == Stopping::Draining {
            self.end(Ended::Stopped);
            return;
        }
        let pause = self.backoff + self.jitter();
        self.backoff = (self.backoff * 2.0).min(MAX_BACKOFF_MS);
        self.at = (self.at + 1) % self.coordinators.len();
        self.link = Link::Waiting { at: now + pause };
        self.notice(Notice::Disconnected {
            reason,
            retry_in_ms: pause,
        });
    }

    /// Cancels the work in hand, if any; its end will return nothing.
    fn cancel_work(&mut self) {
        if let Some(w) = self.working.as_mut().filter(|w| !w.cancelled) {
            w.cancelled = true;
            let id = w.lease_id;
            self.actions.push_back(Action::Cancel(id));
        }
    }

    fn start_next(&mut self) {
        if self.working.is_some() {
            return;
        }
        let Link::Ready { token, .. } = &self.link else {
            return;
        };
        let Some(task) = self.queue.pop_front() else {
            return;
        };
        self.working = Some(Working {
            lease_id: task.lease_id,
            progress: 0.0,
            cancelled: false,
        });
        self.actions.push_back(Action::Work {
            task,
            endpoint: self.coordinators[self.at].clone(),
            token: token.clone(),
        });
    }

    /// The leases held, with their progress, for a heartbeat.
    fn held(&self) -> Vec<LeaseProgress> {
        let working = self
            .working
            .iter()
            .filter(|w| !w.cancelled)
            .map(|w| LeaseProgress {
                lease_id: w.lease_id,
                progress: w.progress,
            });
        let queued = self.queue.iter().map(|t| LeaseProgress {
            lease_id: t.lease_id,
            progress: 0.0,
        });
        working.chain(queued).collect()
    }

    fn give_back(&mut self, lease_id: LeaseId, reason: &str, decline_job: bool) {
        self.send(WorkerMessage::ReturnLease {
            lease_id,
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
            decline_job,
        });
    }

    fn send(&mut self, message: WorkerMessage) {
        self.actions.push_back(Action::Send(message));
    }

    fn notice(&mut self, notice: Notice) {
        self.actions.push_back(Action::Notice(notice));
    }

    fn end(&mut self, ended: Ended) {
        self.link = Link::Over;
        self.actions.push_back(Action::Ended(ended));
    }

    /// A pause in `[0, JITTER_MS)`, from xorshift64: enough to spread
    /// reconnections, with no dependency for it.
    fn jitter(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1000) as f64 / 1000.0 * JITTER_MS
    }
}

#[cfg(test)]
mod tests;
