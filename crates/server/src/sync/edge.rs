//! What the edge's data means to a hub (the module doc of `sync` says it in words): its
//! courses, teachers and students read from its chat groups, the messages it owes the
//! hub, and the key it syncs with.

use std::collections::{BTreeMap, BTreeSet};

use confer_core::hub::HubLinkKind;
use confer_core::model::{ConversationKind, Message};
use confer_core::{Core, Uin};
use serde_json::{json, Value};

use crate::Config;

/// The keys of settings that carry the box's new key.
pub(super) const KEY_SETTINGS: [&str; 2] = ["authorization", "moodle-security-key"];

/// The key this box syncs with: the newest the hub sent, else the configured one.
pub(super) async fn current_token(core: &Core, config: &Config) -> anyhow::Result<Option<String>> {
    let received = core.hub_settings("").await?;
    Ok(received
        .iter()
        .rev()
        .find(|s| KEY_SETTINGS.contains(&s.key.as_str()))
        .map(|s| s.value.clone())
        .or_else(|| config.sync_token.clone()))
}

/// A person's email as the hub sees it.
pub(super) fn email_of(login: &str, boxid: &str) -> String {
    if login.contains('@') {
        login.to_string()
    } else {
        format!("{login}@{boxid}")
    }
}

/// The edge's people and courses, read from its chat groups.
pub(super) struct Edge {
    pub(super) courses: Vec<Value>,
    teachers: BTreeSet<Uin>,
    students: BTreeSet<Uin>,
    /// Login and display name by uin.
    pub(super) logins: BTreeMap<Uin, (String, Option<String>)>,
}

pub(super) async fn read_edge(core: &Core, boxid: &str, sitename: &str) -> anyhow::Result<Edge> {
    let groups: Vec<_> = core
        .edge_groups()
        .await?
        .into_iter()
        .filter(|g| g.kind == ConversationKind::Group && !g.destroyed)
        .collect();
    let teachers: BTreeSet<Uin> = groups.iter().map(|g| g.owner).collect();
    let mut students = BTreeSet::new();
    let mut logins = BTreeMap::new();
    for g in &groups {
        for uin in &g.occupants {
            if !teachers.contains(uin) {
                students.insert(*uin);
            }
            if !logins.contains_key(uin) {
                if let Some(a) = core.edge_account(*uin).await? {
                    logins.insert(*uin, (a.login, a.name));
                }
            }
        }
    }
    let person = |uin: &Uin| -> Option<Value> {
        let (login, name) = logins.get(uin)?;
        Some(json!({
            "id": uin.0, "username": login, "first_name": name.clone().unwrap_or_default(),
            "last_name": "", "email": email_of(login, boxid), "last_accessed": 0, "language": "en",
        }))
    };
    let courses = groups
        .iter()
        .map(|g| {
            json!({
                "id": g.group_id.0,
                "course_name": g.name.clone().unwrap_or_else(|| format!("group {}", g.group_id)),
                "summary": "",
                "created_on": g.created_at_us / 1_000_000,
                "updated_on": g.updated_at_us / 1_000_000,
                "teachers": person(&g.owner).into_iter().collect::<Vec<_>>(),
                "students": g.occupants.iter().filter(|u| !teachers.contains(u))
                    .filter_map(person).collect::<Vec<_>>(),
                "sitename": sitename, "siteadmin_name": "", "siteadmin_email": "",
                "siteadmin_phone": "", "siteadmin_country": "",
                "package": "confer", "packageStatus": "",
            })
        })
        .collect();
    Ok(Edge {
        courses,
        teachers,
        students,
        logins,
    })
}

/// A message the edge owes the hub.
pub(super) struct Outgoing {
    pub(super) group: u64,
    pub(super) message: Message,
    pub(super) recipient: Uin,
}

/// The messages of students to teachers the hub has not confirmed, oldest first per
/// conversation (after each conversation's mark).
pub(super) async fn outgoing(core: &Core, edge: &Edge) -> anyhow::Result<Vec<Outgoing>> {
    let mut out = Vec::new();
    for g in core.edge_groups().await? {
        if g.kind != ConversationKind::Private || g.occupants.len() != 2 {
            continue;
        }
        let Some(student) = g
            .occupants
            .iter()
            .find(|u| edge.students.contains(u))
            .copied()
        else {
            continue;
        };
        let Some(teacher) = g
            .occupants
            .iter()
            .find(|u| edge.teachers.contains(u))
            .copied()
        else {
            continue;
        };
        let mark_key = format!("pushed:{}", g.group_id.0);
        let mut after = core
            .hub_link(HubLinkKind::EdgeMark, &mark_key)
            .await?
            .unwrap_or(0);
        loop {
            let page = core.edge_messages_after(g.group_id, after).await?;
            for m in &page.messages {
                after = m.seq;
                if m.sender == student && !m.deleted && m.kind != 5 {
                    out.push(Outgoing {
                        group: g.group_id.0,
                        message: m.clone(),
                        recipient: teacher,
                    });
                }
            }
            if !page.more || page.messages.is_empty() {
                break;
            }
        }
    }
    Ok(out)
}

/// The hub's name of an attachment's kind (`photo`, `document` …).
pub(super) fn attachment_kind_name(mimetype: &str) -> &'static str {
    confer_core::service::kind_of_mimetype(mimetype)
}
