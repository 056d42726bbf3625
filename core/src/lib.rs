//! The gateway's message engine: tenants, exchanges, queues, consumer groups and
//! durable storage, with no network I/O. Protocol adapters (AMQP, MQTT, HTTP)
//! translate their wire protocols onto this crate's API.
//!
//! # Layout
//! - `engine/`: [`Engine`], the handle adapters hold, and [`Tenant`], its
//!   per-vhost face; publishing, dead letters, queue creation and deletion,
//!   recovery — what spans queues.
//! - `tenant.rs`: one vhost's state (exchanges, queues, retained) and routing.
//! - `routing/`: exchanges, the topic trie, headers matching.
//! - `queue/`: [`Queue`], split by job (append, limits, retention, groups,
//!   consume, pull, settle, inspect, timers), its log and settings, and the
//!   [`Consumer`] handle.
//! - `group/`: a consumer group's delivery state machine; `take.rs` says how
//!   the next message is picked (FIFO keys in `fifo.rs`).
//! - `store/`: the storage boundary — the committer, typed writes, the
//!   backend trait — with the on-disk and memory backends.
//! - `auth.rs`, `delay.rs`, `deadletter.rs`, `timers.rs`, `names.rs`,
//!   `connections.rs`, `message.rs`, `extensions.rs`, `error.rs`.
//!
//! `core/README.md` lists every module with one line each.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> gw_core::Result<()> {
//! use gw_core::{Engine, EngineConfig, Message, QueueSpec, ConsumerSpec, DEFAULT_GROUP};
//! let dir = tempfile::tempdir().unwrap();
//! let engine = Engine::open(EngineConfig::new(dir.path()))?;
//! let tenant = engine.tenant("/")?;
//! let (queue, _) = tenant.declare_queue("hello", QueueSpec { default_group: true, ..Default::default() })?;
//! let mut m = Message::new("hi");
//! m.routing_key = "hello".into();
//! tenant.publish(m)?;
//! let consumer = queue.consume(DEFAULT_GROUP, ConsumerSpec::default())?;
//! let mut got = Vec::new();
//! consumer.take(10, &mut got).await?;
//! assert_eq!(&got[0].message.body[..], b"hi");
//! consumer.ack(got[0].tag)?;
//! # drop(consumer); engine.close(); Ok(()) }
//! ```

mod auth;
mod connections;
mod deadletter;
mod delay;
mod engine;
mod error;
mod extensions;
mod group;
mod identity;
mod message;
mod names;
mod password_check;
mod queue;
mod routing;
mod store;
mod tenant;
mod timers;
mod topic_auth;
mod trim;
mod watermarks;

pub use auth::{ADMINISTRATOR, Access, Permission, Principal, UserInfo};
pub use connections::{ConnectionGuard, ConnectionInfo};
pub use engine::{
    Created, Engine, EngineConfig, ExchangeInfo, Login, PublishReceipt, QueueSpec, Tenant,
    dead_letter_queue_name,
};
pub use error::{Error, Result, StoreError};
pub use extensions::{X_DELAY, X_GROUP_ID, X_TAGS};
pub use group::{DeathReason, Delivery, DeliveryTag, MessageState};
pub use identity::{
    AccessKeyInfo, DEFAULT_TOKEN_TTL_MS, MAX_ACCESS_KEYS, SIGNATURE_LEN, TokenInfo, is_project_id,
    user_id,
};
pub use message::{HeaderValue, Headers, Message, MessageId, Properties, UnixMillis, now_millis};
pub use names::{MAX_KEY_LEN, MAX_NAME_LEN, is_reserved};
pub use queue::{
    Consumer, ConsumerSpec, DEFAULT_GROUP, DeadLetterTarget, GroupStats, MessageTrace, Overflow,
    PullRequest, Queue, QueueKind, QueueSettings, QueueStats, StartPosition, TagFilter,
};
pub use routing::{BindingSpec, Destination, ExchangeKind, ExchangeSpec, topic_matches};
pub use store::records::GroupCounters;
pub use store::{
    EncryptionKeys, KeyFileError, MemoryStore, STORE_FORMAT, Storage, StoreHealth, StoreStats,
    SyncPolicy, Ticket, create_dir_all_durably, generate_key_file,
};
pub use tenant::PREDECLARED;
pub use topic_auth::{TopicPermission, TopicRules};
pub use watermarks::{AlarmKind, NodeAlarm, Watermark, Watermarks};
