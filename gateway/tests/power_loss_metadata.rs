//! Power cuts in the middle of metadata changes, with the data directory on
//! crashfs (strict mode: directory operations durable only once synced) from
//! the first start on: every durable queue the gateway answered declare-ok
//! for, every binding it answered bind-ok for, and every DMS queue and group
//! it answered 2xx for is there after the reboot.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::power::Rig;
use common::{Process, post_as_guest};
use crashfs::Mode;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};

type Done = Arc<Mutex<BTreeSet<u64>>>;

#[test]
fn confirmed_declares_binds_and_group_creations_survive_a_power_cut() {
    for mode in [Mode::Strict, Mode::Lenient] {
        let Some(mut rig) = Rig::new(mode) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let gw = rig.start("always");
        let (declared, bound, created, grouped) = (
            Done::default(),
            Done::default(),
            Done::default(),
            Done::default(),
        );
        let tasks = rt.block_on(async {
            vec![
                tokio::spawn(declare_and_bind(
                    gw.amqp_connection().await,
                    Arc::clone(&declared),
                    Arc::clone(&bound),
                )),
                tokio::spawn(create_queues_and_groups(
                    gw.dms_base(),
                    Arc::clone(&created),
                    Arc::clone(&grouped),
                )),
            ]
        });
        let start = Instant::now();
        while (bound.lock().unwrap().len() < 100 || grouped.lock().unwrap().len() < 50)
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        rig.power_cut(gw);
        rt.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        });
        let gw = rig.start("always");
        let (declared, bound) = (
            declared.lock().unwrap().clone(),
            bound.lock().unwrap().clone(),
        );
        let (created, grouped) = (
            created.lock().unwrap().clone(),
            grouped.lock().unwrap().clone(),
        );
        let (lost_queues, lost_bindings) = rt.block_on(check_amqp(&gw, &declared, &bound));
        let (lost_dms, lost_groups) = rt.block_on(check_dms(&gw, &created, &grouped));
        eprintln!(
            "{mode:?}: declare-ok {} (lost {}), bind-ok {} (lost {}), DMS queues 2xx {} (lost {}), groups 2xx {} (lost {})",
            declared.len(),
            lost_queues.len(),
            bound.len(),
            lost_bindings.len(),
            created.len(),
            lost_dms.len(),
            grouped.len(),
            lost_groups.len()
        );
        assert!(declared.len() >= 10 && created.len() >= 5, "few answers");
        assert!(
            lost_queues.is_empty(),
            "{mode:?}: queues lost {lost_queues:?}"
        );
        assert!(
            lost_bindings.is_empty(),
            "{mode:?}: bindings lost {lost_bindings:?}"
        );
        assert!(
            lost_dms.is_empty(),
            "{mode:?}: DMS queues lost {lost_dms:?}"
        );
        assert!(
            lost_groups.is_empty(),
            "{mode:?}: groups lost {lost_groups:?}"
        );
        rig.finish(gw);
    }
}

/// Declares durable queues and binds each to amq.direct (key = its name).
async fn declare_and_bind(conn: Connection, declared: Done, bound: Done) {
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for i in 0.. {
        let q = format!("meta-{i}");
        if ch
            .queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await
            .is_err()
        {
            return;
        }
        declared.lock().unwrap().insert(i);
        let bind = ch
            .queue_bind(
                q.as_str().into(),
                "amq.direct".into(),
                q.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        if bind.is_err() {
            return;
        }
        bound.lock().unwrap().insert(i);
    }
}

/// Creates DMS queues, each with a consumer group.
async fn create_queues_and_groups(base: String, created: Done, grouped: Done) {
    for j in 0.. {
        let q = format!("dms-{j}");
        match post_as_guest(format!("{base}/queues"), json!({"name": q})).await {
            Some(r) if r.status().is_success() => created.lock().unwrap().insert(j),
            _ => return,
        };
        let groups = json!({"groups": [{"name": "g"}]});
        match post_as_guest(format!("{base}/queues/{q}/groups"), groups).await {
            Some(r) if r.status().is_success() => grouped.lock().unwrap().insert(j),
            _ => return,
        };
    }
}

/// (queues missing, bindings missing) after the reboot.
async fn check_amqp(
    gw: &Process,
    declared: &BTreeSet<u64>,
    bound: &BTreeSet<u64>,
) -> (Vec<u64>, Vec<u64>) {
    let conn = gw.amqp_connection().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    // One message through each binding that was confirmed.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in bound {
        ch.basic_publish(
            "amq.direct".into(),
            format!("meta-{i}").as_str().into(),
            BasicPublishOptions::default(),
            b"probe",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let mut ch: Channel = conn.create_channel().await.unwrap();
    let (mut lost_queues, mut lost_bindings) = (Vec::new(), Vec::new());
    for &i in declared {
        let q = format!("meta-{i}");
        match ch
            .queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(info) => {
                if bound.contains(&i) && info.message_count() == 0 {
                    lost_bindings.push(i);
                }
            }
            Err(_) => {
                // A passive declare of a missing queue closes the channel.
                lost_queues.push(i);
                ch = conn.create_channel().await.unwrap();
            }
        }
    }
    (lost_queues, lost_bindings)
}

/// (DMS queues missing, groups missing) after the reboot.
async fn check_dms(
    gw: &Process,
    created: &BTreeSet<u64>,
    grouped: &BTreeSet<u64>,
) -> (Vec<u64>, Vec<u64>) {
    let base = gw.dms_base();
    let (mut lost_queues, mut lost_groups) = (Vec::new(), Vec::new());
    for &j in created {
        let r = reqwest::Client::new()
            .get(format!("{base}/queues/dms-{j}/groups"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            lost_queues.push(j);
            continue;
        }
        let list: Value = r.json().await.unwrap();
        let has_g = list["groups"]
            .as_array()
            .is_some_and(|gs| gs.iter().any(|g| g["name"] == "g"));
        if grouped.contains(&j) && !has_g {
            lost_groups.push(j);
        }
    }
    (lost_queues, lost_groups)
}
