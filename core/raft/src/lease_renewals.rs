//! Lease renewals the leader answers from memory.
//!
//! Keep-alives are the most frequent request a coordination store serves: every client holding
//! a lease sends one every third of its TTL. Writing each through the log would cost a log
//! entry, a replication round and an fsync per keep-alive, for a deadline that only the leader
//! acts on (only the leader proposes expiries). So, as in etcd, the leader keeps renewed
//! deadlines in memory:
//!
//! - The first keep-alive of a lease still goes through the log. It marks the replicated record
//!   `kept_alive`; every later keep-alive is answered here.
//! - A member that becomes leader cannot know the renewals its predecessor answered from
//!   memory, so it gives every kept-alive lease its full TTL counted from when it took over
//!   (etcd refreshes every lease the same way when a leader is elected). A lease never kept
//!   alive (a Redis key's expiry, a lease its holder let run out) keeps exactly its replicated
//!   deadline, across restarts and leader changes.
//! - The expiry loop and the keep-alives decide under one lock, so a keep-alive never renews a
//!   lease the leader has already decided to end.
//!
//! A deadline here is never later than a renewal this leader answered; a lease ends at most
//! one TTL after the last keep-alive that any leader acknowledged (plus the time an election
//! takes).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cairn_mvcc::LeaseRecord;

/// What a keep-alive answered here came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Renewed for its full TTL.
    Renewed,
    /// Past its deadline (or being ended): the lease is as good as gone.
    Expired,
    /// Never kept alive before: this renewal must go through the log.
    ThroughLog,
}

#[derive(Default)]
struct State {
    /// The term these renewals belong to; renewals of an earlier leadership are void.
    term: u64,
    /// When this member took over as leader in `term` (ms since the Unix epoch).
    leader_since_ms: i64,
    /// Deadlines renewed by this leader, later than the replicated ones.
    deadlines: HashMap<i64, i64>,
    /// Leases whose expiry this leader has proposed: they are not renewed any more.
    ending: HashSet<i64>,
}

impl State {
    /// Starts over when this member leads in a term it has not led in yet.
    fn enter(&mut self, term: u64, now_ms: i64) {
        if self.term != term {
            *self = State { term, leader_since_ms: now_ms, ..State::default() };
        }
    }

    fn deadline(&self, id: i64, record: &LeaseRecord) -> i64 {
        let mut deadline = record.deadline_ms;
        if record.kept_alive {
            deadline = deadline.max(self.leader_since_ms.saturating_add(record.ttl.saturating_mul(1000)));
        }
        if let Some(renewed) = self.deadlines.get(&id) {
            deadline = deadline.max(*renewed);
        }
        deadline
    }
}

/// The leader's in-memory lease deadlines (see the module documentation).
#[derive(Default)]
pub(crate) struct LeaseRenewals {
    state: Mutex<State>,
}

impl LeaseRenewals {
    fn lock(&self, term: u64, now_ms: i64) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().expect("lease renewals lock");
        state.enter(term, now_ms);
        state
    }

    /// Renews lease `id` (stored as `record`) at `now_ms`, for this member leading in `term`.
    pub fn renew(&self, term: u64, id: i64, record: &LeaseRecord, now_ms: i64) -> Renewal {
        let mut state = self.lock(term, now_ms);
        if state.ending.contains(&id) || state.deadline(id, record) <= now_ms {
            return Renewal::Expired;
        }
        if !record.kept_alive {
            return Renewal::ThroughLog;
        }
        state.deadlines.insert(id, now_ms.saturating_add(record.ttl.saturating_mul(1000)));
        Renewal::Renewed
    }

    /// Lease `id`'s deadline as this leader (in `term`) sees it; `None` once it is being ended.
    pub fn deadline(&self, term: u64, id: i64, record: &LeaseRecord, now_ms: i64) -> Option<i64> {
        let state = self.lock(term, now_ms);
        (!state.ending.contains(&id)).then(|| state.deadline(id, record))
    }

    /// Chooses, among `leases` (as stored), up to `max` whose deadline is at or before
    /// `now_ms`. They are not renewed until [`LeaseRenewals::expiry_done`] is called for them.
    pub fn expire(&self, term: u64, leases: &[(i64, LeaseRecord)], now_ms: i64, max: usize) -> Vec<i64> {
        let mut state = self.lock(term, now_ms);
        // A renewed deadline already passed extends nothing any more.
        state.deadlines.retain(|_, deadline| *deadline > now_ms);
        let mut expired = Vec::new();
        for (id, record) in leases {
            if expired.len() == max {
                break;
            }
            if !state.ending.contains(id) && state.deadline(*id, record) <= now_ms {
                expired.push(*id);
            }
        }
        state.ending.extend(expired.iter().copied());
        expired
    }

    /// The expiry of `ids` was applied, or could not be proposed. Those still stored (renewed
    /// through the log meanwhile, or not ended at all) may be renewed and expired again.
    pub fn expiry_done(&self, ids: &[i64]) {
        let mut state = self.state.lock().expect("lease renewals lock");
        for id in ids {
            state.ending.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000;

    fn record(ttl: i64, deadline_ms: i64, kept_alive: bool) -> LeaseRecord {
        LeaseRecord { ttl, deadline_ms, kept_alive }
    }

    #[test]
    fn first_renewal_goes_through_the_log_then_renewals_stay_in_memory() {
        let r = LeaseRenewals::default();
        assert_eq!(r.renew(1, 7, &record(10, T0 + 10_000, false), T0 + 1000), Renewal::ThroughLog);
        let kept = record(10, T0 + 11_000, true);
        assert_eq!(r.renew(1, 7, &kept, T0 + 9000), Renewal::Renewed);
        assert_eq!(r.deadline(1, 7, &kept, T0 + 9000), Some(T0 + 19_000));
        // The replicated deadline has passed, the renewed one has not.
        assert!(r.expire(1, &[(7, kept)], T0 + 15_000, 10).is_empty());
        assert_eq!(r.expire(1, &[(7, kept)], T0 + 19_000, 10), vec![7]);
    }

    #[test]
    fn a_lease_being_ended_is_not_renewed() {
        let r = LeaseRenewals::default();
        let kept = record(5, T0 + 5000, true);
        r.renew(1, 3, &kept, T0);
        assert_eq!(r.expire(1, &[(3, kept)], T0 + 5000, 10), vec![3]);
        assert_eq!(r.renew(1, 3, &kept, T0 + 5001), Renewal::Expired);
        assert_eq!(r.deadline(1, 3, &kept, T0 + 5001), None);
        // Proposed once only, until the proposal is done.
        assert!(r.expire(1, &[(3, kept)], T0 + 6000, 10).is_empty());
        r.expiry_done(&[3]);
        assert_eq!(r.expire(1, &[(3, kept)], T0 + 6000, 10), vec![3]);
        r.expiry_done(&[3]);
        // Renewed through the log meanwhile (the expiry was then skipped at apply): renewable.
        let renewed = record(5, T0 + 11_000, true);
        assert_eq!(r.renew(1, 3, &renewed, T0 + 6500), Renewal::Renewed);
        assert_eq!(r.deadline(1, 3, &renewed, T0 + 6500), Some(T0 + 11_500));
    }

    #[test]
    fn a_new_leader_gives_kept_alive_leases_their_full_ttl_and_others_their_deadline() {
        let r = LeaseRenewals::default();
        let kept = record(10, T0 + 10_000, true);
        let plain = record(10, T0 + 10_000, false);
        r.renew(1, 1, &kept, T0 + 9000);
        // Leadership moves away and comes back in term 3 at T0 + 30 s: term 1's renewals are
        // void, the kept-alive lease lives 10 s from the takeover, the other is past its deadline.
        let leases = [(1, kept), (2, plain)];
        assert_eq!(r.expire(3, &leases, T0 + 30_000, 10), vec![2]);
        assert_eq!(r.deadline(3, 1, &kept, T0 + 30_000), Some(T0 + 40_000));
        assert_eq!(r.expire(3, &leases, T0 + 40_000, 10), vec![1]);
    }

    #[test]
    fn at_most_max_per_call_and_forgets_passed_deadlines() {
        let r = LeaseRenewals::default();
        let leases: Vec<_> = (1..=5).map(|id| (id, record(1, T0, false))).collect();
        assert_eq!(r.expire(1, &leases, T0 + 5000, 2), vec![1, 2]);
        assert_eq!(r.expire(1, &leases, T0 + 5000, 2), vec![3, 4]);
        assert_eq!(r.expire(1, &leases, T0 + 5000, 2), vec![5]);
        let kept = record(1, T0 + 1000, true);
        assert_eq!(r.renew(1, 9, &kept, T0 + 5000), Renewal::Renewed);
        assert_eq!(r.state.lock().unwrap().deadlines.len(), 1);
        r.expire(1, &[], T0 + 6000, 2);
        assert!(r.state.lock().unwrap().deadlines.is_empty());
    }
}
