//! The conference door with the built-in media endpoint: `CALLME_S2` with a synthetic
//! str0m peer's offer, `conf.webrtc.servufrag` with the server's answer, media through the
//! server between the parties, `bMicOn`/`bCamOn` following what is sent, and
//! `conf.webrtc.Disconnected` after a hang-up.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_media::synthetic::{PeerOptions, PeerState, SyntheticPeer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestServer, WAIT};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal Pallada client: commands with a `seq`, events kept until asked for.
pub(crate) struct Vsp {
    ws: Ws,
    seq: u64,
    events: VecDeque<Value>,
}

impl Vsp {
    pub(crate) async fn login(server: &TestServer, user: &str, password: &str) -> Vsp {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/vsp/ws", server.addr))
            .await
            .unwrap();
        let mut vsp = Vsp {
            ws,
            seq: 0,
            events: VecDeque::new(),
        };
        let answer = vsp
            .call("nd", "login", json!({"user": user, "password": password}))
            .await;
        assert_eq!(answer["result"]["code"], 0, "{answer}");
        vsp
    }

    async fn read(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT * 3, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    pub(crate) async fn call(&mut self, obj: &str, cmd: &str, params: Value) -> Value {
        self.seq += 1;
        let frame = json!({"dst": "std", "lng": "en", "cmd": cmd, "seq": self.seq, "obj": obj, "params": params});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        loop {
            let frame = self.read().await;
            if frame["ANSW"]["seq"] == self.seq {
                return frame["ANSW"].clone();
            }
            if frame.get("EVT").is_some() {
                self.events.push_back(frame["EVT"].clone());
            }
        }
    }

    pub(crate) async fn event(
        &mut self,
        evt: &str,
        evttype: Option<&str>,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        // The door's timer keeps frames coming, so the wait as a whole has a deadline.
        let wait = async {
            loop {
                let found = self.events.iter().position(|e| {
                    e["evt"] == evt
                        && e.get("evttype").and_then(Value::as_str) == evttype
                        && matches(&e["result"])
                });
                if let Some(i) = found {
                    return self.events.remove(i).unwrap()["result"].clone();
                }
                let frame = self.read().await;
                if frame.get("EVT").is_some() {
                    self.events.push_back(frame["EVT"].clone());
                }
            }
        };
        tokio::time::timeout(WAIT * 3, wait)
            .await
            .unwrap_or_else(|_| panic!("no matching {evt} {evttype:?} event in time"))
    }
}

pub(crate) struct Call {
    pub(crate) vsp: Vsp,
    pub(crate) state: Arc<Mutex<PeerState>>,
    _stop: tokio::sync::watch::Sender<bool>,
    pub(crate) party: u64,
    /// The server's `conf.webrtc.servufrag` data (its ip and port: where media goes).
    pub(crate) answer: Value,
}

/// Joins the conference and opens media with a synthetic peer through `CALLME_S2`.
pub(crate) async fn call_in(server: &TestServer, user: &str, conference: u64, id: u64) -> Call {
    let vsp = Vsp::login(server, user, "pw").await;
    join_and_call(vsp, conference, id).await
}

/// Joins the conference on this connection and opens media through `CALLME_S2`.
pub(crate) async fn join_and_call(mut vsp: Vsp, conference: u64, id: u64) -> Call {
    let joined = vsp
        .call("conf", "join", json!({"ID": conference.to_string()}))
        .await;
    assert_eq!(joined["result"]["code"], 0, "{joined}");
    let party = joined["result"]["PartyID"].as_u64().unwrap();
    callme(vsp, conference, party, id).await
}

/// `CALLME_S2` with a new synthetic peer (on a connection whose party joined already).
pub(crate) async fn callme(mut vsp: Vsp, conference: u64, party: u64, id: u64) -> Call {
    let options = PeerOptions {
        id,
        ..PeerOptions::default()
    };
    let (mut peer, offer) = SyntheticPeer::new(options, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .unwrap();
    let answer = vsp
        .call(
            "conf",
            "CALLME_S2",
            json!({"ID": conference.to_string(), "sdp": offer}),
        )
        .await;
    assert_eq!(answer["result"]["code"], 0, "{answer}");
    let servufrag = vsp.event("webrtc", Some("servufrag"), |_| true).await;
    let data = &servufrag["EvtData"];
    assert!(
        data["ufrag"].as_str().is_some_and(|u| !u.is_empty()),
        "{servufrag}"
    );
    assert!(data["fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("sha-256 ")));
    assert!(data["port"].as_u64().is_some_and(|p| p > 0));
    peer.accept_answer(data["sdp"].as_str().unwrap()).unwrap();
    let state = Arc::new(Mutex::new(PeerState::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(peer.run(state.clone(), stopped));
    Call {
        answer: data.clone(),
        vsp,
        state,
        _stop: stop,
        party,
    }
}

pub(crate) async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn hears_and_sees(call: &Call, sender: u64) -> bool {
    let state = call.state.lock().unwrap();
    state
        .received
        .get(&sender)
        .is_some_and(|r| r.audio_frames > 50 && r.video_frames > 30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callme_s2_media_flows_between_parties_through_the_server_until_hangup() {
    let server = TestServer::start_with(|c| c.media_udp_bind = "127.0.0.1:0".into()).await;
    server.add_user("ann", "pw").await;
    server.add_user("ben", "pw").await;
    let mut owner = Vsp::login(&server, "ann", "pw").await;
    let created = owner.call("cd", "create", json!({"name": "Standup"})).await;
    let conference = created["result"]["ID"].as_u64().unwrap();
    drop(owner);

    let mut ann = call_in(&server, "ann", conference, 1).await;
    let ben = call_in(&server, "ben", conference, 2).await;
    until("ann gets ben's audio and video", || hears_and_sees(&ann, 2)).await;
    until("ben gets ann's audio and video", || hears_and_sees(&ben, 1)).await;

    // What ben's party actually sends shows in its state.
    let ben_party = ben.party;
    ann.vsp
        .event("changed", None, |r| {
            r["updParties"].as_array().is_some_and(|parties| {
                parties.iter().any(|p| {
                    p["PartyID"] == ben_party && p["bMicOn"] == true && p["bCamOn"] == true
                })
            })
        })
        .await;

    let (status, metrics) = server.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("confer_media_forwarded_total"),
        "{metrics}"
    );

    let hung = ann
        .vsp
        .call("conf", "hangup", json!({"ID": conference.to_string()}))
        .await;
    assert_eq!(hung["result"]["code"], 0, "{hung}");
    ann.vsp
        .event("webrtc", Some("Disconnected"), |_| true)
        .await;
    until("ann's peer sees its connection end", || {
        ann.state.lock().unwrap().ended
    })
    .await;
}
