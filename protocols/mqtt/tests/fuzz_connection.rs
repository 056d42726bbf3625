//! Mutated and random byte streams against a live server (the codec's own
//! property tests cover the decoder alone): whatever arrives, the server
//! answers or closes, never panics or hangs, and a bystander keeps working.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Raw, Server, connect, packet, publish, string, subscribe, v4};
use tokio::io::AsyncReadExt;

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid packets of a connected client, both versions.
fn corpus(v5: bool) -> Vec<Vec<u8>> {
    let mut c = vec![
        publish(v5, 0, "fz/a", None, &[], b"zero"),
        publish(v5, 0b0010, "fz/b", Some(1), &[], b"one"),
        publish(v5, 0b0101, "fz/c", Some(2), &[], b"two"),
        packet(0x62, &[0, 2]),
        packet(0x40, &[0, 9]),
        packet(0x50, &[0, 9]),
        packet(0x70, &[0, 9]),
        subscribe(v5, 3, "fz/#", 1),
        subscribe(v5, 4, "$share/g/fz/+", 2),
        packet(0xA2, &{
            let mut b = vec![0, 5];
            if v5 {
                b.push(0);
            }
            b.extend(string(b"fz/#"));
            b
        }),
        packet(0xC0, &[]),
    ];
    if v5 {
        c.push(publish(
            true,
            0,
            "fz/p",
            None,
            &[0x23, 0, 1, 0x26, 0, 1, b'k', 0, 1, b'v'],
            b"props",
        ));
        c.push(publish(true, 0, "", None, &[0x23, 0, 1], b"alias"));
        c.push(packet(0xE0, &[0x04, 0]));
        c.push(packet(0xF0, &[0x18, 0]));
    } else {
        c.push(packet(0xE0, &[]));
    }
    c
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    match rng.below(6) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        2 => bytes.truncate(rng.below(bytes.len() + 1)),
        3 => {
            let i = rng.below(bytes.len() + 1);
            let extra: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, extra);
        }
        4 => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    bytes
}

async fn drain(raw: &mut Raw) {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(30), raw.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_streams_never_break_the_server() {
    common::watch_panics();
    let s = Server::start().await;
    let mut bystander = v4::connect(s.addr, "bystander").await;
    bystander.subscribe("ok", v4::QoS::AtLeastOnce).await;
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15u64);
    let mut rng = Rng(seed);
    for case in 0..300 {
        let v5 = rng.below(2) == 1;
        let mut raw = Raw::connect(s.addr).await;
        let mut stream = Vec::new();
        let hello = connect(if v5 { 5 } else { 4 }, &format!("fz-{case}"), 0x02, &[]);
        // Mostly a valid CONNECT, sometimes a mutated one.
        stream.extend(if rng.below(5) == 0 {
            mutate(&mut rng, hello)
        } else {
            hello
        });
        let corpus = corpus(v5);
        for _ in 0..rng.below(12) {
            let p = corpus[rng.below(corpus.len())].clone();
            stream.extend(if rng.below(3) == 0 {
                mutate(&mut rng, p)
            } else {
                p
            });
        }
        // Sent in random pieces, as a network delivers it.
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            let (now, later) = rest.split_at(n);
            if tokio::io::AsyncWriteExt::write_all(&mut raw.stream, now)
                .await
                .is_err()
            {
                break;
            }
            rest = later;
        }
        drain(&mut raw).await;
    }
    let mut publ = v4::connect(s.addr, "publisher").await;
    publ.publish("ok", v4::QoS::AtLeastOnce, false, b"still fine")
        .await;
    loop {
        let p = bystander.publish_packet().await;
        if &p.payload[..] == b"still fine" {
            break;
        }
    }
    s.stop().await;
    assert_eq!(common::panics(), 0, "a connection task panicked");
}
