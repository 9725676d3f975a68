//! The conference door's media path with a fake media endpoint in place of the SFU:
//! `CALLME_S2` opens the party's media with the offer's fields and answers `servufrag`,
//! what the endpoint says a party sends updates `bMicOn`/`bCamOn`, `hangup` closes it,
//! and the endpoint's `Ended` (or leaving with media up) is `conf.webrtc.Disconnected` to
//! the conference; the endpoint's `Slots` of a party reach its own client.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use confer_core::media::{
    MediaAnswer, MediaEndReason, MediaEndpoint, MediaError, MediaEvent, MediaOffer, MediaSlot,
    PartyKey,
};
use confer_core::Uin;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestServer, ADMIN_PASSWORD, WAIT};

/// Records what the door asked; says `Ended` when closed, as the real one does.
struct FakeEndpoint {
    events: broadcast::Sender<MediaEvent>,
    opened: Mutex<Vec<(PartyKey, Uin, MediaOffer)>>,
}

#[async_trait]
impl MediaEndpoint for FakeEndpoint {
    async fn open(
        &self,
        key: PartyKey,
        uin: Uin,
        offer: MediaOffer,
    ) -> Result<MediaAnswer, MediaError> {
        if offer.sdp.as_deref() == Some("full") {
            return Err(MediaError::Full);
        }
        self.opened.lock().unwrap().push((key, uin, offer));
        Ok(MediaAnswer {
            ufrag: "srvU".into(),
            pwd: "srvPwd".into(),
            fingerprint: "sha-256 AB:CD".into(),
            ip: "127.0.0.1".into(),
            port: 40000,
            sdp: "v=0 answer".into(),
        })
    }

    async fn close(&self, key: PartyKey) {
        let uin = self
            .opened
            .lock()
            .unwrap()
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, u, _)| *u);
        if let Some(uin) = uin {
            let _ = self.events.send(MediaEvent::Ended {
                key,
                uin,
                reason: MediaEndReason::Closed,
            });
        }
    }

    fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Vsp {
    ws: Ws,
    seq: u64,
    events: Vec<Value>,
}

impl Vsp {
    async fn connect(server: &TestServer) -> Vsp {
        let url = format!("ws://{}/vsp/ws", server.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Vsp {
            ws,
            seq: 0,
            events: Vec::new(),
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .unwrap();
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    async fn call(&mut self, obj: &str, cmd: &str, params: Value) -> Value {
        self.seq += 1;
        let frame = json!({"dst": "std", "lng": "en", "cmd": cmd, "seq": self.seq, "obj": obj, "params": params});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        loop {
            let v = self.next().await;
            if v["ANSW"]["seq"] == self.seq {
                return v["ANSW"]["result"].clone();
            }
            if !v["EVT"].is_null() {
                self.events.push(v["EVT"].clone());
            }
        }
    }

    /// The next event `obj.evt[.evttype]` whose result passes `want`.
    async fn event(&mut self, name: &str, want: impl Fn(&Value) -> bool) -> Value {
        let matches = |e: &Value| {
            let mut n = format!(
                "{}.{}",
                e["obj"].as_str().unwrap_or(""),
                e["evt"].as_str().unwrap_or("")
            );
            if let Some(t) = e["evttype"].as_str() {
                n = format!("{n}.{t}");
            }
            n == name && want(&e["result"])
        };
        if let Some(i) = self.events.iter().position(&matches) {
            return self.events.remove(i)["result"].clone();
        }
        loop {
            let v = self.next().await;
            if !v["EVT"].is_null() {
                if matches(&v["EVT"]) {
                    return v["EVT"]["result"].clone();
                }
                self.events.push(v["EVT"].clone());
            }
        }
    }
}

fn party_with(
    list: &'static str,
    party: u64,
    pred: impl Fn(&Value) -> bool,
) -> impl Fn(&Value) -> bool {
    move |r: &Value| {
        r[list]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["PartyID"] == party && pred(p)))
    }
}

#[tokio::test]
async fn callme_s2_opens_media_hangup_closes_it_and_the_endpoint_drives_party_state() {
    let (events, _) = broadcast::channel(16);
    let fake = Arc::new(FakeEndpoint {
        events,
        opened: Mutex::new(Vec::new()),
    });
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = confer_server::Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        admin_password: Some(ADMIN_PASSWORD.into()),
        ..confer_server::Config::default()
    };
    let core = confer_server::build_core(&config).unwrap();
    core.add_account("ann", "pw", None, None).await.unwrap();
    core.add_account("ben", "pw", None, None).await.unwrap();
    core.flush().await.unwrap();
    drop(core);
    let running = confer_server::start_with_media(config.clone(), Some(fake.clone()))
        .await
        .unwrap();
    let server = TestServer {
        addr: running.addr(),
        running: Some(running),
        dir,
        config,
    };

    let mut ann = Vsp::connect(&server).await;
    let mut ben = Vsp::connect(&server).await;
    let me = ann
        .call("nd", "login", json!({"user": "ann", "password": "pw"}))
        .await;
    assert_eq!(me["code"], 0);
    assert_eq!(
        ben.call("nd", "login", json!({"user": "ben", "password": "pw"}))
            .await["code"],
        0
    );
    let id = ann.call("cd", "create", json!({"name": "Media"})).await["ID"]
        .as_u64()
        .unwrap();
    let party = ann
        .call("conf", "join", json!({"ID": id.to_string()}))
        .await["PartyID"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ben.call("conf", "join", json!({"ID": id.to_string()}))
            .await["code"],
        0
    );

    // The offer goes to the endpoint; its answer comes back as servufrag.
    let answered = ann
        .call(
            "conf",
            "CALLME_S2",
            json!({"ID": id.to_string(), "sdp": "v=0 offer", "ufrag": "cliU", "pwd": "cliP", "fingerprint": "sha-256 01"}),
        )
        .await;
    assert_eq!(answered, json!({"code": 0}));
    let ufrag = ann.event("conf.webrtc.servufrag", |_| true).await;
    assert_eq!(ufrag["PartyID"], party);
    assert_eq!(
        ufrag["EvtData"],
        json!({"ufrag": "srvU", "pwd": "srvPwd", "fingerprint": "sha-256 AB:CD", "ip": "127.0.0.1", "port": 40000, "sdp": "v=0 answer"})
    );
    {
        let opened = fake.opened.lock().unwrap();
        let (key, uin, offer) = &opened[0];
        assert_eq!(
            (key.conference.0, key.party, uin.0),
            (id, party, me["uin"].as_u64().unwrap())
        );
        assert_eq!(offer.sdp.as_deref(), Some("v=0 offer"));
        assert_eq!(
            (
                offer.ufrag.as_deref(),
                offer.pwd.as_deref(),
                offer.fingerprint.as_deref()
            ),
            (Some("cliU"), Some("cliP"), Some("sha-256 01"))
        );
    }
    ben.event(
        "conf.changed",
        party_with("updParties", party, |p| p["State"] == 2),
    )
    .await;

    // What the endpoint says the party sends is its bMicOn/bCamOn.
    let key = fake.opened.lock().unwrap()[0].0;
    fake.events
        .send(MediaEvent::Sending {
            key,
            uin: Uin(0),
            audio: true,
            video: false,
        })
        .unwrap();
    ben.event(
        "conf.changed",
        party_with("updParties", party, |p| {
            p["bMicOn"] == true && p["bCamOn"] == false
        }),
    )
    .await;

    // Hang-up closes it; the endpoint's Ended is Disconnected to everyone in it.
    assert_eq!(
        ann.call("conf", "hangup", json!({"ID": id.to_string()}))
            .await,
        json!({"code": 0})
    );
    for who in [&mut ann, &mut ben] {
        let gone = who.event("conf.webrtc.Disconnected", |_| true).await;
        assert_eq!(gone, json!({"ClusterID": 1, "ID": id, "PartyID": party}));
        who.event(
            "conf.changed",
            party_with("updParties", party, |p| p["State"] == 1),
        )
        .await;
    }

    // An endpoint refusal is a result code, not a dropped connection.
    let full = ben
        .call(
            "conf",
            "CALLME_S2",
            json!({"ID": id.to_string(), "sdp": "full"}),
        )
        .await;
    assert_eq!(full["code"], 6);

    // Media up again: what the endpoint says ann's slots show reaches ann as
    // conf.webrtc.slots.
    let again = ann
        .call(
            "conf",
            "CALLME_S2",
            json!({"ID": id.to_string(), "sdp": "v=0 offer"}),
        )
        .await;
    assert_eq!(again, json!({"code": 0}));
    ben.event(
        "conf.changed",
        party_with("updParties", party, |p| p["State"] == 2),
    )
    .await;
    fake.events
        .send(MediaEvent::Slots {
            key,
            uin: Uin(0),
            slots: vec![MediaSlot {
                audio_mid: Some("0".into()),
                video_mid: Some("1".into()),
                party: Some(7),
            }],
        })
        .unwrap();
    let slots = ann.event("conf.webrtc.slots", |_| true).await;
    assert_eq!(
        slots,
        json!({"ClusterID": 1, "ID": id, "PartyID": party,
               "EvtData": {"slots": [{"audio": "0", "video": "1", "PartyID": 7}]}})
    );

    // Leaving with media up is Disconnected to those who stay (the endpoint's own end
    // comes when the party is gone already).
    assert_eq!(
        ann.call("conf", "leave", json!({"ID": id.to_string()}))
            .await,
        json!({"code": 0})
    );
    let gone = ben.event("conf.webrtc.Disconnected", |_| true).await;
    assert_eq!(gone, json!({"ClusterID": 1, "ID": id, "PartyID": party}));
    server.stop().await;
}
