//! Server introspection: COMMAND (what redis-cli and client libraries ask at start) and INFO
//! (server, clients, replication as the Raft role, keyspace).

use bytes::Bytes;
use cairn_api::{Kv, Lease, Maintenance, RangeRequest, StoreResult, Watch};

use crate::errors::unknown_subcommand;
use crate::reply::Reply;
use crate::session::{Session, REDIS_VERSION};
use crate::table::{self, Spec};

fn strings(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|s| Reply::Simple((*s).into())).collect())
}

fn entry(s: &Spec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(s.name),
        Reply::Int(s.arity),
        strings(s.flags),
        Reply::Int(s.first_key),
        Reply::Int(s.last_key),
        Reply::Int(s.step),
        strings(s.acl),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

/// COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND LIST.
pub fn command(args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(table::COMMANDS.iter().map(entry).collect());
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"count" if args.len() == 2 => Reply::Int(table::COMMANDS.len() as i64),
        b"count" => Reply::err("ERR wrong number of arguments for 'command|count' command"),
        b"info" => {
            let names: Vec<Reply> = if args.len() == 2 {
                table::COMMANDS.iter().map(entry).collect()
            } else {
                args[2..]
                    .iter()
                    .map(|n| table::lookup(&String::from_utf8_lossy(n).to_ascii_lowercase()).map_or(Reply::Nil, entry))
                    .collect()
            };
            Reply::Array(names)
        }
        b"list" => Reply::Array(table::COMMANDS.iter().map(|s| Reply::bulk(s.name)).collect()),
        // DOCS is not served: its error makes redis-cli fall back to its built-in help table.
        _ => unknown_subcommand(sub, "command"),
    }
}

/// INFO [section ...]: `server`, `clients`, `replication`, `keyspace` (all of them by default).
pub async fn info<S: Kv + Lease + Watch + Maintenance + cairn_api::Auth>(session: &Session<S>, store: &S, args: &[Bytes]) -> StoreResult<Reply> {
    let wanted: Vec<String> = args[1..].iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let all = wanted.is_empty() || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let shared = session.shared();
    let mut sections: Vec<String> = Vec::new();
    if want("server") {
        sections.push(format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:cairn\r\ncairn_version:{}\r\n",
            std::env::consts::OS,
            std::process::id(),
            shared.config.port,
            shared.started.elapsed().as_secs(),
            shared.started.elapsed().as_secs() / 86400,
            env!("CARGO_PKG_VERSION"),
        ));
    }
    if want("clients") {
        sections.push(format!(
            "# Clients\r\nconnected_clients:{}\r\n",
            shared.clients.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    if want("replication") {
        let status = store.status().await?;
        let leader = status.leader != 0 && status.leader == status.header.member_id;
        sections.push(format!(
            "# Replication\r\nrole:{}\r\nconnected_slaves:0\r\ncairn_member_id:{:x}\r\ncairn_leader_id:{:x}\r\ncairn_raft_term:{}\r\ncairn_raft_index:{}\r\ncairn_raft_applied_index:{}\r\n",
            if leader { "master" } else { "slave" },
            status.header.member_id,
            status.leader,
            status.raft_term,
            status.raft_index,
            status.raft_applied_index,
        ));
    }
    if want("keyspace") {
        // Counting the keys with a TTL means reading every key: done up to EXPIRES_SCAN_MAX keys;
        // above that `expires` is not counted (reported as 0).
        const EXPIRES_SCAN_MAX: i64 = 100_000;
        let all = |count_only| RangeRequest {
            key: vec![0],
            range_end: vec![0],
            keys_only: true,
            count_only,
            consistency: session.consistency(),
            ..Default::default()
        };
        let count = store.range(all(true)).await?.count;
        let expires = if count <= EXPIRES_SCAN_MAX {
            store.range(all(false)).await?.kvs.iter().filter(|kv| kv.lease != 0).count()
        } else {
            0
        };
        let mut s = "# Keyspace\r\n".to_string();
        if count > 0 {
            s.push_str(&format!("db0:keys={count},expires={expires},avg_ttl=0\r\n"));
        }
        sections.push(s);
    }
    Ok(Reply::Verbatim(sections.join("\r\n")))
}
