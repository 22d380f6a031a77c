//! Auth changes applied like any command: persisted in the store, and a client's write bound
//! to the auth revision it was checked at is refused once auth has changed since.

use cairn_api::*;
use cairn_mvcc::auth::AuthCommand;
use cairn_mvcc::{ApplyOutcome, WriteCommand};

mod common;
use common::Store;

fn put(k: &str) -> WriteCommand {
    WriteCommand::Put(PutRequest { key: k.into(), value: b"v".to_vec(), ..Default::default() })
}

#[test]
fn writes_checked_at_an_old_auth_revision_are_refused() {
    let mut s = Store::new();
    for cmd in [
        AuthCommand::UserAdd { name: "root".into(), password_hash: None },
        AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() },
        AuthCommand::Enable { token_key: vec![7; 32] },
    ] {
        assert!(matches!(s.apply(WriteCommand::Auth(cmd)), Ok(ApplyOutcome::Auth(_))));
    }
    let state = s.reader().auth().unwrap();
    assert!(state.enabled);
    assert_eq!(state.revision, 3, "each change is one auth revision");
    assert_eq!(state.token_key, vec![7; 32], "the token key is replicated state");

    let at = state.revision;
    let checked = |cmd| WriteCommand::Checked { auth_revision: at, command: Box::new(cmd) };
    assert!(matches!(s.apply(checked(put("a"))), Ok(ApplyOutcome::Put(_))), "current revision: applied");
    let revision = s.revision();
    s.apply(WriteCommand::Auth(AuthCommand::RoleAdd { name: "r".into() })).unwrap();
    assert_eq!(s.apply(checked(put("b"))), Err(StoreError::AuthOldRevision));
    assert_eq!(s.revision(), revision, "a refused write takes no store revision");
    // Auth changes take no store revision either (etcd's auth revision is separate).
    assert_eq!(s.reader().auth().unwrap().revision, 4);
}
