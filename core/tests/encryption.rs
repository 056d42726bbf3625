//! Encryption at rest, as only the disk backend can show it: what reaches the
//! files, which keys open a data directory, and a key change. (That an
//! encrypted store behaves like any other is the shared suite, run as
//! `fjall_encrypted`.)
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use gw_core::{EncryptionKeys, Engine, EngineConfig, Error, QueueSettings, StoreError, SyncPolicy};

const MARKER: &str = "zq-secret-marker-7f3a9c";

fn keys(byte: u8, old: &[u8]) -> Arc<EncryptionKeys> {
    let old: Vec<[u8; 32]> = old.iter().map(|b| [*b; 32]).collect();
    Arc::new(EncryptionKeys::new(&[byte; 32], &old))
}

fn open_with(dir: &Path, keys: Option<Arc<EncryptionKeys>>) -> gw_core::Result<Engine> {
    Engine::open(EngineConfig {
        sync: SyncPolicy::Never,
        encryption: keys,
        ..EngineConfig::new(dir)
    })
}

/// Stores the marker in everything that holds content: a message's body, a
/// header and a property, a delayed message, a retained message, a door's
/// state and a user's tag.
async fn store_marker_everywhere(e: &Engine) {
    let t = e.tenant("/").unwrap();
    t.declare_queue("q", spec(QueueSettings::classic()))
        .unwrap();
    let mut m = msg("q", &format!("body {MARKER}"));
    m.headers
        .push("h", gw_core::HeaderValue::ShortString(MARKER.to_owned()));
    m.properties.correlation_id = Some(MARKER.into());
    let r = t.publish(m).unwrap();
    e.wait_durable(r.ticket.unwrap()).await.unwrap();
    let mut delayed = msg("q", &format!("delayed {MARKER}"));
    delayed.deliver_at = Some(gw_core::now_millis() + 3_600_000);
    let r = t.publish(delayed).unwrap();
    e.wait_durable(r.ticket.unwrap()).await.unwrap();
    if let Some(ticket) = t.set_retained("a/b", Some(msg("a/b", &format!("retained {MARKER}")))) {
        e.wait_durable(ticket).await.unwrap();
    }
    let ticket = e.put_state("door", b"client-1", format!("session {MARKER}").as_bytes());
    e.wait_durable(ticket).await.unwrap();
    e.put_user("carol", "pw", vec![MARKER.to_owned()]).unwrap();
    e.close();
}

/// Files of `dir` (recursively) holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn nothing_stored_is_readable_in_the_files_with_encryption_on() {
    let clear = tempfile::tempdir().unwrap();
    store_marker_everywhere(&open_with(clear.path(), None).unwrap()).await;
    assert!(
        !files_holding(clear.path(), MARKER.as_bytes()).is_empty(),
        "without encryption the marker is on disk (else this test could not fail)"
    );

    let sealed = tempfile::tempdir().unwrap();
    store_marker_everywhere(&open_with(sealed.path(), Some(keys(1, &[]))).unwrap()).await;
    assert_eq!(
        files_holding(sealed.path(), MARKER.as_bytes()),
        Vec::<String>::new()
    );

    // And it all reads back.
    let e = open_with(sealed.path(), Some(keys(1, &[]))).unwrap();
    let q = e.tenant("/").unwrap().queue("q").unwrap();
    let got = drain(&q, gw_core::DEFAULT_GROUP, true).await;
    assert_eq!(got.len(), 1);
    assert!(body(&got[0]).contains(MARKER));
    assert_eq!(
        got[0].message.properties.correlation_id.as_deref(),
        Some(MARKER.as_bytes())
    );
    let retained = e.tenant("/").unwrap().retained(|_| true);
    assert!(String::from_utf8_lossy(&retained[0].1.body).contains(MARKER));
    let state = e.scan_state("door").unwrap();
    assert!(String::from_utf8_lossy(&state[0].1).contains(MARKER));
    e.close();
}

fn refusal(r: gw_core::Result<Engine>) -> String {
    match r {
        Err(Error::Storage(StoreError::Encryption(why))) => why,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("opened"),
    }
}

#[tokio::test]
async fn a_data_directory_opens_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    store_marker_everywhere(&open_with(dir.path(), Some(keys(1, &[]))).unwrap()).await;
    let id = keys(1, &[]).current_id();

    let why = refusal(open_with(dir.path(), None));
    assert!(why.contains("is encrypted") && why.contains(&id), "{why}");
    let why = refusal(open_with(dir.path(), Some(keys(2, &[]))));
    assert!(
        why.contains(&format!("encrypted with key {id}")) && why.contains("old_keys"),
        "{why}"
    );

    // A clear directory that holds data is not encrypted half-way.
    let clear = tempfile::tempdir().unwrap();
    open_with(clear.path(), None).unwrap().close();
    let why = refusal(open_with(clear.path(), Some(keys(1, &[]))));
    assert!(why.contains("created without encryption"), "{why}");
}

#[tokio::test]
async fn a_new_key_reads_what_the_old_one_wrote_and_takes_over_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    store_marker_everywhere(&open_with(dir.path(), Some(keys(1, &[]))).unwrap()).await;

    // Key 2 with key 1 kept: everything reads; new messages are sealed under 2.
    {
        let e = open_with(dir.path(), Some(keys(2, &[1]))).unwrap();
        let t = e.tenant("/").unwrap();
        let q = t.queue("q").unwrap();
        let old = drain(&q, gw_core::DEFAULT_GROUP, true).await;
        assert_eq!(old.len(), 1, "the message sealed under the old key");
        let r = t.publish(msg("q", "under the new key")).unwrap();
        e.wait_durable(r.ticket.unwrap()).await.unwrap();
        e.close();
    }

    // Key 2 alone: the metadata was sealed anew, the old message is consumed.
    let e = open_with(dir.path(), Some(keys(2, &[]))).unwrap();
    assert!(e.authenticate("carol", b"pw", None).is_ok());
    let q = e.tenant("/").unwrap().queue("q").unwrap();
    let got = drain(&q, gw_core::DEFAULT_GROUP, true).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        ["under the new key"]
    );
    e.close();
}
