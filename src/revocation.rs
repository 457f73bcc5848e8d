//! Revocation that reaches connections opened before an update.
//!
//! A host may keep an older configuration alive for the connections opened
//! before it was replaced (Envoy drains a replaced listener filter chain for
//! up to `--drain-time-s`; plain LDS and Envoy Gateway deliver the filter
//! this way). Every configuration of one filter (one plugin name) in a VM
//! publishes the digests of its `revoked` keys here when it is accepted, and
//! withdraws them when its root context goes away; a request whose key one
//! configuration holds as valid is refused when any live configuration of
//! the same plugin name revokes it. Filters with another plugin name have
//! their own set and are never affected.
//!
//! The per-request cost is one check of an empty slice, or a binary search
//! of the (few) revoked digests; nothing is asked of the host.

use crate::policy::{prefix64, Policy};
use std::cell::RefCell;
use std::rc::Rc;

/// The revoked digests of every live configuration of one plugin name.
#[derive(Debug, Default)]
pub struct Revocations {
    /// `(root context id, its revoked digests)`.
    live: Vec<(u32, Box<[[u8; 32]]>)>,
    /// The union of all of them, deduplicated, with their first 8 bytes
    /// (the search key: one integer comparison per step), sorted.
    union: Box<[(u64, [u8; 32])]>,
}

impl Revocations {
    /// A configuration of root context `root` was accepted: its revoked
    /// digests replace what that context published before.
    pub fn publish(&mut self, root: u32, digests: Box<[[u8; 32]]>) {
        self.live.retain(|(r, _)| *r != root);
        self.live.push((root, digests));
        self.rebuild();
    }

    /// Root context `root` is gone (its connections drained).
    pub fn withdraw(&mut self, root: u32) {
        let before = self.live.len();
        self.live.retain(|(r, _)| *r != root);
        if self.live.len() != before {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let mut all: Vec<(u64, [u8; 32])> = self
            .live
            .iter()
            .flat_map(|(_, d)| d.iter().map(|d| (prefix64(d), *d)))
            .collect();
        all.sort_unstable();
        all.dedup();
        self.union = all.into();
    }

    /// Whether some live configuration revokes the key with this digest.
    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        if self.union.is_empty() {
            return false;
        }
        let head = prefix64(digest);
        let start = self.union.partition_point(|(p, _)| *p < head);
        self.union
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|(p, _)| *p == head)
            .any(|(_, d)| d == digest)
    }

    /// How many live configurations have published.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// How many distinct digests are revoked.
    pub fn len(&self) -> usize {
        self.union.len()
    }

    pub fn is_empty(&self) -> bool {
        self.union.is_empty()
    }
}

/// One shared [`Revocations`] per plugin name, for the VM.
#[derive(Debug, Default)]
pub struct Registry {
    by_name: Vec<(Box<[u8]>, Shared)>,
}

/// A plugin name's revocations, shared by its root contexts and requests.
pub type Shared = Rc<RefCell<Revocations>>;

impl Registry {
    /// The revocations of plugin `name`, created on first use.
    pub fn join(&mut self, name: &[u8]) -> Shared {
        if let Some((_, shared)) = self.by_name.iter().find(|(n, _)| **n == *name) {
            return Rc::clone(shared);
        }
        let shared = Shared::default();
        self.by_name.push((name.into(), Rc::clone(&shared)));
        shared
    }
}

/// The digests of the keys `policy` marks `revoked`.
pub fn revoked_digests(policy: &Policy) -> Box<[[u8; 32]]> {
    policy
        .by_digest
        .iter()
        .filter(|(_, _, index)| policy.keys.get(*index as usize).is_some_and(|k| k.revoked))
        .map(|(_, digest, _)| *digest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn union_follows_live_configurations() {
        let mut r = Revocations::default();
        assert!(!r.contains(&d(1)));
        r.publish(1, [d(1)].into());
        r.publish(2, [d(2), d(1)].into());
        assert!(r.contains(&d(1)) && r.contains(&d(2)) && !r.contains(&d(3)));
        assert_eq!((r.live(), r.len()), (2, 2));
        // A later configuration that un-revokes d(1) and d(2): the older
        // ones still revoke them until they are gone.
        r.publish(3, [].into());
        assert!(r.contains(&d(1)) && r.contains(&d(2)));
        r.withdraw(1);
        assert!(r.contains(&d(1)), "root 2 still revokes it");
        r.withdraw(2);
        assert!(!r.contains(&d(1)) && !r.contains(&d(2)));
        assert_eq!((r.live(), r.len()), (1, 0));
        // Reconfiguring a root replaces what it published.
        r.publish(3, [d(7)].into());
        r.publish(3, [d(8)].into());
        assert!(!r.contains(&d(7)) && r.contains(&d(8)));
        r.withdraw(99);
        assert!(r.contains(&d(8)));
    }

    #[test]
    fn digests_sharing_their_first_bytes() {
        let mut a = [5u8; 32];
        let mut b = [5u8; 32];
        a[31] = 1;
        b[31] = 2;
        let mut c = b;
        c[31] = 3;
        let mut r = Revocations::default();
        r.publish(1, [b, d(9), d(0)].into());
        assert!(r.contains(&b) && r.contains(&d(9)) && r.contains(&d(0)));
        assert!(!r.contains(&a) && !r.contains(&c) && !r.contains(&d(4)));
        r.publish(2, [a, b].into());
        assert!(r.contains(&a) && r.contains(&b) && !r.contains(&c));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn plugin_names_are_separate() {
        let mut registry = Registry::default();
        let a = registry.join(b"auth-a");
        let b = registry.join(b"auth-b");
        assert!(Rc::ptr_eq(&a, &registry.join(b"auth-a")));
        a.borrow_mut().publish(1, [d(1)].into());
        assert!(a.borrow().contains(&d(1)));
        assert!(!b.borrow().contains(&d(1)));
    }

    #[test]
    fn digests_of_revoked_keys() {
        use sha2::Digest;
        let digest = |v: &str| -> [u8; 32] { sha2::Sha256::digest(v.as_bytes()).into() };
        let key = |id: &str, value: &str, revoked: bool| {
            serde_json::json!({
                "id": id,
                "sha256": crate::config::hex(&digest(value)),
                "revoked": revoked,
            })
        };
        let config = serde_json::json!({
            "keys": [key("a", "alpha", false), key("b", "beta", true), key("c", "gamma", true)],
        });
        let policy = crate::config::compile(config.to_string().as_bytes()).unwrap();
        let mut got = revoked_digests(&policy).into_vec();
        got.sort_unstable();
        let mut want: Vec<[u8; 32]> = ["beta", "gamma"].map(digest).to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
