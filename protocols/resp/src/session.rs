//! One client connection: its state (protocol version, name, MULTI queue, WATCHed keys,
//! subscriptions) and the dispatch of each command.
//!
//! Connection-level commands (PING, HELLO, CLIENT, MULTI, SUBSCRIBE, ...) are answered here;
//! data commands run in a [`Tx`], retried while a key they read changes under them. The order
//! of checks follows Redis: unknown command, arity, MULTI queueing, subscribe-mode limits.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cairn_api::{Auth, Credentials, Kv, Lease, Maintenance, PermType, RangeRequest, ReadConsistency, StoreError, StoreResult, Watch};

use crate::errors::{self, store_error, unknown_command, unknown_subcommand, wrong_arity};
use crate::pubsub::{Outbox, Subscriptions};
use crate::reply::Reply;
use crate::request::string2ll;
use crate::table::{self, Spec};
use crate::tx::{Commit, Tx};
use crate::batch::{is_data, run_data, Job};
use crate::{scan, Shared};

/// Attempts of an EXEC whose reads keep changing under it before giving up.
const MAX_ATTEMPTS: usize = 64;
/// Most commands (and most keys) of a pipeline run as one txn.
const MAX_GROUP: usize = 64;

/// The Redis version Cairn reports: the command set and replies it follows.
pub const REDIS_VERSION: &str = "7.0.0";

pub struct Session<S> {
    shared: Arc<Shared<S>>,
    pub id: u64,
    pub proto: u8,
    name: Option<Bytes>,
    consistency: ReadConsistency,
    multi: Option<Vec<Vec<Bytes>>>,
    multi_failed: bool,
    watched: Vec<(Vec<u8>, i64)>,
    subs: Subscriptions,
    outbox: Outbox,
    pub closing: bool,
    peer: String,
    local: String,
    /// The Subject CN of the client certificate verified in this connection's TLS handshake
    /// (a `rediss://` listener with --client-cert-auth), set by the listener; `None` on
    /// plaintext connections and without a client certificate. As in etcd, it names the user
    /// when authentication is on.
    pub cert_user: Option<String>,
    started: Instant,
    /// The store acting for this connection's client (see `cairn_api::Auth`): set by AUTH or
    /// HELLO AUTH, else made on first use from what the connection presented.
    caller: Option<S>,
}

/// Redis's answers for auth: not logged in, bad credentials, not allowed.
const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOPERM: &str = "NOPERM this user has no permissions to access one of the keys used as arguments";

impl<S: Kv + Lease + Watch + Maintenance + Auth> Session<S> {
    pub fn new(shared: Arc<Shared<S>>, outbox: Outbox, peer: String, local: String) -> Self {
        let id = shared.next_client_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Session {
            shared,
            id,
            proto: 2,
            name: None,
            consistency: ReadConsistency::Linearizable,
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
            subs: Subscriptions::default(),
            outbox,
            closing: false,
            peer,
            local,
            cert_user: None,
            started: Instant::now(),
            caller: None,
        }
    }

    /// What the connection itself says of its client before any AUTH: the verified TLS client
    /// certificate's common name (with `--client-cert-auth`), else nothing.
    fn connection_credentials(&self) -> Credentials {
        match &self.cert_user {
            Some(cn) => Credentials::CertificateName(cn.clone()),
            None => Credentials::None,
        }
    }

    /// The store acting for this connection's client.
    async fn caller(&mut self) -> StoreResult<S> {
        if let Some(c) = &self.caller {
            return Ok(c.clone());
        }
        let c = self.shared.store.for_caller(self.connection_credentials()).await?;
        self.caller = Some(c.clone());
        Ok(c)
    }

    /// NOAUTH when auth is enabled and this connection has not logged in (commands flagged
    /// `no_auth`, such as AUTH and HELLO, are always allowed).
    async fn auth_refusal(&mut self, spec: &Spec) -> Option<Reply> {
        if spec.flags.contains(&"no_auth") || !self.shared.store.auth_enabled() {
            return None;
        }
        match self.caller().await {
            Ok(c) if c.caller_name().is_some() => None,
            _ => Some(Reply::err(NOAUTH)),
        }
    }

    /// NOPERM when the client may not touch every key of a data command (WRITE for writing
    /// commands, READ for the others), checked before the command joins a group commit.
    async fn key_refusal(&mut self, name: &str, args: &[Bytes]) -> Option<Reply> {
        if !is_data(name) || !self.shared.store.auth_enabled() {
            return None;
        }
        let spec = table::lookup(name)?;
        let need = if spec.flags.contains(&"write") { PermType::Write } else { PermType::Read };
        let caller = match self.caller().await {
            Ok(c) => c,
            Err(e) => return Some(store_error(&e)),
        };
        for key in spec.keys(args) {
            if caller.check_access(key, &[], need).is_err() {
                tracing::warn!(user = caller.caller_name().unwrap_or_default(), command = name, "RESP command refused: no permission");
                return Some(Reply::err(NOPERM));
            }
        }
        None
    }

    /// AUTH [user] password (and HELLO's AUTH option): logs the connection in as a Cairn user.
    async fn auth(&mut self, user: &[u8], password: &[u8], legacy: bool) -> Reply {
        if !self.shared.store.auth_enabled() && user == b"default" {
            return if legacy {
                Reply::err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
            } else {
                Reply::ok()
            };
        }
        let credentials = Credentials::Password {
            name: String::from_utf8_lossy(user).into_owned(),
            password: String::from_utf8_lossy(password).into_owned(),
        };
        match self.shared.store.for_caller(credentials).await {
            Ok(c) => {
                self.caller = Some(c);
                Reply::ok()
            }
            Err(StoreError::AuthFailed) => Reply::err(WRONGPASS),
            Err(e) => store_error(&e),
        }
    }

    /// Runs one command; its replies (several for SUBSCRIBE with several channels).
    pub async fn handle(&mut self, args: Vec<Bytes>) -> Vec<Reply> {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let spec = table::lookup(&name);
        if let Some(s) = spec.filter(|s| s.arity_ok(args.len())) {
            if let Some(refused) = self.auth_refusal(s).await {
                return vec![refused];
            }
            if self.multi.is_some() && !matches!(name.as_str(), "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
                if let Some(refused) = self.key_refusal(&name, &args).await {
                    self.multi_failed = true;
                    return vec![refused];
                }
            }
        }
        if self.multi.is_some() && !matches!(name.as_str(), "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
            return vec![match spec {
                None => {
                    self.multi_failed = true;
                    unknown_command(&args)
                }
                Some(s) if !s.arity_ok(args.len()) => {
                    self.multi_failed = true;
                    wrong_arity(&name)
                }
                Some(_) => {
                    if let Some(q) = self.multi.as_mut() {
                        q.push(args);
                    }
                    Reply::Simple("QUEUED".into())
                }
            }];
        }
        let Some(spec) = spec else { return vec![unknown_command(&args)] };
        if !spec.arity_ok(args.len()) {
            // As in Redis, a rejected command inside MULTI dooms the transaction; a rejected
            // EXEC discards it at once.
            if self.multi.is_some() && name == "exec" {
                self.multi = None;
                self.multi_failed = false;
                self.watched.clear();
                return vec![Reply::err(format!(
                    "EXECABORT Transaction discarded because of: wrong number of arguments for '{name}' command"
                ))];
            }
            if self.multi.is_some() {
                self.multi_failed = true;
            }
            return vec![wrong_arity(&name)];
        }
        if self.proto == 2
            && self.subs.count() > 0
            && !matches!(name.as_str(), "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" | "quit" | "reset")
        {
            return vec![Reply::err(format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ))];
        }
        match name.as_str() {
            "subscribe" | "psubscribe" => self.subscribe(&name, &args[1..]).await,
            "unsubscribe" | "punsubscribe" => self.unsubscribe(&name, &args[1..]),
            "exec" => vec![self.exec().await],
            _ => vec![self.command(spec, &name, &args).await],
        }
    }

    /// Runs every command of a pipeline, encoding each reply into `out` in the protocol in
    /// force when it was answered. Consecutive data commands are run as one [`Tx`] (one Raft
    /// entry instead of one each): the group still takes effect atomically and in order, so each
    /// command's effect lies between its request and its reply, as linearizability asks.
    pub async fn handle_pipeline(&mut self, cmds: Vec<Vec<Bytes>>, out: &mut bytes::BytesMut) {
        let mut i = 0;
        while i < cmds.len() && !self.closing {
            let mut j = i;
            let mut keys = 0;
            while j < cmds.len() && j - i < MAX_GROUP {
                match self.groupable(&cmds[j]) {
                    Some(k) if keys + k <= MAX_GROUP => keys += k,
                    _ => break,
                }
                j += 1;
            }
            let started = std::time::Instant::now();
            if j - i >= 2 {
                let replies = self.group(&cmds[i..j]).await;
                for (cmd, r) in cmds[i..j].iter().zip(&replies) {
                    record(cmd, std::slice::from_ref(r), started);
                    crate::reply::encode(out, r, self.proto);
                }
                i = j;
            } else {
                let replies = self.handle(cmds[i].clone()).await;
                record(&cmds[i], &replies, started);
                for r in replies {
                    crate::reply::encode(out, &r, self.proto);
                }
                i += 1;
            }
        }
    }

    /// How many keys `args` touches, when it may join a group of data commands.
    fn groupable(&self, args: &[Bytes]) -> Option<usize> {
        // With auth on, each command is checked on its own path (handle).
        if self.multi.is_some() || (self.proto == 2 && self.subs.count() > 0) || self.shared.store.auth_enabled() {
            return None;
        }
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let spec = table::lookup(&name)?;
        (is_data(&name) && spec.arity_ok(args.len())).then(|| spec.keys(args).len().max(1))
    }

    /// Data commands as one job of the group commit ([`crate::batch`]).
    async fn group(&mut self, cmds: &[Vec<Bytes>]) -> Vec<Reply> {
        self.submit(cmds.to_vec()).await
    }

    async fn submit(&self, cmds: Vec<Vec<Bytes>>) -> Vec<Reply> {
        let n = cmds.len();
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = Job { cmds, consistency: self.consistency, done };
        if self.shared.batcher.send(job).is_err() {
            return vec![store_error(&StoreError::Stopped); n];
        }
        answer.await.unwrap_or_else(|_| vec![store_error(&StoreError::Stopped); n])
    }

    async fn command(&mut self, spec: &Spec, name: &str, args: &[Bytes]) -> Reply {
        let _ = spec;
        if is_data(name) {
            if let Some(refused) = self.key_refusal(name, args).await {
                return refused;
            }
            return self.data(name, args).await;
        }
        let store = match self.caller().await {
            Ok(s) => s,
            Err(e) => return store_error(&e),
        };
        let result: StoreResult<Reply> = match name {
            "ping" => Ok(match args.get(1) {
                _ if args.len() > 2 => wrong_arity("ping"),
                arg if self.proto == 2 && self.subs.count() > 0 => {
                    Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(arg.cloned().unwrap_or_default())])
                }
                Some(arg) => Reply::Bulk(arg.clone()),
                None => Reply::Simple("PONG".into()),
            }),
            "echo" => Ok(Reply::Bulk(args[1].clone())),
            "quit" => {
                self.closing = true;
                Ok(Reply::ok())
            }
            "reset" => {
                self.reset();
                Ok(Reply::Simple("RESET".into()))
            }
            "select" => Ok(match string2ll(&args[1]) {
                None => Reply::err(errors::NOT_INTEGER),
                Some(0) => Reply::ok(),
                Some(_) => Reply::err(errors::DB_OUT_OF_RANGE),
            }),
            "auth" => Ok(match args.len() {
                2 => self.auth(b"default", &args[1], true).await,
                3 => self.auth(&args[1], &args[2], false).await,
                _ => Reply::err(errors::SYNTAX),
            }),
            "acl" => Ok(match args[1].to_ascii_lowercase().as_slice() {
                b"whoami" if args.len() == 2 => Reply::bulk(store.caller_name().unwrap_or_else(|| "default".into())),
                b"whoami" => wrong_arity("acl|whoami"),
                _ => unknown_subcommand(&args[1], "acl"),
            }),
            "hello" => Ok(self.hello(args).await),
            "client" => Ok(self.client(args)),
            "command" => Ok(crate::server::command(args)),
            "info" => crate::server::info(self, &store, args).await,
            "dbsize" => scan::dbsize(&store, self.consistency).await,
            "keys" => scan::keys(&store, self.consistency, &args[1]).await,
            "scan" => scan::scan(&store, self.consistency, &self.shared.cursors, args).await,
            "watch" => self.watch(&args[1..]).await,
            "unwatch" => {
                self.watched.clear();
                Ok(Reply::ok())
            }
            "multi" => Ok(if self.multi.is_some() {
                Reply::err("ERR MULTI calls can not be nested")
            } else {
                self.multi = Some(Vec::new());
                self.multi_failed = false;
                Reply::ok()
            }),
            "discard" => Ok(if self.multi.take().is_some() {
                self.watched.clear();
                Reply::ok()
            } else {
                Reply::err("ERR DISCARD without MULTI")
            }),
            "cairn.consistency" => Ok(match args.get(1).map(|a| a.to_ascii_lowercase()) {
                None => Reply::bulk(match self.consistency {
                    ReadConsistency::Linearizable => "linearizable",
                    ReadConsistency::Serializable => "serializable",
                }),
                Some(a) if a == b"linearizable" => {
                    self.consistency = ReadConsistency::Linearizable;
                    Reply::ok()
                }
                Some(a) if a == b"serializable" => {
                    self.consistency = ReadConsistency::Serializable;
                    Reply::ok()
                }
                Some(_) => Reply::err(errors::SYNTAX),
            }),
            _ => Ok(unknown_command(args)),
        };
        result.unwrap_or_else(|e| store_error(&e))
    }

    fn reset(&mut self) {
        self.multi = None;
        self.multi_failed = false;
        self.watched.clear();
        self.subs.clear();
        self.proto = 2;
        self.name = None;
        self.consistency = ReadConsistency::Linearizable;
        self.caller = None;
    }

    /// One data command, through the group commit.
    async fn data(&mut self, _name: &str, args: &[Bytes]) -> Reply {
        self.submit(vec![args.to_vec()]).await.pop().unwrap_or_else(|| store_error(&StoreError::Stopped))
    }

    async fn watch(&mut self, keys: &[Bytes]) -> StoreResult<Reply> {
        if self.multi.is_some() {
            return Ok(Reply::err("ERR WATCH inside MULTI is not allowed"));
        }
        let store = self.caller().await?;
        for k in keys {
            let resp = store
                .range(RangeRequest { key: k.to_vec(), consistency: ReadConsistency::Linearizable, ..Default::default() })
                .await?;
            let rev = resp.kvs.first().map_or(0, |kv| kv.mod_revision);
            self.watched.push((k.to_vec(), rev));
        }
        Ok(Reply::ok())
    }

    /// EXEC: the queued commands as one txn guarded by the WATCHed keys' mod_revisions.
    async fn exec(&mut self) -> Reply {
        let Some(queue) = self.multi.take() else { return Reply::err("ERR EXEC without MULTI") };
        let watched = std::mem::take(&mut self.watched);
        if std::mem::take(&mut self.multi_failed) {
            return Reply::err("EXECABORT Transaction discarded because of previous errors.");
        }
        let shared = self.shared.clone();
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let mut tx = Tx::new(&shared.store, self.consistency, shared.config.max_txn_ops);
            for (k, rev) in &watched {
                tx.guard(k.clone(), *rev);
            }
            // Every key of the block read at one revision, so a read-only block is a snapshot.
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for args in &queue {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                if let (true, Some(spec)) = (is_data(&name), table::lookup(&name)) {
                    keys.extend(spec.keys(args).into_iter().map(<[u8]>::to_vec));
                }
            }
            if let Err(e) = tx.prefetch(&keys).await {
                tx.abort().await;
                return store_error(&e);
            }
            let mut replies = Vec::with_capacity(queue.len());
            for args in &queue {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                if is_data(&name) {
                    match run_data(&mut tx, &name, args).await {
                        Ok(r) => replies.push(r),
                        Err(e) => {
                            tx.abort().await;
                            return store_error(&e);
                        }
                    }
                } else {
                    let mut r = Box::pin(self.handle(args.clone())).await;
                    replies.push(if r.len() == 1 { r.remove(0) } else { Reply::Array(r) });
                }
            }
            match tx.commit().await {
                Ok(Commit::Done) => return Reply::Array(replies),
                Ok(Commit::Conflict) => {
                    // A WATCHed key changed: EXEC fails. Any other key read: run the block again.
                    for (k, rev) in &watched {
                        let now = shared
                            .store
                            .range(RangeRequest { key: k.clone(), ..Default::default() })
                            .await
                            .map(|r| r.kvs.first().map_or(0, |kv| kv.mod_revision));
                        match now {
                            Ok(now) if now != *rev => return Reply::NilArray,
                            Ok(_) => {}
                            Err(e) => return store_error(&e),
                        }
                    }
                    continue 'attempt;
                }
                Err(e) => return store_error(&e),
            }
        }
        store_error(&StoreError::Timeout)
    }

    async fn subscribe(&mut self, name: &str, channels: &[Bytes]) -> Vec<Reply> {
        let mut out = Vec::new();
        let store = match self.caller().await {
            Ok(s) => s,
            Err(e) => return vec![store_error(&e)],
        };
        for ch in channels {
            let res = if name == "subscribe" {
                self.subs.subscribe(&store, ch.clone(), self.outbox.clone()).await
            } else {
                self.subs.psubscribe(&store, ch.clone(), self.outbox.clone()).await
            };
            if let Err(e) = res {
                out.push(store_error(&e));
                continue;
            }
            out.push(self.push(vec![Reply::bulk(name), Reply::Bulk(ch.clone()), Reply::Int(self.subs.count() as i64)]));
        }
        out
    }

    fn unsubscribe(&mut self, name: &str, channels: &[Bytes]) -> Vec<Reply> {
        let pattern = name == "punsubscribe";
        let targets: Vec<Bytes> = if channels.is_empty() {
            if pattern { self.subs.patterns() } else { self.subs.channels() }
        } else {
            channels.to_vec()
        };
        if targets.is_empty() {
            return vec![self.push(vec![Reply::bulk(name), Reply::Nil, Reply::Int(self.subs.count() as i64)])];
        }
        let mut out = Vec::new();
        for ch in targets {
            if pattern {
                self.subs.punsubscribe(&ch);
            } else {
                self.subs.unsubscribe(&ch);
            }
            out.push(self.push(vec![Reply::bulk(name), Reply::Bulk(ch), Reply::Int(self.subs.count() as i64)]));
        }
        out
    }

    /// A pub/sub frame: a push in RESP3, an array in RESP2.
    fn push(&self, items: Vec<Reply>) -> Reply {
        if self.proto >= 3 { Reply::Push(items) } else { Reply::Array(items) }
    }

    async fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut proto = self.proto;
        let mut i = 1;
        if let Some(v) = args.get(1) {
            match string2ll(v) {
                Some(p) if p == 2 || p == 3 => proto = p as u8,
                Some(_) => return Reply::err("NOPROTO unsupported protocol version"),
                None => return Reply::err("ERR Protocol version is not an integer or out of range"),
            }
            i = 2;
        }
        let mut name = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            match args[i].to_ascii_uppercase().as_slice() {
                b"AUTH" if more >= 2 => {
                    let answer = self.auth(&args[i + 1].clone(), &args[i + 2].clone(), false).await;
                    if matches!(answer, Reply::Error(_)) {
                        return answer;
                    }
                    i += 3;
                }
                b"SETNAME" if more >= 1 => {
                    if let Err(r) = check_client_name(&args[i + 1]) {
                        return r;
                    }
                    name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => return Reply::err(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&args[i]))),
            }
        }
        if let Some(n) = name {
            self.name = Some(n);
        }
        self.proto = proto;
        Reply::Map(vec![
            (Reply::bulk("server"), Reply::bulk("redis")),
            (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
            (Reply::bulk("proto"), Reply::Int(i64::from(proto))),
            (Reply::bulk("id"), Reply::Int(self.id as i64)),
            (Reply::bulk("mode"), Reply::bulk("standalone")),
            (Reply::bulk("role"), Reply::bulk("master")),
            (Reply::bulk("modules"), Reply::Array(vec![])),
        ])
    }

    /// CLIENT INFO's line for this connection.
    pub fn client_line(&self) -> String {
        let name = self.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
        let multi = self.multi.as_ref().map_or(-1, |q| q.len() as i64);
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle=0 flags={} db=0 sub={} psub={} ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={}\n",
            self.id,
            self.peer,
            self.local,
            name,
            self.started.elapsed().as_secs(),
            if self.multi.is_some() { "x" } else if self.subs.count() > 0 { "P" } else { "N" },
            self.subs.channels().len(),
            self.subs.patterns().len(),
            multi,
            self.proto
        )
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let sub = args[1].to_ascii_lowercase();
        let arity = |n: usize| -> Option<Reply> {
            (args.len() != n).then(|| Reply::err(format!("ERR wrong number of arguments for 'client|{}' command", String::from_utf8_lossy(&sub))))
        };
        match sub.as_slice() {
            b"setname" => arity(3).unwrap_or_else(|| match check_client_name(&args[2]) {
                Ok(()) => {
                    self.name = (!args[2].is_empty()).then(|| args[2].clone());
                    Reply::ok()
                }
                Err(r) => r,
            }),
            b"getname" => arity(2).unwrap_or_else(|| self.name.clone().map_or(Reply::Nil, Reply::Bulk)),
            b"id" => arity(2).unwrap_or(Reply::Int(self.id as i64)),
            b"info" => arity(2).unwrap_or_else(|| Reply::Verbatim(self.client_line())),
            _ => unknown_subcommand(&args[1], "client"),
        }
    }

    pub fn consistency(&self) -> ReadConsistency {
        self.consistency
    }

    pub fn shared(&self) -> &Shared<S> {
        &self.shared
    }
}

fn check_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Reply::err("ERR Client names cannot contain spaces, newlines or special characters."));
    }
    Ok(())
}

/// Counts one command in `cairn_requests_total` and `cairn_request_duration_seconds` (the
/// server's exporter describes them), by its name when Cairn knows the command.
fn record(args: &[Bytes], replies: &[Reply], started: std::time::Instant) {
    let name = args.first().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
    let command = if table::lookup(&name).is_some() { name } else { "unknown".to_string() };
    let result = if replies.iter().any(|r| matches!(r, Reply::Error(_))) { "error" } else { "ok" };
    metrics::counter!("cairn_requests_total", "protocol" => "resp", "command" => command.clone(), "result" => result).increment(1);
    metrics::histogram!("cairn_request_duration_seconds", "protocol" => "resp", "command" => command)
        .record(started.elapsed().as_secs_f64());
}
