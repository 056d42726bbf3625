//! Identity the cloud SDKs expect, on top of the engine's users:
//!
//! - `keystone.rs`: Keystone v3 tokens (`/v3`, `/v3/auth/tokens`) for
//!   openstacksdk/keystoneauth1 (Open Telekom Cloud's `otcextensions`), with
//!   a service catalog that names this gateway as the `dms` endpoint;
//! - `credentials.rs`: access keys managed as Huawei Cloud IAM does
//!   (`/v3.0/OS-CREDENTIAL/credentials`), for `huaweicloudsdkcore`'s AK/SK signing.
//!
//! The domain is always `Default`: the gateway has one.

mod credentials;
mod keystone;

use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The one domain's id and name.
pub const DOMAIN_ID: &str = "default";
/// The one domain's name.
pub const DOMAIN_NAME: &str = "Default";

/// The identity routes: issuing a token needs no other credentials; the rest
/// go through the usual authentication.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let open = OpenApiRouter::new()
        .routes(routes!(keystone::version))
        .routes(routes!(keystone::issue));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(keystone::validate, keystone::revoke))
        .routes(routes!(
            credentials::create_credential,
            credentials::list_credentials
        ))
        .routes(routes!(
            credentials::show_credential,
            credentials::update_credential,
            credentials::delete_credential
        ))
        .layer(from_fn_with_state(state.clone(), crate::auth::authenticate));
    open.merge(authenticated)
}

/// The base URL clients reach this gateway at: `public_url` when set, else
/// `http://` and the request's `Host`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let configured = &state.config().public_url;
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The user an IAM `user_id` names: a user's id or, our extension, its name.
pub fn user_named(state: &AppState, id_or_name: &str) -> Option<String> {
    let users = state.engine().users();
    users
        .iter()
        .find(|u| u.name == id_or_name)
        .or_else(|| {
            users
                .iter()
                .find(|u| gw_core::user_id(&u.name) == id_or_name)
        })
        .map(|u| u.name.clone())
}

/// ms since the epoch as IAM/Keystone write times: `2026-12-02T07:46:48.000000Z`.
pub fn iso_time(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let micros = (ms % 1000) * 1000;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "9999-12-31T23:59:59.000000Z".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_keystone_shaped() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::iso_time(1_796_197_608_123),
            "2026-12-02T07:46:48.123000Z"
        );
    }
}
