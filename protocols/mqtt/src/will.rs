//! Will messages: built and checked when the CONNECT arrives, published when
//! the connection ends without a normal DISCONNECT (or with MQTT 5's 0x04),
//! after the Will Delay Interval when there is one (§ 3.1.3.2.2).
//!
//! A will waiting for its delay lives in the session record (see
//! [`crate::registry`]): a reconnection to the session in time cancels it
//! [MQTT-3.1.3-9], the end of the session publishes it early.

use gw_core::{Tenant, UnixMillis};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use crate::properties::{self, PropertiesError};
use crate::retain;
use crate::session::WillRecord;

/// The will of a 3.1.1 CONNECT.
pub fn from_v4(will: &v4::LastWill) -> WillRecord {
    let publish = v4::Publish::from_bytes(&will.topic, will.qos, will.message.clone());
    let mut message = properties::message_from_v4_publish(&publish);
    properties::mark_mqtt_headers(&mut message, will.qos as u8, will.retain, None);
    WillRecord {
        topic: retain::normalize(&will.topic).into_owned(),
        retain: will.retain,
        message,
        delay_secs: 0,
        due_at: None,
    }
}

/// The will of an MQTT 5 CONNECT; its payload is checked against its Payload
/// Format Indicator here, where it becomes a message (CONNACK 0x99 when wrong).
pub fn from_v5(will: &v5::LastWill, now: UnixMillis) -> Result<WillRecord, PropertiesError> {
    let props = will.properties.as_ref();
    let publish = v5::Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        pkid: 0,
        payload: will.message.clone(),
        properties: props.map(|p| v5::PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        }),
    };
    let mut message = properties::message_from_v5_publish(&publish, now)?;
    properties::mark_mqtt_headers(&mut message, will.qos as u8, will.retain, None);
    let topic = String::from_utf8_lossy(&will.topic);
    Ok(WillRecord {
        topic: retain::normalize(&topic).into_owned(),
        retain: will.retain,
        message,
        delay_secs: props.and_then(|p| p.delay_interval).unwrap_or(0),
        due_at: None,
    })
}

/// Publishes a will to `amq.topic` (and sets the retained message when Will
/// Retain is set). Failures are logged: nobody is left to tell.
pub fn publish(tenant: &Tenant, will: &WillRecord, client_id: &str) {
    let mut message = will.message.clone();
    // An `x-delay` User Property of the will counts from its publication.
    let delay = message
        .header(properties::DELAY_HEADER)
        .and_then(gw_core::HeaderValue::as_str)
        .and_then(|d| d.trim().parse::<u64>().ok())
        .filter(|d| *d > 0);
    message.deliver_at = delay.map(|d| gw_core::now_millis().saturating_add(d));
    if will.retain {
        retain::store(tenant, &will.topic, &message);
    }
    match tenant.publish(message) {
        Ok(r) => {
            tracing::debug!(client_id, topic = %will.topic, routed = r.routed, "will published")
        }
        Err(e) => tracing::warn!(client_id, topic = %will.topic, cause = %e, "cannot publish will"),
    }
}
