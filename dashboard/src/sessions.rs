//! The login's server-side sessions and its rate limit: plain structs fed the current time,
//! so that expiry and lockout are unit-tested without waiting.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after its login, however busy.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at once; a login beyond it ends the least recently used one.
pub const MAX_SESSIONS: usize = 1024;
/// Random bytes in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;

/// Failed logins one client address may make per [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_CLIENT: usize = 5;
/// Failed logins all clients together may make per [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_GLOBAL: usize = 50;
/// The window the login limits count failures in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered; beyond it only the global limit applies.
pub const MAX_TRACKED_CLIENTS: usize = 4096;

/// The key a session is kept under: the hash of its id, so that looking it up takes no time
/// that depends on how much of a guessed id is right.
type Key = [u8; 32];

fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

#[derive(Debug, Clone, Copy)]
struct Session {
    created: Instant,
    used: Instant,
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.used) <= SESSION_IDLE
            && now.saturating_duration_since(self.created) <= SESSION_MAX_AGE
    }
}

/// The sessions the login created, bounded by [`MAX_SESSIONS`].
#[derive(Debug, Default)]
pub struct Sessions {
    live: HashMap<Key, Session>,
}

impl Sessions {
    /// Starts a session and returns its id: 256 bits from the thread's CSPRNG, in hex.
    pub fn create(&mut self, now: Instant) -> String {
        if self.live.len() >= MAX_SESSIONS {
            self.live.retain(|_, s| s.live(now));
        }
        if self.live.len() >= MAX_SESSIONS {
            let oldest = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.live.remove(&k);
            }
        }
        let bytes: [u8; SESSION_ID_BYTES] = rand::random();
        let id = hex::encode(bytes);
        let session = Session {
            created: now,
            used: now,
        };
        self.live.insert(key(&id), session);
        id
    }

    /// Whether `id` names a live session; a live one counts as used now, an expired one ends.
    pub fn check(&mut self, id: &str, now: Instant) -> bool {
        let k = key(id);
        match self.live.get_mut(&k) {
            Some(s) if s.live(now) => {
                s.used = now;
                true
            }
            Some(_) => {
                self.live.remove(&k);
                false
            }
            None => false,
        }
    }

    /// Ends session `id` (logout).
    pub fn revoke(&mut self, id: &str) {
        self.live.remove(&key(id));
    }

    /// Sessions kept.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Counts failed logins per client address and overall within [`LOGIN_WINDOW`].
#[derive(Debug, Default)]
pub struct LoginLimiter {
    clients: HashMap<IpAddr, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

fn prune(failures: &mut VecDeque<Instant>, now: Instant) {
    while failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= LOGIN_WINDOW)
    {
        failures.pop_front();
    }
}

/// How long until the oldest of `failures` leaves the window.
fn wait(failures: &VecDeque<Instant>, now: Instant) -> Duration {
    failures
        .front()
        .map(|t| LOGIN_WINDOW.saturating_sub(now.saturating_duration_since(*t)))
        .unwrap_or(LOGIN_WINDOW)
}

impl LoginLimiter {
    /// `Ok` if `client` may try a login now, else how long it must wait.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        prune(&mut self.global, now);
        if self.global.len() >= LOGIN_FAILURES_GLOBAL {
            return Err(wait(&self.global, now));
        }
        let Some(failures) = self.clients.get_mut(&client) else {
            return Ok(());
        };
        prune(failures, now);
        if failures.len() >= LOGIN_FAILURES_PER_CLIENT {
            return Err(wait(failures, now));
        }
        Ok(())
    }

    /// Records a failed login of `client`.
    pub fn failed(&mut self, client: IpAddr, now: Instant) {
        self.global.push_back(now);
        if self.global.len() > LOGIN_FAILURES_GLOBAL {
            self.global.pop_front();
        }
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_TRACKED_CLIENTS {
            self.clients.retain(|_, f| {
                prune(f, now);
                !f.is_empty()
            });
            if self.clients.len() >= MAX_TRACKED_CLIENTS {
                return;
            }
        }
        let failures = self.clients.entry(client).or_default();
        failures.push_back(now);
        if failures.len() > LOGIN_FAILURES_PER_CLIENT {
            failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_expire_and_end_at_logout() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = s.create(t0);
        let b = s.create(t0);
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * SESSION_ID_BYTES);
        assert!(s.check(&a, t0 + Duration::from_secs(3600)));
        assert!(!s.check("not-a-session", t0));
        // Idle for longer than SESSION_IDLE: gone.
        assert!(!s.check(&b, t0 + SESSION_IDLE + Duration::from_secs(1)));
        // Used every few hours, it still ends at SESSION_MAX_AGE.
        let mut t = t0;
        while t < t0 + SESSION_MAX_AGE - Duration::from_secs(6 * 3600) {
            t += Duration::from_secs(6 * 3600);
            assert!(s.check(&a, t));
        }
        assert!(!s.check(&a, t0 + SESSION_MAX_AGE + Duration::from_secs(1)));
        let c = s.create(t0);
        s.revoke(&c);
        assert!(!s.check(&c, t0));
    }

    #[test]
    fn the_session_table_is_bounded() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let first = s.create(t0);
        for i in 1..=MAX_SESSIONS as u64 {
            s.create(t0 + Duration::from_millis(i));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            !s.check(&first, t0 + Duration::from_secs(1)),
            "the LRU one ended"
        );
    }

    #[test]
    fn failed_logins_lock_a_client_out_for_the_window() {
        let mut l = LoginLimiter::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for i in 0..LOGIN_FAILURES_PER_CLIENT {
            assert!(l.check(ip, t0).is_ok(), "attempt {i}");
            l.failed(ip, t0);
        }
        let wait = l.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, LOGIN_WINDOW - Duration::from_secs(10));
        assert!(
            l.check(other, t0).is_ok(),
            "other clients are not locked out"
        );
        assert!(l.check(ip, t0 + LOGIN_WINDOW).is_ok(), "the window passed");
    }

    #[test]
    fn the_global_limit_holds_across_clients() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..LOGIN_FAILURES_GLOBAL as u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(i).into();
            l.failed(ip, t0);
        }
        assert!(l.check([192, 168, 1, 1].into(), t0).is_err());
        assert!(l.check([192, 168, 1, 1].into(), t0 + LOGIN_WINDOW).is_ok());
    }

    #[test]
    fn tracked_clients_are_bounded() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            let t = t0 + LOGIN_WINDOW * (i / LOGIN_FAILURES_GLOBAL as u32);
            l.failed(std::net::Ipv4Addr::from(i).into(), t);
        }
        assert!(l.clients.len() <= MAX_TRACKED_CLIENTS);
    }
}
