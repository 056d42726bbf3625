//! The engine's behavioural suite, run on every storage backend. Each test is
//! written once, in `backends/*.rs`, against a [`common::Backend`], and
//! instantiated below for each backend: `fjall::…`, `memory::…` and
//! `fjall_encrypted::…` (fjall with encryption at rest). A new
//! backend passes when it adds one line at the bottom and every test is green.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod basics;
#[path = "../common/mod.rs"]
mod common;
mod identity;
mod limits;
mod restarts;
mod state_machine;

/// One `#[tokio::test]` per async suite test and one `#[test]` per sync one,
/// in a module named after the backend.
macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use crate::common::Backend;

            suite!(@async $backend;
                basics::publish_consume_ack_and_redeliver_on_nack,
                basics::groups_each_see_every_message_and_consumers_compete,
                basics::a_released_batch_is_shared_but_a_single_active_consumer_takes_it_all,
                basics::fifo_keeps_order_per_key,
                basics::delayed_messages_wait_for_their_time,
                basics::tag_filters_skip_without_blocking,
                basics::rejected_and_over_limit_messages_are_dead_lettered_with_x_death,
                basics::ttl_expires_into_dead_letters_and_max_length_drops_head,
                basics::rewind_replays_from_a_sequence_or_time,
                basics::bad_input_gets_typed_errors,
                basics::topic_and_fanout_broadcast_to_many_queues,
                basics::retention_keeps_settled_messages_for_rewind_then_deletes_them,
                basics::many_groups_and_a_priority_queue,
                basics::per_group_dead_letters_and_lease_timeouts,
                basics::message_tracking_tells_each_groups_state,
                basics::browsing_shows_state_and_changes_nothing,
                limits::reject_publish_refuses_and_max_bytes_counts_bodies,
                limits::dead_letter_head_moves_the_oldest_out,
                limits::limits_hold_for_each_group_of_a_queue,
                restarts::durable_state_survives_a_restart,
                restarts::fifo_order_and_backlog_on_disk_survive_restart,
                restarts::transient_messages_and_queues_do_not_come_back,
                restarts::filters_dead_letters_and_rewinds_survive_a_restart,
                restarts::a_body_shared_by_two_queues_survives_until_both_settle,
                restarts::a_deleted_queue_stays_deleted_and_its_name_is_reusable,
                restarts::retained_messages_and_adapter_state_survive,
                restarts::a_backlog_behind_the_memory_window_is_read_back_in_order,
                restarts::ids_are_never_reused_across_restarts,
                restarts::topic_permissions_survive_a_restart,
                identity::projects_access_keys_and_tokens_survive_a_restart,
                identity::secrets_are_not_stored_in_clear,
            );
            suite!(@sync $backend;
                state_machine::standard_queue_never_loses_or_resurrects,
                state_machine::fifo_queue_keeps_key_order,
            );
        }
    };
    (@async $backend:ident; $($module:ident::$test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                crate::$module::$test(Backend::$backend()).await;
            }
        )*
    };
    (@sync $backend:ident; $($module:ident::$test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                crate::$module::$test(Backend::$backend);
            }
        )*
    };
}

suite!(fjall);
suite!(memory);
suite!(fjall_encrypted);
