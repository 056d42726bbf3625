//! The two cloud DMS SDKs, unchanged, against the door: Huawei Cloud's
//! `huaweicloudsdkdms` (AK/SK signing) and Open Telekom Cloud's
//! `otcextensions` (Keystone v3 tokens), driven by `tests/clients/dms_sdks.py`
//! with nothing but an endpoint and credentials; plus the bad input the
//! script sends (wrong SK, stale `X-Sdk-Date`, a body changed after signing,
//! an expired token, a token of another project, an AK without rights).
//! The SDKs are installed, pinned, by `tests/clients/install.sh`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gw_core::Permission;

/// Runs install.sh (idempotent, locked) and returns the folder the DMS SDKs
/// are installed in (its `DMS_PYTHONPATH=` line).
fn dms_pythonpath() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("tests/clients/install.sh"))
        .output()
        .expect("run tests/clients/install.sh");
    assert!(
        out.status.success(),
        "install.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("DMS_PYTHONPATH="))
        .expect("install.sh prints DMS_PYTHONPATH=")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huawei_and_otc_sdks_run_every_queue_call() {
    let pythonpath = tokio::task::spawn_blocking(dms_pythonpath).await.unwrap();
    let gw = common::start().await;
    let e = &gw.engine;
    e.create_tenant("shop").unwrap();
    e.put_user("alice", "alice-pw", vec![]).unwrap();
    e.set_permission("alice", Permission::full("shop")).unwrap();
    // Another user with a project of their own and no rights on "shop".
    e.create_tenant("other").unwrap();
    e.put_user("oscar", "oscar-pw", vec![]).unwrap();
    e.set_permission("oscar", Permission::full("other"))
        .unwrap();
    // A token that lived one millisecond.
    let alice = e.principal("alice").unwrap();
    let (expired, _) = e.issue_token(&alice, "shop", "password", 1).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/dms_sdks.py");
    let port = gw.addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(port)
            .env("PYTHONPATH", pythonpath)
            .env("GW_USER", "alice")
            .env("GW_PASSWORD", "alice-pw")
            .env("GW_PROJECT", "shop")
            .env("GW_OTHER_USER", "oscar")
            .env("GW_OTHER_PASSWORD", "oscar-pw")
            .env("GW_EXPIRED_TOKEN", expired)
            .output()
            .expect("start python3 dms_sdks.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "dms_sdks.py failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for step in [
        "otc_sdk",
        "expired_token",
        "token_of_another_project",
        "tokens",
        "credentials_api",
        "huawei_sdk",
        "huawei_wrong_sk",
        "stale_x_sdk_date",
        "tampered_body",
        "ak_without_rights",
    ] {
        assert!(
            stdout.contains(&format!("ok {step}\n")),
            "{step} did not run: {stdout}"
        );
    }
    gw.stop().await;
}
