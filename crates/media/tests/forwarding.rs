//! The endpoint end to end: synthetic str0m peers on their own UDP sockets open media
//! through `Sfu` (as the conference door does), connect over ICE + DTLS-SRTP, and receive
//! each other's generated frames through it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_core::media::{
    MediaEndReason, MediaEndpoint, MediaError, MediaEvent, MediaOffer, PartyKey,
};
use confer_core::metrics::Metrics;
use confer_core::{GroupId, Uin};
use confer_media::synthetic::{PeerOptions, PeerState, SyntheticPeer};
use confer_media::{Sfu, SfuConfig};
use tokio::sync::watch;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a condition may take to come true before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

struct Joined {
    state: Arc<Mutex<PeerState>>,
    stop: watch::Sender<bool>,
    server_ufrag: String,
}

async fn start(config: SfuConfig) -> (Arc<Sfu>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let sfu = Sfu::start(config, metrics.clone())
        .await
        .expect("endpoint starts");
    (sfu, metrics)
}

fn key(conference: u64, party: u64) -> PartyKey {
    PartyKey {
        conference: GroupId(conference),
        party,
    }
}

async fn join(sfu: &Sfu, conference: u64, party: u64, slots: usize) -> Joined {
    let options = PeerOptions {
        id: party,
        slots,
        ..PeerOptions::default()
    };
    let (mut peer, offer) = SyntheticPeer::new(options, LOCALHOST)
        .await
        .expect("peer binds");
    let answer = sfu
        .open(
            key(conference, party),
            Uin(party),
            MediaOffer {
                sdp: Some(offer),
                ..MediaOffer::default()
            },
        )
        .await
        .expect("offer answered");
    peer.accept_answer(&answer.sdp).expect("answer accepted");
    let state = Arc::new(Mutex::new(PeerState::default()));
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(peer.run(state.clone(), stopped));
    Joined {
        state,
        stop,
        server_ufrag: answer.ufrag,
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `receiver` has seen more than 50 audio and 30 video frames from `sender`.
fn hears_and_sees(receiver: &Joined, sender: u64) -> bool {
    let state = receiver.state.lock().expect("state");
    state
        .received
        .get(&sender)
        .is_some_and(|r| r.audio_frames > 50 && r.video_frames > 30)
}

fn frames_from(receiver: &Joined, sender: u64) -> u64 {
    let state = receiver.state.lock().expect("state");
    state
        .received
        .get(&sender)
        .map_or(0, |r| r.audio_frames + r.video_frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parties_with_one_sendrecv_line_each_receive_each_other_on_it() {
    let (sfu, metrics) = start(SfuConfig::default()).await;
    let a = join(&sfu, 1, 1, 1).await;
    let b = join(&sfu, 1, 2, 1).await;
    until("a gets b's audio and video", || hears_and_sees(&a, 2)).await;
    until("b gets a's audio and video", || hears_and_sees(&b, 1)).await;
    assert!(metrics.media_forwarded_total() > 0);
    assert!(metrics.render().contains("confer_media_forwarded_total"));

    // A receiver's PLI on its slot reaches the party the slot shows.
    let before = a.state.lock().expect("state").keyframe_requests;
    b.state.lock().expect("state").ask_keyframe = true;
    until("b's keyframe request reaches a", || {
        a.state.lock().expect("state").keyframe_requests > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_then_a_late_joiner_all_receive_everyone_then_one_closes() {
    let (sfu, _) = start(SfuConfig::default()).await;
    let mut events = sfu.events();
    let peers = [
        join(&sfu, 7, 1, 3).await,
        join(&sfu, 7, 2, 3).await,
        join(&sfu, 7, 3, 3).await,
    ];
    for (i, receiver) in peers.iter().enumerate() {
        for sender in 1..=3u64 {
            if sender != i as u64 + 1 {
                until(&format!("{} gets {sender}", i + 1), || {
                    hears_and_sees(receiver, sender)
                })
                .await;
            }
        }
    }
    // Nobody renegotiates: the late joiner lands in a slot everyone offered up front.
    let late = join(&sfu, 7, 4, 3).await;
    for sender in 1..=3u64 {
        until(&format!("the late joiner gets {sender}"), || {
            hears_and_sees(&late, sender)
        })
        .await;
    }
    for (i, receiver) in peers.iter().enumerate() {
        until(&format!("{} gets the late joiner", i + 1), || {
            hears_and_sees(receiver, 4)
        })
        .await;
    }
    // A party of another conference is not forwarded to this one.
    let elsewhere = join(&sfu, 8, 9, 3).await;
    until("the other conference's party connects", || {
        elsewhere.state.lock().expect("state").connected
    })
    .await;

    sfu.close(key(7, 3)).await;
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event")
            .expect("not lagging");
        if let MediaEvent::Ended {
            key: ended,
            uin,
            reason,
        } = event
        {
            assert_eq!(ended, key(7, 3));
            assert_eq!(uin, Uin(3));
            assert_eq!(reason, MediaEndReason::Closed);
            break;
        }
    }
    until("the closed party's peer sees its connection end", || {
        peers[2].state.lock().expect("state").ended
    })
    .await;
    let before = frames_from(&late, 1);
    until("media keeps flowing to the others", || {
        frames_from(&late, 1) > before + 50
    })
    .await;
    for receiver in [&peers[0], &peers[1], &late] {
        assert!(!receiver
            .state
            .lock()
            .expect("state")
            .received
            .contains_key(&9));
    }
    drop(elsewhere.stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_by_a_leaver_shows_the_party_that_was_waiting() {
    let (sfu, _) = start(SfuConfig::default()).await;
    let simplest = join(&sfu, 3, 1, 1).await;
    let _b = join(&sfu, 3, 2, 2).await;
    let c = join(&sfu, 3, 3, 2).await;
    until("the one-slot party sees the first other", || {
        hears_and_sees(&simplest, 2)
    })
    .await;
    until("the third party sees the first", || hears_and_sees(&c, 1)).await;
    assert_eq!(frames_from(&simplest, 3), 0, "one slot shows one party");
    sfu.close(key(3, 2)).await;
    until("the one-slot party now sees the third", || {
        hears_and_sees(&simplest, 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_dropped_and_counted_while_media_flows() {
    let (sfu, metrics) = start(SfuConfig::default()).await;
    let a = join(&sfu, 5, 1, 1).await;
    let b = join(&sfu, 5, 2, 1).await;
    until("media flows", || {
        hears_and_sees(&a, 2) && hears_and_sees(&b, 1)
    })
    .await;
    let dropped_before = metrics.media_datagrams_dropped_total();

    let attacker = tokio::net::UdpSocket::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let port = sfu.public_addr();
    let random: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
        .collect();
    // A STUN binding request header, cut off in its first attribute.
    let truncated_stun = [
        0x00, 0x01, 0x00, 0x20, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        0x00, 0x06,
    ];
    let wrong_password = stun_with_bad_integrity(&format!("{}:someone", a.server_ufrag));
    // A DTLS handshake record header with garbage after it.
    let dtls_garbage = [
        22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 40, 1, 2, 3, 4, 5,
    ];
    let datagrams: [&[u8]; 5] = [
        &random,
        &truncated_stun,
        &wrong_password,
        &dtls_garbage,
        &[],
    ];
    for _ in 0..20 {
        for datagram in datagrams {
            attacker.send_to(datagram, port).await.expect("send");
        }
    }
    until("the drops are counted", || {
        metrics.media_datagrams_dropped_total() >= dropped_before + 80
    })
    .await;
    let before = frames_from(&a, 2);
    until("media keeps flowing", || frames_from(&a, 2) > before + 50).await;
    assert!(!a.state.lock().expect("state").ended);
    assert!(metrics
        .render()
        .contains("confer_media_datagrams_dropped_total"));
}

/// A STUN binding request naming `username`, with a MESSAGE-INTEGRITY that cannot match.
fn stun_with_bad_integrity(username: &str) -> Vec<u8> {
    let mut attributes = Vec::new();
    let name = username.as_bytes();
    attributes.extend_from_slice(&0x0006u16.to_be_bytes());
    attributes.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attributes.extend_from_slice(name);
    while attributes.len() % 4 != 0 {
        attributes.push(0);
    }
    attributes.extend_from_slice(&0x0008u16.to_be_bytes());
    attributes.extend_from_slice(&20u16.to_be_bytes());
    attributes.extend_from_slice(&[0xab; 20]);
    let mut message = vec![0x00, 0x01];
    message.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    message.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    message.extend_from_slice(&[7; 12]);
    message.extend_from_slice(&attributes);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_follows_what_a_party_actually_sends() {
    let (sfu, _) = start(SfuConfig::default()).await;
    let mut events = sfu.events();
    let a = join(&sfu, 6, 1, 1).await;
    let _b = join(&sfu, 6, 2, 1).await;
    let mut saw_sending = false;
    while !saw_sending {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event")
            .expect("not lagging");
        if let MediaEvent::Sending {
            key: k,
            audio: true,
            video: true,
            ..
        } = event
        {
            saw_sending = k == key(6, 1);
        }
    }
    let _ = a.stop.send(true);
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event")
            .expect("not lagging");
        match event {
            MediaEvent::Sending {
                key: k,
                audio: false,
                video: false,
                ..
            } if k == key(6, 1) => break,
            MediaEvent::Ended { key: k, .. } if k == key(6, 1) => break,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_conference_and_bad_offers_are_refused() {
    let config = SfuConfig {
        max_parties_per_conference: 2,
        ..SfuConfig::default()
    };
    let (sfu, _) = start(config).await;
    let _a = join(&sfu, 2, 1, 1).await;
    let _b = join(&sfu, 2, 2, 1).await;
    let (_peer, offer) = SyntheticPeer::new(
        PeerOptions {
            id: 3,
            ..PeerOptions::default()
        },
        LOCALHOST,
    )
    .await
    .expect("peer");
    let third = sfu
        .open(
            key(2, 3),
            Uin(3),
            MediaOffer {
                sdp: Some(offer.clone()),
                ..MediaOffer::default()
            },
        )
        .await;
    assert!(matches!(third, Err(MediaError::Full)), "{third:?}");
    // Another conference is not full.
    assert!(sfu
        .open(
            key(4, 3),
            Uin(3),
            MediaOffer {
                sdp: Some(offer),
                ..MediaOffer::default()
            }
        )
        .await
        .is_ok());
    for bad in [
        MediaOffer::default(),
        MediaOffer {
            sdp: Some("v=0\r\nnot sdp".into()),
            ..MediaOffer::default()
        },
        MediaOffer {
            ufrag: Some("ab\r\nc".into()),
            pwd: Some("x".into()),
            fingerprint: Some("sha-256 00".into()),
            ..MediaOffer::default()
        },
    ] {
        let refused = sfu.open(key(9, 1), Uin(1), bad).await;
        assert!(
            matches!(refused, Err(MediaError::BadOffer(_))),
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_without_sdp_get_a_default_audio_and_video_session() {
    let (sfu, _) = start(SfuConfig::default()).await;
    let fingerprint = format!("sha-256 {}", vec!["4F"; 32].join(":"));
    let answer = sfu
        .open(
            key(11, 1),
            Uin(1),
            MediaOffer {
                ufrag: Some("abcd".into()),
                pwd: Some("0123456789abcdefghijkl".into()),
                fingerprint: Some(fingerprint),
                ..MediaOffer::default()
            },
        )
        .await
        .expect("answered");
    assert!(answer.sdp.contains("m=audio") && answer.sdp.contains("m=video"));
    assert!(answer.fingerprint.starts_with("sha-256 "));
    assert_eq!(answer.port, sfu.public_addr().port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_never_connects_ends_as_failed() {
    let config = SfuConfig {
        connect_timeout: Duration::from_millis(500),
        ..SfuConfig::default()
    };
    let (sfu, _) = start(config).await;
    let mut events = sfu.events();
    let (_peer, offer) = SyntheticPeer::new(PeerOptions::default(), LOCALHOST)
        .await
        .expect("peer");
    // The peer never runs: no STUN, no DTLS.
    sfu.open(
        key(12, 1),
        Uin(5),
        MediaOffer {
            sdp: Some(offer),
            ..MediaOffer::default()
        },
    )
    .await
    .expect("answered");
    let event = tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event")
        .expect("event");
    assert_eq!(
        event,
        MediaEvent::Ended {
            key: key(12, 1),
            uin: Uin(5),
            reason: MediaEndReason::Failed
        }
    );
}

/// The next `Slots` event for `party` that shows `shown` (one party per slot, in order).
async fn slots_shown(
    events: &mut tokio::sync::broadcast::Receiver<MediaEvent>,
    party: PartyKey,
    shown: &[Option<u64>],
) {
    let wait = async {
        loop {
            if let Ok(MediaEvent::Slots { key: k, slots, .. }) = events.recv().await {
                let parties: Vec<Option<u64>> = slots.iter().map(|s| s.party).collect();
                if k == party && parties == shown {
                    assert!(slots
                        .iter()
                        .all(|s| s.audio_mid.is_some() && s.video_mid.is_some()));
                    return;
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no Slots for {party:?} showing {shown:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_party_is_told_which_party_its_slots_show() {
    let (sfu, _) = start(SfuConfig::default()).await;
    let mut events = sfu.events();
    let _a = join(&sfu, 9, 1, 2).await;
    slots_shown(&mut events, key(9, 1), &[None, None]).await;
    let _b = join(&sfu, 9, 2, 1).await;
    slots_shown(&mut events, key(9, 1), &[Some(2), None]).await;
    slots_shown(&mut events, key(9, 2), &[Some(1)]).await;
    let _c = join(&sfu, 9, 3, 2).await;
    slots_shown(&mut events, key(9, 1), &[Some(2), Some(3)]).await;
    slots_shown(&mut events, key(9, 3), &[Some(1), Some(2)]).await;
    sfu.close(key(9, 2)).await;
    slots_shown(&mut events, key(9, 1), &[None, Some(3)]).await;
    slots_shown(&mut events, key(9, 3), &[Some(1), None]).await;
}
