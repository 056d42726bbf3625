//! Topic authorisation (issue 12), as Mosquitto's pattern ACLs and RabbitMQ's
//! topic permissions: a device may publish under its own name only
//! (`^devices\.%u\..*`) and subscribe to its own topics and `public/#`.
//! Refused SUBSCRIBEs get 0x87 (5.0) / 0x80 (3.1.1); a refused PUBLISH gets
//! PUBACK 0x87 in 5.0 and is dropped in 3.1.1 (acknowledged, as Mosquitto
//! does); a will on a refused topic refuses the CONNECT. Users without topic
//! permissions are not affected.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, v4, v5};
use gw_core::{Permission, TopicPermission};

async fn server_with_device(name: &str) -> Server {
    let s = Server::start().await;
    s.engine.put_user(name, "pw", vec![]).unwrap();
    s.engine
        .set_permission(name, Permission::full("/"))
        .unwrap();
    s.engine
        .set_topic_permission(
            name,
            TopicPermission {
                tenant: "/".into(),
                exchange: "amq.topic".into(),
                write: r"^devices\.%u\..*".into(),
                read: r"^(devices\.%u|public)\..*".into(),
            },
        )
        .unwrap();
    s
}

#[tokio::test]
async fn a_v5_device_publishes_and_subscribes_under_its_own_name_only() {
    let s = server_with_device("dev1").await;
    // A watcher without topic permissions sees what gets through.
    let mut watcher = v5::connect(s.addr, "watcher").await;
    watcher.subscribe("devices/#", v5::QoS::AtLeastOnce).await;

    let mut o = v5::options(s.addr, "dev1-client");
    o.set_credentials("dev1", "pw");
    let (mut dev, _) = v5::connect_with(o).await;
    assert_eq!(
        dev.subscribe("devices/dev2/#", v5::QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::NotAuthorized]
    );
    assert_eq!(
        dev.subscribe("devices/+/cmd", v5::QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::NotAuthorized],
        "a wildcard over other devices is refused too"
    );
    assert_eq!(
        dev.subscribe("devices/dev1/cmd", v5::QoS::AtLeastOnce)
            .await,
        vec![v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    assert_eq!(
        dev.subscribe("public/news", v5::QoS::AtMostOnce).await,
        vec![v5::SubscribeReasonCode::Success(v5::QoS::AtMostOnce)]
    );

    dev.client
        .publish("devices/dev2/temp", v5::QoS::AtLeastOnce, false, "forged")
        .await
        .unwrap();
    assert_eq!(dev.puback().await.reason, v5::PubAckReason::NotAuthorized);
    dev.client
        .publish("devices/dev2/temp", v5::QoS::AtMostOnce, false, "forged0")
        .await
        .unwrap();
    dev.client
        .publish("devices/dev1/temp", v5::QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    assert_eq!(dev.puback().await.reason, v5::PubAckReason::Success);
    let got = watcher.publish_packet().await;
    assert_eq!(&got.payload[..], b"mine", "nothing refused reached anyone");
    watcher.no_publish().await;

    // Its own command topic is delivered to it.
    watcher
        .client
        .publish("devices/dev1/cmd", v5::QoS::AtLeastOnce, false, "reboot")
        .await
        .unwrap();
    assert_eq!(&dev.publish_packet().await.payload[..], b"reboot");
    s.stop().await;
}

#[tokio::test]
async fn a_v311_device_is_refused_the_mosquitto_way_and_a_will_elsewhere_is_refused() {
    let s = server_with_device("dev7").await;
    let mut watcher = v4::connect(s.addr, "watcher4").await;
    watcher.subscribe("devices/#", v4::QoS::AtLeastOnce).await;

    let mut o = v4::options(s.addr, "dev7-client");
    o.set_credentials("dev7", "pw");
    let (mut dev, _) = v4::connect_with(o).await;
    assert_eq!(
        dev.subscribe("devices/other/#", v4::QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    // Dropped but acknowledged (QoS 1 and 2), and the connection stays.
    dev.publish("devices/other/t", v4::QoS::AtLeastOnce, false, b"no")
        .await;
    dev.publish("devices/other/t", v4::QoS::ExactlyOnce, false, b"no2")
        .await;
    dev.publish("devices/dev7/t", v4::QoS::AtLeastOnce, false, b"yes")
        .await;
    assert_eq!(&watcher.publish_packet().await.payload[..], b"yes");
    watcher.no_publish().await;

    // A will on a topic it may not publish to: CONNECT refused.
    let mut o = v4::options(s.addr, "dev7-will");
    o.set_credentials("dev7", "pw");
    o.set_last_will(v4::LastWill::new(
        "devices/other/status",
        "gone",
        v4::QoS::AtLeastOnce,
        false,
    ));
    assert_eq!(
        v4::connect_with_refusal(o).await,
        v4::ConnectReturnCode::NotAuthorized
    );
    let mut o = v5::options(s.addr, "dev7-will5");
    o.set_credentials("dev7", "pw");
    o.set_last_will(v5::LastWill::new(
        "devices/dev7/status",
        "gone",
        v5::QoS::AtLeastOnce,
        false,
        None,
    ));
    let (_ok, _) = v5::connect_with(o).await;
    s.stop().await;
}

#[tokio::test]
async fn the_client_id_can_be_part_of_a_rule() {
    let s = Server::start().await;
    s.engine.put_user("fleet", "pw", vec![]).unwrap();
    s.engine
        .set_permission("fleet", Permission::full("/"))
        .unwrap();
    s.engine
        .set_topic_permission(
            "fleet",
            TopicPermission {
                tenant: "/".into(),
                exchange: "amq.topic".into(),
                write: r"^cars\.{client_id}$".into(),
                read: "".into(),
            },
        )
        .unwrap();
    let mut watcher = v5::connect(s.addr, "w").await;
    watcher.subscribe("cars/#", v5::QoS::AtLeastOnce).await;
    let mut o = v5::options(s.addr, "car-42");
    o.set_credentials("fleet", "pw");
    let (mut car, _) = v5::connect_with(o).await;
    car.client
        .publish("cars/car-41", v5::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(car.puback().await.reason, v5::PubAckReason::NotAuthorized);
    car.client
        .publish("cars/car-42", v5::QoS::AtLeastOnce, false, "pos")
        .await
        .unwrap();
    assert_eq!(car.puback().await.reason, v5::PubAckReason::Success);
    assert_eq!(&watcher.publish_packet().await.payload[..], b"pos");
    // An empty read pattern allows no subscription at all.
    assert_eq!(
        car.subscribe("cars/car-42", v5::QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::NotAuthorized]
    );
    s.stop().await;
}
