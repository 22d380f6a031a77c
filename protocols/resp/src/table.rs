//! The command table: every command Cairn serves, with Redis 7's arity, flags and key positions.
//!
//! The dispatcher checks arity here (Redis's `wrong number of arguments` error comes before the
//! command runs), COMMAND describes the commands from it (redis-cli and client libraries read
//! it), and MULTI/EXEC uses the key positions to read every key of a block at one revision.

/// One command as COMMAND INFO shows it.
pub struct Spec {
    pub name: &'static str,
    /// Exact argument count including the name, or at least -arity when negative.
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub acl: &'static [&'static str],
}

const W: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const C: &[&str] = &["noscript", "loading", "stale", "fast"];
const STR_R: &[&str] = &["@read", "@string", "@fast"];
const KS_W: &[&str] = &["@keyspace", "@write", "@fast"];
const KS_R: &[&str] = &["@keyspace", "@read", "@fast"];
const CONN: &[&str] = &["@fast", "@connection"];

macro_rules! spec {
    ($name:expr, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $acl:expr) => {
        Spec { name: $name, arity: $arity, flags: $flags, first_key: $first, last_key: $last, step: $step, acl: $acl }
    };
}

pub static COMMANDS: &[Spec] = &[
    spec!("ping", -1, &["fast", "sentinel"], 0, 0, 0, CONN),
    spec!("echo", 2, &["fast"], 0, 0, 0, CONN),
    spec!("hello", -1, &["noscript", "loading", "stale", "fast", "no_auth", "sentinel", "allow_busy"], 0, 0, 0, CONN),
    spec!("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth", "sentinel", "allow_busy"], 0, 0, 0, CONN),
    spec!("select", 2, C, 0, 0, 0, CONN),
    spec!("quit", -1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], 0, 0, 0, CONN),
    spec!("reset", 1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], 0, 0, 0, CONN),
    spec!("command", -1, &["loading", "stale", "sentinel"], 0, 0, 0, &["@slow", "@connection"]),
    spec!("acl", -2, &["noscript", "loading", "stale"], 0, 0, 0, &["@slow"]),
    spec!("client", -2, &["sentinel"], 0, 0, 0, &["@slow"]),
    spec!("info", -1, &["loading", "stale", "sentinel"], 0, 0, 0, &["@slow", "@dangerous"]),
    spec!("dbsize", 1, R, 0, 0, 0, &["@keyspace", "@read", "@fast"]),
    spec!("get", 2, R, 1, 1, 1, STR_R),
    spec!("set", -3, W, 1, 1, 1, &["@write", "@string", "@slow"]),
    spec!("setnx", 3, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("setex", 4, W, 1, 1, 1, &["@write", "@string", "@slow"]),
    spec!("psetex", 4, W, 1, 1, 1, &["@write", "@string", "@slow"]),
    spec!("getset", 3, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("getdel", 2, &["write", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("getex", -2, &["write", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("mget", -2, R, 1, -1, 1, STR_R),
    spec!("mset", -3, W, 1, -1, 2, &["@write", "@string", "@slow"]),
    spec!("msetnx", -3, W, 1, -1, 2, &["@write", "@string", "@slow"]),
    spec!("del", -2, &["write"], 1, -1, 1, &["@keyspace", "@write", "@slow"]),
    spec!("unlink", -2, &["write", "fast"], 1, -1, 1, KS_W),
    spec!("exists", -2, R, 1, -1, 1, KS_R),
    spec!("incr", 2, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("decr", 2, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("incrby", 3, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("decrby", 3, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("append", 3, &["write", "denyoom", "fast"], 1, 1, 1, &["@write", "@string", "@fast"]),
    spec!("strlen", 2, R, 1, 1, 1, STR_R),
    spec!("expire", -3, &["write", "fast"], 1, 1, 1, KS_W),
    spec!("pexpire", -3, &["write", "fast"], 1, 1, 1, KS_W),
    spec!("expireat", -3, &["write", "fast"], 1, 1, 1, KS_W),
    spec!("pexpireat", -3, &["write", "fast"], 1, 1, 1, KS_W),
    spec!("ttl", 2, R, 1, 1, 1, KS_R),
    spec!("pttl", 2, R, 1, 1, 1, KS_R),
    spec!("persist", 2, &["write", "fast"], 1, 1, 1, KS_W),
    spec!("type", 2, R, 1, 1, 1, KS_R),
    spec!("keys", 2, &["readonly"], 0, 0, 0, &["@keyspace", "@read", "@slow", "@dangerous"]),
    spec!("scan", -2, &["readonly"], 0, 0, 0, &["@keyspace", "@read", "@slow"]),
    spec!("watch", -2, &["noscript", "loading", "stale", "fast", "allow_busy"], 1, -1, 1, &["@fast", "@transaction"]),
    spec!("unwatch", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], 0, 0, 0, &["@fast", "@transaction"]),
    spec!("multi", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], 0, 0, 0, &["@fast", "@transaction"]),
    spec!("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], 0, 0, 0, &["@slow", "@transaction"]),
    spec!("discard", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], 0, 0, 0, &["@fast", "@transaction"]),
    spec!("subscribe", -2, &["pubsub", "noscript", "loading", "stale"], 0, 0, 0, &["@pubsub", "@slow"]),
    spec!("psubscribe", -2, &["pubsub", "noscript", "loading", "stale"], 0, 0, 0, &["@pubsub", "@slow"]),
    spec!("unsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], 0, 0, 0, &["@pubsub", "@slow"]),
    spec!("punsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], 0, 0, 0, &["@pubsub", "@slow"]),
    spec!("cairn.consistency", -1, &["fast"], 0, 0, 0, CONN),
];

/// The spec of `name` (lower case).
pub fn lookup(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity >= 0 { argc == self.arity } else { argc >= -self.arity }
    }

    /// The keys among `args` (the name at 0), from the key positions.
    pub fn keys<'a>(&self, args: &'a [bytes::Bytes]) -> Vec<&'a [u8]> {
        if self.first_key <= 0 {
            return Vec::new();
        }
        let last = if self.last_key < 0 { args.len() as i64 + self.last_key } else { self.last_key };
        let mut out = Vec::new();
        let mut i = self.first_key;
        while i <= last && (i as usize) < args.len() {
            out.push(&args[i as usize][..]);
            i += self.step.max(1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(COMMANDS[i + 1..].iter().all(|o| o.name != s.name), "{}", s.name);
        }
    }

    #[test]
    fn key_positions_pick_the_keys() {
        let args: Vec<bytes::Bytes> = ["mset", "a", "1", "b", "2"].iter().map(|s| bytes::Bytes::from_static(s.as_bytes())).collect();
        assert_eq!(lookup("mset").unwrap().keys(&args), vec![&b"a"[..], b"b"]);
        assert!(lookup("get").unwrap().arity_ok(2) && !lookup("get").unwrap().arity_ok(3));
        assert!(lookup("set").unwrap().arity_ok(5) && !lookup("set").unwrap().arity_ok(2));
    }
}
