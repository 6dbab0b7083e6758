//! Per-client limits: connections held at once per client address (worker
//! WebSockets, event streams), and the rate of uploads per address.
//!
//! A client is known by [`client_key`]: its address as the coordinator
//! sees it (or as a trusted proxy reports it), with an IPv6 address cut to
//! its /64, since one machine is given a whole /64 and walks it freely.
//!
//! Connection counting is a map of counters with a guard that gives its
//! slot back on drop; the rate is `governor`'s keyed GCRA limiter, whose
//! refusal says how long to wait (sent as `Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;
use crate::error::{AppError, Failure};

/// The address a request's limits are counted under. `peer` is the
/// connection's address; when it is one of `trusted_proxies`, the client
/// is the last address in `forwarded_for` (`X-Forwarded-For`, appended to
/// by each proxy) that is not itself a trusted proxy. IPv4-mapped IPv6
/// addresses count as IPv4, and other IPv6 addresses as their /64.
pub fn client_key(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpAddr]) -> IpAddr {
    let mut client = peer;
    if trusted_proxies.contains(&canonical(peer))
        && let Some(header) = forwarded_for
    {
        for hop in header.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A hop the proxies did not write: trust nothing before it.
                break;
            };
            client = ip;
            if !trusted_proxies.contains(&canonical(ip)) {
                break;
            }
        }
    }
    match canonical(client) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// At most `per_client` connections of one kind per address, and
/// `total` overall.
#[derive(Debug)]
pub struct ConnectionLimit {
    what: &'static str,
    setting: &'static str,
    per_client: u32,
    total: u32,
    held: Mutex<(u32, HashMap<IpAddr, u32>)>,
}

/// A held connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionPermit {
    limit: Arc<ConnectionLimit>,
    client: IpAddr,
}

impl ConnectionLimit {
    /// A limit on `what` (for messages), named `setting` in the config.
    pub fn new(
        what: &'static str,
        setting: &'static str,
        per_client: u32,
        total: u32,
    ) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            what,
            setting,
            per_client,
            total,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a slot for `client`, or answers 429 naming the limit.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionPermit, AppError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.0 >= self.total {
            return Err(AppError::new(
                Failure::TooMany,
                format!(
                    "this coordinator already serves {} {}, its limit",
                    held.0, self.what
                ),
            ));
        }
        let mine = held.1.entry(client).or_insert(0);
        if *mine >= self.per_client {
            return Err(AppError::new(
                Failure::TooMany,
                format!(
                    "{client} already holds {mine} {}, the most one address may ({})",
                    self.what, self.setting
                ),
            ));
        }
        *mine += 1;
        held.0 += 1;
        Ok(ConnectionPermit {
            limit: self.clone(),
            client,
        })
    }

    /// Slots held now.
    pub fn held(&self) -> u32 {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut held = self.limit.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(1);
        if let Some(n) = held.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                held.1.remove(&self.client);
            }
        }
    }
}

/// The per-client limits a coordinator enforces, each named by its
/// setting in the answer that refuses.
pub struct ClientLimits {
    /// Worker connections held, per client address.
    pub worker_connections: Arc<ConnectionLimit>,
    /// Event streams held, per client address.
    pub event_streams: Arc<ConnectionLimit>,
    /// Uploads per client address.
    pub uploads: RateLimit,
    /// Sign-in nonces asked for, per client address.
    pub sign_ins: RateLimit,
}

impl ClientLimits {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> ClientLimits {
        ClientLimits {
            worker_connections: ConnectionLimit::new(
                "worker connections",
                "max_workers_per_client",
                config.quotas.max_workers_per_client,
                config.quotas.max_workers,
            ),
            event_streams: ConnectionLimit::new(
                "event streams",
                "max_event_streams_per_client",
                config.quotas.max_event_streams_per_client,
                config.quotas.max_event_streams,
            ),
            uploads: RateLimit::new(
                "uploads",
                "max_uploads_per_minute",
                config.quotas.max_uploads_per_minute,
            ),
            sign_ins: RateLimit::new(
                "sign-in attempts",
                "max_sign_ins_per_minute",
                config.quotas.max_sign_ins_per_minute,
            ),
        }
    }
}

/// Requests of one kind (uploads, sign-ins) per client address per minute.
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// What is counted, plural ("uploads").
    what: &'static str,
    /// The setting that sets the rate.
    setting: &'static str,
    per_minute: u32,
}

impl RateLimit {
    /// `per_minute` requests a minute per address, in bursts of as many.
    pub fn new(what: &'static str, setting: &'static str, per_minute: u32) -> RateLimit {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            what,
            setting,
            per_minute,
        }
    }

    /// Counts one request by `client`, or answers 429 with `Retry-After`.
    pub fn check(&self, client: IpAddr) -> Result<(), AppError> {
        self.limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut e = AppError::new(
                Failure::TooMany,
                format!(
                    "{client} made more than {} {} in a minute ({}); retry in {secs} s",
                    self.per_minute, self.what, self.setting
                ),
            );
            e.retry_after = Some(secs.max(1));
            e
        })
    }

    /// Forgets addresses whose allowance is full again (bounds memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_given_back() {
        let limit = ConnectionLimit::new("event streams", "max_sse_per_client", 2, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let p1 = limit.acquire(a).unwrap();
        let _p2 = limit.acquire(a).unwrap();
        let e = limit.acquire(a).unwrap_err();
        assert_eq!(e.kind, Failure::TooMany);
        assert!(e.message.contains("max_sse_per_client"), "{}", e.message);
        let _p3 = limit.acquire(b).unwrap();
        assert!(limit.acquire(b).unwrap_err().message.contains("its limit"));
        drop(p1);
        assert_eq!(limit.held(), 2);
        limit.acquire(b).unwrap();
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_only_trusted_proxies_are_believed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Every address of one /64 counts as one client.
        let a = client_key(ip("2001:db8:1:2:aaaa::1"), None, &[]);
        let b = client_key(ip("2001:db8:1:2:ffff:1:2:3"), None, &[]);
        assert_eq!(a, b);
        assert_ne!(a, client_key(ip("2001:db8:1:3::1"), None, &[]));
        assert_eq!(client_key(ip("::ffff:10.0.0.1"), None, &[]), ip("10.0.0.1"));
        // X-Forwarded-For is the client's word unless a trusted proxy sent it.
        let proxy = ip("10.0.0.9");
        let forwarded = Some("1.2.3.4, 5.6.7.8");
        assert_eq!(
            client_key(ip("9.9.9.9"), forwarded, &[proxy]),
            ip("9.9.9.9")
        );
        assert_eq!(client_key(proxy, forwarded, &[proxy]), ip("5.6.7.8"));
        // Behind two proxies, the hop before the last trusted one.
        let inner = ip("10.0.0.8");
        assert_eq!(
            client_key(proxy, Some("1.2.3.4, 5.6.7.8, 10.0.0.8"), &[proxy, inner]),
            ip("5.6.7.8")
        );
        // A proxy without the header, or with junk, is the client itself.
        assert_eq!(client_key(proxy, None, &[proxy]), proxy);
        assert_eq!(client_key(proxy, Some("junk"), &[proxy]), proxy);
        assert_eq!(
            client_key(proxy, Some("2001:db8::1"), &[proxy]),
            ip("2001:db8::")
        );
    }

    #[test]
    fn uploads_beyond_the_rate_are_told_when_to_retry() {
        let rate = RateLimit::new("uploads", "max_uploads_per_minute", 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        rate.check(a).unwrap();
        rate.check(a).unwrap();
        let e = rate.check(a).unwrap_err();
        assert_eq!(e.kind, Failure::TooMany);
        assert!((1..=30).contains(&e.retry_after.unwrap()), "{e:?}");
        rate.check("10.0.0.2".parse().unwrap()).unwrap();
    }
}
